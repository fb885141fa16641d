module WeChatFs.Tests.RedPackApiTests

open System
open System.Net
open System.Net.Http
open System.Security.Cryptography
open System.Security.Cryptography.X509Certificates
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Simulator
open WeChatFs.Tests.Harness

let mchId = "1900000109"
let appid = "wxsimoa00000000001"
let openid = "oSIM_USER_0001"

/// The pay settings a gateway needs for the simulator, with short waits so the worker acts at once.
let paySettings (sim: SimulatorHost.RunningSimulator) =
    [
        "WeChatFs:WeChat:PayBaseUrl", sim.PayBaseUrl
        "WeChatFs:WeChat:PayServerCaCertificate", sim.PayCaFile
        "WeChatFs:RedPacks:ResolveRetryBase", "00:00:00.100"
        "WeChatFs:RedPacks:PollInterval", "00:00:00.100"
        "WeChatFs:RedPacks:ReconcileInterval", "00:00:00.300"
    ]

/// A simulator and a gateway on `provider`'s store, wired for red packets.
let startPayPair (provider: string) (extra: (string * string) list) =
    task {
        let! sim = SimulatorHost.start (simulatorOptions ()) "http://127.0.0.1:0"

        let storage =
            if provider = "postgres" then
                [
                    "WeChatFs:Storage:Provider", "postgres"
                    "WeChatFs:Storage:ConnectionString", Helpers.postgres.Force().NewDatabase()
                ]
            else
                []

        let! gateway =
            startGatewayWith sim.BaseUrl (newDataFolder ()) (OffsetClock()) (paySettings sim @ storage @ extra)

        return
            {
                Sim = sim
                Gateway = gateway
                Http = new HttpClient()
            }
    }

/// The merchant as the simulated WeChat Pay console hands it out.
let simMerchant (pair: Pair) (mch: string) =
    task {
        let! r = pair.Http.GetAsync(pair.SimUrl $"/sim/pay/merchants/{mch}")
        return! json r
    }

let putMerchant (pair: Pair) (mch: string) (body: obj) =
    pair.Gateway.Api.PutAsync(
        $"/api/merchants/{mch}",
        new StringContent(JsonSerializer.Serialize body, Encoding.UTF8, "application/json")
    )

let registerMerchant (pair: Pair) =
    task {
        let! m = simMerchant pair mchId

        let! r =
            putMerchant
                pair
                mchId
                {|
                    api_key = str m "api_key"
                    certificate_pem = str m "certificate_pem"
                    private_key_pem = str m "private_key_pem"
                    bound_appids = [ appid ]
                    send_name = "Demo Coffee"
                |}

        Expect.equal r.StatusCode HttpStatusCode.Created "r.StatusCode"
        return m
    }

let packetBody (amount: int) =
    {|
        mch_id = mchId
        authorizer_appid = appid
        openid = openid
        amount_fen = amount
        wishing = "Thank you for visiting"
        act_name = "Opening week"
        remark = "One per guest"
    |}

let sendPacket (pair: Pair) (key: string) (body: obj) =
    task {
        use request = new HttpRequestMessage(HttpMethod.Post, "/api/redpacks")
        request.Content <- new StringContent(JsonSerializer.Serialize body, Encoding.UTF8, "application/json")

        if key <> "" then
            request.Headers.Add("Idempotency-Key", key)

        let! r = pair.Gateway.Api.SendAsync request
        let! root = json r
        return r.StatusCode, root
    }

let simPackets (pair: Pair) =
    task {
        let! r = pair.Http.GetAsync(pair.SimUrl "/sim/pay/redpacks")
        let! root = json r
        return [ for p in root.EnumerateArray() -> p ]
    }

let simPay (pair: Pair) (path: string) (body: obj) =
    task {
        let! r = postJson pair.Http (pair.SimUrl path) body
        r.EnsureSuccessStatusCode() |> ignore
    }

let packetStatus (pair: Pair) (id: string) =
    task {
        let! r = pair.Gateway.Api.GetAsync $"/api/redpacks/{id}"
        let! root = json r
        return str root "status"
    }

let untilStatus (pair: Pair) (id: string) (wanted: string) =
    eventually (TimeSpan.FromSeconds 15.) (fun () ->
        task {
            let! s = packetStatus pair id
            return s = wanted
        })

let selfSigned (notBefore: DateTimeOffset) (notAfter: DateTimeOffset) =
    use key = RSA.Create 2048

    let req =
        CertificateRequest("CN=1900000109", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)

    use cert = req.CreateSelfSigned(notBefore, notAfter)
    cert.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem()


/// A fault injected at sendredpack and how the gateway must settle the packet.
type SendFault =
    {
        Name: string
        /// What the simulated WeChat Pay does with a paid packet (/sim/pay/outcome).
        Outcome: obj
        Fault: string
        /// Whether the simulator pays before failing.
        PayFirst: bool
        Key: string
        /// The first answer says "undecided" (the send's outcome is not known yet).
        UndecidedFirst: bool
        Settles: string
        Sends: int
        Why: string
    }

let sendFaults =
    [
        {
            Name = "SYSTEMERROR after paying is resolved by gethbinfo without a second send"
            Outcome = box {| outcome = "none" |}
            Fault = "SYSTEMERROR"
            PayFirst = true
            Key = "sys-1"
            UndecidedFirst = true
            Settles = "sent"
            Sends = 1
            Why = "gethbinfo should settle the packet as sent"
        }
        {
            Name = "SYSTEMERROR before paying is sent again under the same mch_billno, paid once"
            Outcome = box {| outcome = "none" |}
            Fault = "PROCESSING"
            PayFirst = false
            Key = "sys-2"
            UndecidedFirst = false
            Settles = "sent"
            Sends = 2
            Why = "the packet should be sent again and settle as sent"
        }
        {
            Name = "a connection dropped after the simulator paid gives one packet and a known state"
            Outcome =
                box
                    {|
                        outcome = "refund"
                        after_seconds = 0
                    |}
            Fault = "drop"
            PayFirst = true
            Key = "drop-1"
            UndecidedFirst = true
            Settles = "refunded"
            Sends = 1
            Why = "gethbinfo should find the packet and follow it to its refund"
        }
    ]

let tests =
    testSequencedGroup "RedPackApi"
    <| testList
        "RedPackApi"
        [
            testTheoryTask
                "a red packet is sent once, reconciled to received, and told to the webhook"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! hook = startWebhook ()
                    use _ = hook
                    let! pair = startPayPair provider (webhookSettings hook)
                    use _ = pair
                    let! _ = registerMerchant pair

                    do!
                        simPay
                            pair
                            "/sim/pay/outcome"
                            {|
                                outcome = "receive"
                                after_seconds = 0
                            |}

                    let! status, packet = sendPacket pair "order-1001" (packetBody 888)
                    Expect.isTrue (str packet "status" = "sent") (packet.GetRawText())
                    Expect.equal status HttpStatusCode.Created "status"
                    Expect.equal (str packet "status") "sent" "str packet 'status'"
                    let bill = str packet "mch_billno"
                    Expect.equal bill.Length 28 "bill.Length"

                    Expect.stringStarts
                        bill
                        (mchId + DateTimeOffset.UtcNow.ToOffset(TimeSpan.FromHours 8.).ToString("yyyyMM"))
                        "bill"

                    Expect.isNotNull (str packet "send_listid") "str packet 'send_listid'"

                    // The same key again: the same packet, and WeChat Pay is not asked again.
                    let! againStatus, again = sendPacket pair "order-1001" (packetBody 888)
                    Expect.equal againStatus HttpStatusCode.Created "againStatus"
                    Expect.equal (str again "id") (str packet "id") "str again 'id'"

                    let! received = untilStatus pair (str packet "id") "received"
                    Expect.isTrue received "the packet should be reconciled to received"
                    let! packets = simPackets pair
                    Expect.equal packets.Length 1 "packets.Length"
                    Expect.equal (str packets.Head "mch_billno") bill "str packets.Head 'mch_billno'"
                    Expect.equal (str packets.Head "sends") "1" "str packets.Head 'sends'"
                    let! sends = calls pair "sendredpack"
                    Expect.equal sends 1 "sends"

                    let! told =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let kinds = hook.Payloads |> List.map (fun p -> str p "kind")
                                return List.contains "redpack.received" kinds
                            })

                    Expect.isTrue told "redpack.received should reach the webhook"
                    let kinds = hook.Payloads |> List.map (fun p -> str p "kind")
                    Expect.equal (kinds |> List.sort) ([ "redpack.received"; "redpack.sent" ]) "kinds |> List.sort"
                    let first = hook.Received.Head
                    Expect.equal first.Signature (signBody "hook-secret" first.Body) "first.Signature"

                    // A reused key with a different request is refused, and nothing is sent.
                    let! reusedStatus, _ = sendPacket pair "order-1001" (packetBody 999)
                    Expect.equal reusedStatus (enum<HttpStatusCode> 422) "reusedStatus"
                }

            // A fault at sendredpack, and what the packet must come to: each case one packet paid.
            for f in sendFaults do
                testCaseTask f.Name
                <| fun () ->
                    task {
                        let! pair = startPayPair "sqlite" []
                        use _ = pair
                        let! _ = registerMerchant pair
                        do! simPay pair "/sim/pay/outcome" f.Outcome

                        do!
                            simPay
                                pair
                                "/sim/pay/faults"
                                {|
                                    api = "sendredpack"
                                    fault = f.Fault
                                    pay_first = f.PayFirst
                                |}

                        let! status, packet = sendPacket pair f.Key (packetBody 100)
                        Expect.equal status HttpStatusCode.Accepted "status"

                        if f.UndecidedFirst then
                            Expect.equal (str packet "status") "undecided" "str packet 'status'"

                        let! settled = untilStatus pair (str packet "id") f.Settles
                        Expect.isTrue settled f.Why
                        let! sends = calls pair "sendredpack"
                        Expect.equal sends f.Sends "sends"
                        let! packets = simPackets pair
                        Expect.equal packets.Length 1 "packets.Length"

                        Expect.equal
                            (str packets.Head "mch_billno")
                            (str packet "mch_billno")
                            "str packets.Head 'mch_billno'"
                    }

            testTheoryTask "50 concurrent requests with one Idempotency-Key give one packet" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! pair = startPayPair provider []
                    use _ = pair
                    let! _ = registerMerchant pair

                    let! answers =
                        [ 1..50 ]
                        |> List.map (fun _ -> sendPacket pair "burst-1" (packetBody 500))
                        |> Task.WhenAll

                    for status, _ in answers do
                        Expect.isTrue (int status >= 200 && int status < 300) ($"every request gets 2xx, not {status}")

                    let ids = answers |> Array.map (fun (_, p) -> str p "id") |> Array.distinct
                    Expect.equal ids.Length 1 "ids.Length"
                    let! sent = untilStatus pair ids[0] "sent"
                    Expect.isTrue sent "sent"
                    let! sends = calls pair "sendredpack"
                    Expect.equal sends 1 "sends"
                    let! packets = simPackets pair
                    Expect.equal packets.Length 1 "packets.Length"
                }
        ]

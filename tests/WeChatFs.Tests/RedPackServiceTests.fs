module WeChatFs.Tests.RedPackServiceTests

open System
open System.IO
open System.Net.Http
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.Extensions.Configuration
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Simulator
open WeChatFs.Tests.Harness
open WeChatFs.Tests.RedPackApiTests

/// `wechatfs serve` settings against the simulator, on the SQLite store in `folder`.
let private processSettings (sim: SimulatorHost.RunningSimulator) (folder: string) (sendTimeout: string) =
    [
        "WeChatFs:Component:AppId", componentAppId
        "WeChatFs:Component:AppSecret", appSecret
        "WeChatFs:Component:Token", token
        "WeChatFs:Component:EncodingAesKey", encodingAesKey
        "WeChatFs:WeChat:ApiBaseUrl", sim.BaseUrl
        "WeChatFs:Storage:ConnectionString", "Data Source=" + Path.Combine(folder, "wechatfs.db")
        "WeChatFs:Admin:ApiKey", adminKey
        "WeChatFs:RedPacks:SendTimeout", sendTimeout
    ]
    @ paySettings sim

/// Tracking tokens as a store would answer them: a token stands for one openid under one account.
type private KnownTokens(known: Map<string * string, string>) =
    interface WeChatFs.RedPackService.ITrackingTokens with
        member _.Resolve(appid, token) =
            Task.FromResult(
                match known |> Map.tryFind (appid, token) with
                | Some openid -> Ok openid
                | None -> Error(WeChatFs.RedPackService.UnknownTrackingToken "no such wx_tk_id for this account")
            )

let private configure (pairs: (string * string) list) =
    Microsoft.Extensions.Configuration
        .ConfigurationBuilder()
        .AddInMemoryCollection(
            ([
                "WeChatFs:Component:AppId", "wxcomponent"
                "WeChatFs:Component:AppSecret", "secret"
                "WeChatFs:Component:Token", "token"
                "WeChatFs:Component:EncodingAesKey", encodingAesKey
             ]
             @ pairs)
            |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v))
        )
        .Build()
    |> WeChatFs.Config.load


let tests =
    testSequencedGroup "RedPackService"
    <| testList
        "RedPackService"
        [
            testCaseTask
                "a gateway killed between sending and storing the answer settles the packet after a restart, paid once"
            <| fun () ->
                task {
                    let! sim = SimulatorHost.start (simulatorOptions ()) "http://127.0.0.1:0"
                    use _ = sim
                    use http = new HttpClient()
                    let simUrl (path: string) = sim.BaseUrl.TrimEnd('/') + path
                    let folder = newDataFolder ()

                    // A long send timeout: the first gateway waits for WeChat Pay's answer until it is killed.
                    let! first = startGatewayProcess (processSettings sim folder "00:01:00")
                    let! merchant = http.GetAsync(simUrl $"/sim/pay/merchants/{mchId}")
                    let! m = json merchant

                    let! put =
                        first.Api.PutAsync(
                            $"/api/merchants/{mchId}",
                            new StringContent(
                                JsonSerializer.Serialize
                                    {|
                                        api_key = str m "api_key"
                                        certificate_pem = str m "certificate_pem"
                                        private_key_pem = str m "private_key_pem"
                                        bound_appids = [ appid ]
                                        send_name = "Demo Coffee"
                                    |},
                                Encoding.UTF8,
                                "application/json"
                            )
                        )

                    Expect.equal put.StatusCode Net.HttpStatusCode.Created "put.StatusCode"
                    let! _ = postJson http (simUrl "/sim/pay/outcome") {| outcome = "none" |}
                    let! _ = postJson http (simUrl "/sim/pay/hold") {| hold = true |}

                    use request = new HttpRequestMessage(HttpMethod.Post, "/api/redpacks")
                    request.Headers.Add("Idempotency-Key", "kill-1")

                    request.Content <-
                        new StringContent(JsonSerializer.Serialize(packetBody 100), Encoding.UTF8, "application/json")

                    let pending =
                        task {
                            try
                                let! r = first.Api.SendAsync request
                                return Some r.StatusCode
                            with _ ->
                                return None
                        }

                    // WeChat Pay has paid and holds its answer: now the gateway dies before it can store it.
                    let! held =
                        eventually (TimeSpan.FromSeconds 20.) (fun () ->
                            task {
                                let! r = http.GetAsync(simUrl "/sim/pay/held")
                                let! root = json r
                                return root.GetProperty("held").GetInt32() = 1
                            })

                    Expect.isTrue held "the send should reach the simulator"
                    first.Process.Kill true
                    first.Process.WaitForExit()
                    (first :> IDisposable).Dispose()
                    let! answered = pending
                    Expect.equal answered None "answered"
                    let! _ = postJson http (simUrl "/sim/pay/hold") {| hold = false |}

                    // The same store, a new process, a short send timeout so it takes the stale packet over soon.
                    use! second = startGatewayProcess (processSettings sim folder "00:00:00.500")

                    let! settled =
                        eventually (TimeSpan.FromSeconds 30.) (fun () ->
                            task {
                                let! r = second.Api.GetAsync "/api/redpacks"
                                let! root = json r
                                let items = [ for i in root.GetProperty("items").EnumerateArray() -> i ]
                                return items.Length = 1 && str items.Head "status" = "sent"
                            })

                    Expect.isTrue settled "the restarted gateway should find the packet sent"
                    let! r = http.GetAsync(simUrl "/sim/pay/redpacks")
                    let! packets = json r
                    Expect.equal (packets.GetArrayLength()) 1 "packets.GetArrayLength()"
                    Expect.equal (str packets[0] "sends") "1" "str packets[0] 'sends'"
                    let! c = http.GetAsync(simUrl "/sim/calls")
                    let! counts = json c

                    Expect.equal
                        (counts.GetProperty("sendredpack").GetInt32())
                        1
                        "counts.GetProperty('sendredpack').GetInt32()"

                    try
                        Directory.Delete(folder, true)
                    with _ ->
                        ()
                }

            testCaseTask
                "a wx_tk_id recipient is resolved through the tracking tokens, and refused where there are none"
            <| fun () ->
                task {
                    let tokens = KnownTokens(Map [ ("wxsimoa00000000001", "tk-1"), "oFROM_TOKEN" ])
                    let resolve = WeChatFs.RedPackService.resolveRecipient tokens

                    let! byToken = resolve "wxsimoa00000000001" (WeChatFs.RedPacks.TrackingToken "tk-1")
                    Expect.equal byToken (Ok "oFROM_TOKEN") "byToken"

                    let! otherAccount =
                        resolve "wxsimoa00000000002" (WeChatFs.RedPacks.TrackingToken "tk-1")

                    Expect.isTrue (Result.isError otherAccount) "Result.isError otherAccount"
                    let! byOpenId = resolve "wxsimoa00000000001" (WeChatFs.RedPacks.OpenId "oDIRECT")
                    Expect.equal byOpenId (Ok "oDIRECT") "byOpenId"

                    let! unsupported =
                        WeChatFs.RedPackService.resolveRecipient
                            (WeChatFs.RedPackService.NoTrackingTokens())
                            "wxsimoa00000000001"
                            (WeChatFs.RedPacks.TrackingToken "tk-1")

                    Expect.equal unsupported (Error WeChatFs.RedPackService.TrackingNotSupported) "unsupported"
                }

            testCase "red-packet settings have their documented defaults, and a bad value names the key"
            <| fun () ->
                match configure [] with
                | Ok o ->
                    Expect.equal o.RedPacks.ReconcileInterval (TimeSpan.FromMinutes 10.) "o.RedPacks.ReconcileInterval"
                    Expect.equal o.RedPacks.ResolveRetryBase (TimeSpan.FromSeconds 1.) "o.RedPacks.ResolveRetryBase"
                    Expect.equal o.RedPacks.SendTimeout (TimeSpan.FromSeconds 15.) "o.RedPacks.SendTimeout"
                    Expect.equal o.RedPacks.NotFoundCodes (set [ "NOT_FOUND" ]) "NotFoundCodes"
                    Expect.equal o.PayServerCaCertificate None "o.PayServerCaCertificate"
                    Expect.equal (string o.PayBaseUrl) "https://api.mch.weixin.qq.com/" "string o.PayBaseUrl"
                | Error e -> failwith $"{e}"

                match
                    configure
                        [
                            "WeChatFs:WeChat:PayServerCaCertificate", "/nonexistent/ca.pem"
                            "WeChatFs:RedPacks:ReconcileInterval", "soon"
                            "WeChatFs:RedPacks:ClientIp", "not-an-ip"
                        ]
                with
                | Ok _ -> failwith "should be refused"
                | Error errors ->
                    let keys = errors |> List.map (fun e -> e.Key)
                    Expect.contains keys "WeChatFs:WeChat:PayServerCaCertificate" "keys"
                    Expect.contains keys "WeChatFs:RedPacks:ReconcileInterval" "keys"
                    Expect.contains keys "WeChatFs:RedPacks:ClientIp" "keys"

                    Expect.isTrue
                        (errors |> List.forall (fun e -> e.Fix <> ""))
                        "errors |> List.forall (fun e -> e.Fix <> '')"

        ]

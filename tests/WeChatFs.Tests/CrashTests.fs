/// kill -9 of a real gateway process, restarted on the same store: during a burst of pushes (every
/// push answered 200 is delivered later), during deliveries (nothing lost, a redelivery keeps its
/// delivery id) and during a token refresh (no refresh token lost; the next start refreshes once).
module WeChatFs.Tests.CrashTests

open System
open System.Collections.Concurrent
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Simulator
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

/// A simulator in this process and a gateway process on a fresh store, with one authorized account.
let private setUp (extra: (string * string) list) =
    task {
        let! sim = SimulatorHost.start (simulatorOptions ()) "http://127.0.0.1:0"
        let data = newDataFolder ()
        // A stable instance name, as a deployment gives each instance: the restarted process takes
        // over the dead one's claims at once.
        let settings =
            processSettings data sim.BaseUrl ([ "WeChatFs:InstanceId", "gateway-1" ] @ extra)

        let! gateway = startGatewayProcess settings
        sim.SetEventUrl(Some(gateway.Url "/wechat/component/events"))
        let http = new HttpClient(new HttpClientHandler(AllowAutoRedirect = false))
        let simUrl = sim.BaseUrl.TrimEnd '/'
        do! readyAt http simUrl gateway.Api
        let! status, _, _ = authorizeAt http simUrl gateway.Api "shop-1" shop
        Expect.equal status HttpStatusCode.OK "status"
        return sim, data, settings, gateway, http
    }

/// Kills the process as the kernel would on kill -9, and starts a new one on the same store.
let private restart (sim: SimulatorHost.RunningSimulator) (settings: (string * string) list) (old: GatewayProcess) =
    task {
        old.Process.Kill()
        old.Process.WaitForExit 5000 |> ignore
        (old :> IDisposable).Dispose()
        let! fresh = startGatewayProcess settings
        sim.SetEventUrl(Some(fresh.Url "/wechat/component/events"))
        return fresh
    }

/// The MsgIds of the text messages the webhook received (the authorization event has none).
let private delivered (hook: WebhookListener) =
    hook.Received
    |> List.choose (fun r ->
        use doc = JsonDocument.Parse r.Body

        match doc.RootElement.GetProperty("message").TryGetProperty "msg_id" with
        | true, v -> Some(v.GetString(), r.Delivery)
        | _ -> None)

/// The inbox's dedupe keys, read from the store's file as they are.
let private inboxKeys (dataFolder: string) =
    use conn = openStoreFile dataFolder
    use cmd = conn.CreateCommand()
    cmd.CommandText <- "SELECT dedupe_key FROM inbox"
    use reader = cmd.ExecuteReader()

    [
        while reader.Read() do
            reader.GetString 0
    ]

/// How many inbox rows still carry a claim for a delivery attempt.
let private claimedRows (dataFolder: string) =
    use conn = openStoreFile dataFolder
    use cmd = conn.CreateCommand()
    cmd.CommandText <- "SELECT COUNT(*) FROM inbox WHERE claimed_by IS NOT NULL"
    cmd.ExecuteScalar() :?> int64

/// Sends text messages with MsgIds from `first` on, 8 at a time, until `stop`; answers the MsgIds
/// the gateway acknowledged with 200.
let private burst (http: HttpClient) (url: unit -> string) (first: int) (stop: CancellationToken) =
    task {
        let acknowledged = ConcurrentBag<string>()
        let mutable next = first

        let worker () =
            task {
                while not stop.IsCancellationRequested do
                    let id = string (Interlocked.Increment &next)

                    try
                        let! r = postSealed http (url ()) (textMessageXml shop id "hi")

                        if r.StatusCode = HttpStatusCode.OK then
                            acknowledged.Add id
                    with _ ->
                        ()
            }

        let! _ = [ for _ in 1..8 -> worker () ] |> Task.WhenAll
        return acknowledged |> Set.ofSeq
    }


let tests =
    testSequencedGroup "Crash"
    <| testList
        "Crash"
        [
            testCaseTask "kill -9 during a burst of pushes: every push answered 200 is delivered after the restart"
            <| fun () ->
                task {
                    use! hook = startWebhook ()
                    // The business system is down during the burst: everything waits in the store.
                    hook.Respond <- fun _ -> 503, ""

                    let! sim, data, settings, gateway, http =
                        setUp (webhookSettings hook @ [ "WeChatFs:Webhooks:ReplyTimeout", "00:00:00.050" ])

                    use _sim = sim :> IAsyncDisposable
                    let mutable current = gateway
                    use stop = new CancellationTokenSource()

                    let sending =
                        burst http (fun () -> current.Url $"/wechat/authorizers/{shop}/callback") 1000 stop.Token
                    // Mid-burst: some pushes answered, others in flight.
                    let! _ =
                        eventually (TimeSpan.FromSeconds 10.) (fun () -> task { return countRows data "inbox" >= 100 })

                    current.Process.Kill()
                    stop.Cancel()
                    let! acknowledged = sending
                    Expect.isTrue (acknowledged.Count >= 20) ($"{acknowledged.Count} acknowledged")
                    let! restarted = restart sim settings current
                    current <- restarted
                    use _gateway = restarted
                    hook.Respond <- fun _ -> 200, ""

                    let! all =
                        eventually (TimeSpan.FromSeconds 15.) (fun () ->
                            task { return Set.isSubset acknowledged (delivered hook |> List.map fst |> Set.ofList) })

                    let received = delivered hook |> List.map fst |> Set.ofList

                    Expect.isTrue
                        all
                        ($"{(Set.difference acknowledged received).Count} of {acknowledged.Count} acknowledged pushes not delivered")

                    http.Dispose()
                }

            testCaseTask
                "kill -9 during a burst without a webhook: every acknowledged push is stored once, and WeChat's retries add nothing"
            <| fun () ->
                task {
                    let! sim, data, settings, gateway, http = setUp []
                    use _sim = sim :> IAsyncDisposable
                    use stop = new CancellationTokenSource()

                    let sending =
                        burst http (fun () -> gateway.Url $"/wechat/authorizers/{shop}/callback") 5000 stop.Token

                    let! _ =
                        eventually (TimeSpan.FromSeconds 10.) (fun () -> task { return countRows data "inbox" >= 100 })

                    gateway.Process.Kill()
                    stop.Cancel()
                    let! acknowledged = sending
                    let keys = acknowledged |> Set.map (fun id -> "msg:" + id)
                    let! restarted = restart sim settings gateway
                    use _gateway = restarted

                    // Acknowledged pushes still in the intake log reach the inbox at start.
                    let! all =
                        eventually (TimeSpan.FromSeconds 15.) (fun () ->
                            task { return Set.isSubset keys (Set.ofList (inboxKeys data)) })

                    Expect.isTrue
                        all
                        $"{(Set.difference keys (Set.ofList (inboxKeys data))).Count} of {keys.Count} acknowledged pushes not stored"

                    // The first attempts the dead process claimed them for will not happen: no row
                    // waits for such a claim to run out, whether it reached the inbox before the
                    // kill or from the intake log after it.
                    Expect.equal (claimedRows data) 0L "rows still claimed by the dead process"

                    let before = inboxKeys data

                    // WeChat sends again what it is not sure of: each answered, none stored twice.
                    for id in acknowledged |> Seq.truncate 50 do
                        let! r =
                            postSealed
                                http
                                (restarted.Url $"/wechat/authorizers/{shop}/callback")
                                (textMessageXml shop id "hi")

                        Expect.equal r.StatusCode HttpStatusCode.OK "a retry is acknowledged"

                    let! unchanged =
                        holdsFor (TimeSpan.FromSeconds 1.) (fun () ->
                            task { return List.length (inboxKeys data) = before.Length })

                    Expect.isTrue unchanged "retries added no row"
                    let after = inboxKeys data
                    Expect.equal (List.length after) (List.distinct after).Length "no key twice"
                    http.Dispose()
                }

            testCaseTask "kill -9 during deliveries: nothing is lost and a redelivery carries the same delivery id"
            <| fun () ->
                task {
                    use! hook = startWebhook ()
                    // A slow business system that takes 20 deliveries and then refuses until the
                    // restart: deliveries are under way when the gateway dies, and however fast the
                    // machine, most are still to be made.
                    let one = obj ()
                    let mutable accepted = 0
                    let mutable takingAll = false

                    hook.Respond <-
                        fun _ ->
                            lock one (fun () ->
                                Thread.Sleep 20

                                if Volatile.Read &takingAll || accepted < 20 then
                                    accepted <- accepted + 1
                                    200, ""
                                else
                                    503, "")

                    let! sim, data, settings, gateway, http =
                        setUp (webhookSettings hook @ [ "WeChatFs:Webhooks:ReplyTimeout", "00:00:00.010" ])

                    use _sim = sim :> IAsyncDisposable
                    let url = gateway.Url $"/wechat/authorizers/{shop}/callback"

                    let! answers =
                        [
                            for i in 1..200 -> postSealed http url (textMessageXml shop (string (5000 + i)) "hi")
                        ]
                        |> Task.WhenAll

                    Expect.isTrue
                        (answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK))
                        "answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK)"

                    let sent = [ for i in 1..200 -> string (5000 + i) ] |> Set.ofList

                    let! _ =
                        eventually (TimeSpan.FromSeconds 10.) (fun () -> task { return (delivered hook).Length >= 20 })

                    Expect.isTrue
                        ((delivered hook).Length < 200)
                        "every delivery was done before the kill; nothing was tested"

                    let! restarted = restart sim settings gateway
                    use _gateway = restarted
                    Volatile.Write(&takingAll, true)

                    let! all =
                        eventually (TimeSpan.FromSeconds 15.) (fun () ->
                            task { return Set.isSubset sent (delivered hook |> List.map fst |> Set.ofList) })

                    Expect.isTrue all "some deliveries were lost"
                    // At least once: a message delivered twice carries the same X-WeChatFs-Delivery both times.
                    for _, copies in delivered hook |> List.groupBy fst do
                        Expect.equal
                            (copies |> List.map snd |> List.distinct |> List.length)
                            1
                            "copies |> List.map snd |> List.distinct |> List.length"

                    http.Dispose()
                }

            testCaseTask "kill -9 during a token refresh: no refresh token is lost and the next start refreshes once"
            <| fun () ->
                task {
                    let! sim, _, settings, gateway, http =
                        setUp [ "WeChatFs:Storage:RefreshLease", "00:00:01" ]

                    use _sim = sim :> IAsyncDisposable
                    let simUrl = sim.BaseUrl.TrimEnd '/'

                    let count () =
                        task {
                            let! r = http.GetAsync(simUrl + "/sim/calls")
                            let! root = json r

                            match root.TryGetProperty "api_authorizer_token" with
                            | true, v -> return v.GetInt32()
                            | _ -> return 0
                        }

                    // WeChat rotates the refresh token on this call, and answers slowly: the gateway dies first.
                    let! _ =
                        http.PostAsync(simUrl + $"/sim/authorizers/{shop}/rotate-refresh-token", null)

                    let! _ =
                        postJson
                            http
                            (simUrl + "/sim/faults")
                            {|
                                api = "api_authorizer_token"
                                latency_ms = 3000
                                times = 1
                            |}

                    let! before = count ()
                    let inFlight = gateway.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)

                    // The call is counted as it arrives and then held 3 s, so the kill below lands
                    // inside it however long the call took to come: under the whole suite's load, a
                    // gateway just started once took more than 5 s.
                    let! reached =
                        eventually (TimeSpan.FromSeconds 20.) (fun () ->
                            task { let! n = count () in return n > before })

                    Expect.isTrue reached "reached"
                    // Counted once the process is gone: whatever calls it made, it made before this.
                    gateway.Process.Kill()
                    gateway.Process.WaitForExit 5000 |> ignore
                    let! atKill = count ()
                    let! restarted = restart sim settings gateway
                    use _gateway = restarted

                    try
                        let! _ = inFlight
                        ()
                    with _ ->
                        ()

                    let! a = restarted.Api.GetAsync $"/api/authorizers/{shop}"
                    let! root = json a
                    Expect.equal (str root "status") "authorized" "str root 'status'"

                    Expect.isTrue
                        (root.GetProperty("has_refresh_token").GetBoolean())
                        "root.GetProperty('has_refresh_token').GetBoolean()"

                    let! refreshed = restarted.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)
                    let! body = refreshed.Content.ReadAsStringAsync()
                    Expect.isTrue refreshed.IsSuccessStatusCode body
                    let! afterRefresh = count ()
                    // One call since the kill, whichever part of the new process made it: a refresh it
                    // started by itself and the operator's refresh that joined it count once.
                    Expect.equal (afterRefresh - atKill) 1 "api_authorizer_token calls since the kill"
                    let! token = restarted.Api.GetAsync $"/api/authorizers/{shop}/access-token"
                    let! tokenRoot = json token

                    Expect.equal
                        (str tokenRoot "authorizer_access_token")
                        (str (JsonDocument.Parse(body).RootElement) "authorizer_access_token")
                        "str tokenRoot 'authorizer_access_token'"

                    http.Dispose()
                }

        ]

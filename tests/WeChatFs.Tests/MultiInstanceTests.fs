/// Gateway processes on one PostgreSQL database against the simulator: every token is fetched at most
/// once per due time, every instance serves the same token, and an authorization code reaching two
/// instances at once is exchanged once.
module WeChatFs.Tests.MultiInstanceTests

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Expecto
open WeChatFs.Simulator.SimulatorHost
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness

/// Tokens live 7200 s; a margin of 7196 s makes them due 4 s after they are issued.
let private cycle = TimeSpan.FromSeconds 4.
let private margin = TimeSpan.FromSeconds 7200. - cycle

let private issuedTimes (items: JsonElement seq) =
    items
    |> Seq.map (fun t -> t.GetProperty("issued_at").GetDateTimeOffset())
    |> Seq.sort
    |> List.ofSeq

/// One fetch per due time: consecutive tokens are at least a cycle apart (two instances refreshing
/// for the same due time would issue two tokens milliseconds apart).
let private assertOnePerDueTime (what: string) (issued: DateTimeOffset list) =
    let all =
        issued
        |> List.map (fun t -> $"{(t - issued.Head).TotalMilliseconds:F0}")
        |> String.concat ", "

    for a, b in List.pairwise issued do
        Expect.isTrue
            (b - a >= cycle - TimeSpan.FromMilliseconds 150.)
            ($"{what}: tokens issued {(b - a).TotalMilliseconds} ms apart (all, ms after the first: {all})")

/// What every instance of one deployment is configured with: one database, one master key.
let private gatewaySettings simUrl connectionString masterKey =
    [
        "WeChatFs:Component:AppId", componentAppId
        "WeChatFs:Component:AppSecret", appSecret
        "WeChatFs:Component:Token", token
        "WeChatFs:Component:EncodingAesKey", encodingAesKey
        "WeChatFs:WeChat:ApiBaseUrl", simUrl
        "WeChatFs:WeChat:MpBaseUrl", simUrl
        "WeChatFs:Storage:Provider", "postgres"
        "WeChatFs:Storage:ConnectionString", connectionString
        "WeChatFs:Storage:DataFolder", tempFolder ()
        "WeChatFs:Secrets:MasterKey", masterKey
        "WeChatFs:Admin:ApiKey", adminKey
    ]

/// A simulator and gateway processes on one fresh PostgreSQL database, the ticket pushed to the first
/// instance and the component token ready; disposing stops them all.
type private Deployment =
    {
        Sim: RunningSimulator
        Gateways: GatewayProcess[]
        MasterKey: string
        Http: HttpClient
    }

    member d.SimUrl(path: string) = d.Sim.BaseUrl + path

    interface IDisposable with
        member d.Dispose() =
            d.Http.Dispose()

            for g in d.Gateways do
                (g :> IDisposable).Dispose()

            d.Sim.StopAsync().Wait()

let private startDeployment (instances: int) (extraSettings: (string * string) list) =
    task {
        let! sim = start (simulatorOptions ()) "http://127.0.0.1:0"
        let masterKey = Convert.ToBase64String(Array.init 32 byte)

        let settings =
            gatewaySettings sim.BaseUrl (postgres.Force().NewDatabase()) masterKey
            @ extraSettings

        let! gateways =
            [ 1..instances ]
            |> List.map (fun _ -> startGatewayProcess settings)
            |> Task.WhenAll

        let d =
            {
                Sim = sim
                Gateways = gateways
                MasterKey = masterKey
                Http = new HttpClient()
            }

        let! failed =
            task {
                try
                    sim.SetEventUrl(Some(gateways[0].Url "/wechat/component/events"))
                    let! _ = d.Http.PostAsync(d.SimUrl "/sim/push-ticket", null)

                    let! tokenReady =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = gateways[instances - 1].Api.GetAsync "/api/component/access-token"
                                return r.IsSuccessStatusCode
                            })

                    Expect.isTrue tokenReady "tokenReady"
                    return None
                with ex ->
                    return Some ex
            }

        // A deployment that did not come up stops what it started before the test fails.
        match failed with
        | Some ex ->
            (d :> IDisposable).Dispose()
            Runtime.ExceptionServices.ExceptionDispatchInfo.Throw ex
        | None -> ()

        return d
    }

/// Waits until each instance's refresher has made its first pass. On an empty store that pass imports
/// api_get_authorizer_list, and an import racing a test's first authorization refreshes that account
/// once more right after its exchange: a start-up matter, not the steady refreshing a test counts.
/// A pass counts as a `success` in the metrics once the store's accounts are known (imported, when the
/// store had none) and their tokens loaded.
let private firstPassesMade (d: Deployment) =
    task {
        let! made =
            eventually (TimeSpan.FromSeconds 10.) (fun () ->
                task {
                    let mutable all = true

                    for g in d.Gateways do
                        let! text = g.Api.GetStringAsync "/metrics"

                        all <-
                            all
                            && metricValue text "wechatfs_authorizer_refresher_passes_total{outcome=\"success\"}"
                               |> Option.exists (fun n -> n >= 1.)

                    return all
                })

        Expect.isTrue made "every instance's refresher made its first pass"
    }

/// A merchant confirms `appid` on (simulated) WeChat's page for a link made by `gateway`: the
/// redirect back to the platform, not yet opened.
let private confirmAuthorization (d: Deployment) (gateway: GatewayProcess) (tenant: string) (appid: string) =
    task {
        let! answer, _ = confirmOnSimulator d.Http d.Sim.BaseUrl gateway.Api tenant appid
        return Uri(str answer "redirect")
    }

let tests =
    testSequencedGroup "MultiInstance"
    <| testList
        "MultiInstance"
        [
            testCaseTask "three instances fetch each token once per due time and serve the same token"
            <| fun () ->
                task {
                    use! d =
                        startDeployment
                            3
                            [
                                "WeChatFs:Component:CheckInterval", "00:00:00.200"
                                "WeChatFs:Component:TokenRefreshMargin", margin.ToString()
                                "WeChatFs:Authorizers:RefreshJitter", "00:00:00"
                            ]

                    do! firstPassesMade d
                    let gateways = d.Gateways
                    let http = d.Http
                    let masterKey = d.MasterKey

                    let simJson (path: string) =
                        task {
                            let! r = http.GetAsync(d.SimUrl path)
                            return! json r
                        }

                    // Two merchants authorize, through different instances.
                    let accounts = [ "wxsimoa00000000001"; "wxsimmp00000000002" ]

                    for i, appid in List.indexed accounts do
                        let! redirect = confirmAuthorization d gateways[i + 1] $"shop-{i}" appid
                        let! back = http.GetAsync redirect
                        Expect.equal back.StatusCode HttpStatusCode.OK "back.StatusCode"

                    // Hammer all three instances for a few due times, while their schedulers tick too.
                    let served = Collections.Concurrent.ConcurrentBag<string * string>()
                    use stop = new CancellationTokenSource(TimeSpan.FromSeconds 10.)

                    let worker (n: int) =
                        task {
                            let mutable i = n

                            while not stop.IsCancellationRequested do
                                let g = gateways[i % 3]
                                i <- i + 1

                                let path =
                                    match i % 3 with
                                    | 0 -> "/api/component/access-token"
                                    | k -> $"/api/authorizers/{accounts[k - 1]}/access-token"

                                let! r = g.Api.GetAsync path
                                let! body = r.Content.ReadAsStringAsync()
                                Expect.isTrue r.IsSuccessStatusCode body
                                served.Add(path, body)
                        }

                    let! _ = [ 0..5 ] |> List.map worker |> Task.WhenAll

                    let! componentTokens = simJson "/sim/component-tokens"
                    let componentIssued = issuedTimes (componentTokens.EnumerateArray())

                    Expect.isTrue
                        (componentIssued.Length >= 3)
                        ($"only {componentIssued.Length} component tokens over three due times")

                    assertOnePerDueTime "component" componentIssued
                    let! calls = simJson "/sim/calls"

                    Expect.equal
                        (calls.GetProperty("api_component_token").GetInt32())
                        componentIssued.Length
                        "calls.GetProperty('api_component_token').GetInt32()"

                    let! authorizers = simJson "/sim/authorizers"

                    for a in authorizers.EnumerateArray() do
                        let issued = issuedTimes (a.GetProperty("access_tokens").EnumerateArray())
                        let appid = str a "authorizer_appid"
                        Expect.isTrue (issued.Length >= 3) ($"only {issued.Length} tokens for {appid}")
                        assertOnePerDueTime appid issued

                    // Right after a refresh, every instance serves the new token.
                    let countNow () =
                        task {
                            let! t = simJson "/sim/component-tokens"
                            return t.GetArrayLength()
                        }

                    let! before = countNow ()

                    let! refreshed =
                        eventually (TimeSpan.FromSeconds 8.) (fun () ->
                            task { let! n = countNow () in return n > before })

                    Expect.isTrue refreshed "refreshed"
                    let! latest = simJson "/sim/component-tokens"
                    let newest = latest.EnumerateArray() |> Seq.last |> fun t -> str t "value"

                    // Every instance comes to serve the newest token (each reads it from the store).
                    let! allNewest =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let mutable same = true

                                for g in gateways do
                                    let! r = g.Api.GetAsync "/api/component/access-token"
                                    let! root = json r
                                    same <- same && str root "component_access_token" = newest

                                return same
                            })

                    Expect.isTrue allNewest "every instance serves the newest token"

                    // The instances' own logs (JSON, one object a line) hold no token and no secret.
                    let everyToken =
                        [ for t in latest.EnumerateArray() -> str t "value" ]
                        @ [
                            for a in authorizers.EnumerateArray() do
                                yield str a "refresh_token"

                                for t in a.GetProperty("access_tokens").EnumerateArray() do
                                    yield str t "value"
                        ]

                    // A line logged while a request runs carries the id its response names.
                    use! refused =
                        gateways[0]
                            .Api.PostAsync(
                                "/wechat/authorizers/wxunknown/callback?timestamp=1&nonce=2&msg_signature=forged",
                                new StringContent("<xml><Encrypt>AAAA</Encrypt></xml>")
                            )

                    Expect.equal (int refused.StatusCode) 401 "the forged push is refused"
                    let requestId = refused.Headers.GetValues "X-Request-Id" |> Seq.head

                    let! logged =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                return
                                    gateways[0].Output
                                    |> Seq.exists (fun l ->
                                        l.Contains "WeChatFs.Refusals" && l.Contains $"\"RequestId\":\"{requestId}\"")
                            })

                    Expect.isTrue logged $"the refusal is logged under the request id {requestId}"

                    let logs = gateways |> Seq.collect (fun g -> g.Output) |> String.concat "\n"

                    for secret in everyToken @ [ appSecret; encodingAesKey; masterKey ] do
                        Expect.isFalse (logs.Contains(secret: string)) "logs must not contain secret"
                }

            testCaseTask "one authorization code reaching two instances at once is exchanged once"
            <| fun () ->
                task {
                    use! d = startDeployment 2 []
                    let gateways = d.Gateways
                    let http = d.Http
                    // No push: the two arrivals are the redirect, opened on both instances at once.
                    let! _ = postJson http (d.SimUrl "/sim/push-order") {| order = "none" |}
                    let appid = "wxsimoa00000000001"
                    let! redirect = confirmAuthorization d gateways[0] "shop-9" appid
                    // A slow WeChat keeps the first exchange in flight while the second arrives.
                    let! _ =
                        postJson
                            http
                            (d.SimUrl "/sim/faults")
                            {|
                                api = "api_query_auth"
                                latency_ms = 1500
                                times = 2
                            |}

                    let! _ = http.PostAsync(d.SimUrl "/sim/calls/reset", null)

                    let! pages =
                        gateways
                        |> Array.map (fun g -> http.GetAsync(g.Url(redirect.PathAndQuery)))
                        |> Task.WhenAll

                    for page in pages do
                        let! body = page.Content.ReadAsStringAsync()
                        Expect.equal page.StatusCode HttpStatusCode.OK body
                        Expect.stringContains body appid "the page names the account"
                        Expect.stringContains body "shop-9" "the page names the tenant"

                    let! calls = http.GetAsync(d.SimUrl "/sim/calls")
                    let! calls = json calls
                    Expect.equal (calls.GetProperty("api_query_auth").GetInt32()) 1 "api_query_auth calls"
                    let! authorizers = http.GetAsync(d.SimUrl "/sim/authorizers")
                    let! authorizers = json authorizers

                    let account =
                        authorizers.EnumerateArray()
                        |> Seq.find (fun a -> str a "authorizer_appid" = appid)

                    Expect.equal (account.GetProperty("access_tokens").GetArrayLength()) 1 "tokens WeChat issued"

                    // Both instances serve that one token.
                    for g in gateways do
                        let! r = g.Api.GetAsync $"/api/authorizers/{appid}/access-token"
                        let! t = json r

                        Expect.equal
                            (str t "authorizer_access_token")
                            (str (Seq.head (account.GetProperty("access_tokens").EnumerateArray())) "value")
                            "served token"
                }
        ]

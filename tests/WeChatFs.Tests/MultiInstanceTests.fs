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
open Microsoft.AspNetCore.WebUtilities
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
    for a, b in List.pairwise issued do
        Expect.isTrue
            (b - a >= cycle - TimeSpan.FromMilliseconds 150.)
            ($"{what}: tokens issued {(b - a).TotalMilliseconds} ms apart")

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

let tests =
    testSequencedGroup "MultiInstance"
    <| testList
        "MultiInstance"
        [
            testCaseTask "three instances fetch each token once per due time and serve the same token"
            <| fun () ->
                task {
                    let! sim = start (simulatorOptions ()) "http://127.0.0.1:0"

                    use _ =
                        { new IDisposable with
                            member _.Dispose() = sim.StopAsync().Wait()
                        }

                    let connectionString = postgres.Force().NewDatabase()
                    let masterKey = Convert.ToBase64String(Array.init 32 byte)

                    let settings =
                        gatewaySettings sim.BaseUrl connectionString masterKey
                        @ [
                            "WeChatFs:Component:CheckInterval", "00:00:00.200"
                            "WeChatFs:Component:TokenRefreshMargin", margin.ToString()
                            "WeChatFs:Authorizers:RefreshJitter", "00:00:00"
                        ]

                    let! gateways =
                        [ 1..3 ] |> List.map (fun _ -> startGatewayProcess settings) |> Task.WhenAll

                    use _ =
                        { new IDisposable with
                            member _.Dispose() =
                                gateways |> Array.iter (fun g -> (g :> IDisposable).Dispose())
                        }

                    sim.SetEventUrl(Some(gateways[0].Url "/wechat/component/events"))
                    use http = new HttpClient()

                    let simJson (path: string) =
                        task {
                            let! r = http.GetAsync(sim.BaseUrl + path)
                            return! json r
                        }

                    let! _ = http.PostAsync(sim.BaseUrl + "/sim/push-ticket", null)

                    let! tokenReady =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = gateways[2].Api.GetAsync "/api/component/access-token"
                                return r.IsSuccessStatusCode
                            })

                    Expect.isTrue tokenReady "tokenReady"

                    // Two merchants authorize, through different instances.
                    let accounts = [ "wxsimoa00000000001"; "wxsimmp00000000002" ]

                    for i, appid in List.indexed accounts do
                        let g = gateways[i + 1]
                        let! links = postJson g.Api "/api/authorization-links" {| tenant = $"shop-{i}" |}
                        let! root = json links
                        let q = QueryHelpers.ParseQuery(Uri(str root "pc_url").Query)

                        let! confirmed =
                            postJson
                                http
                                (sim.BaseUrl + "/sim/authorize")
                                {|
                                    pre_auth_code = string q["pre_auth_code"]
                                    redirect_uri = string q["redirect_uri"]
                                    appid = appid
                                |}

                        let! c = json confirmed
                        let! back = http.GetAsync(str c "redirect")
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

                    let logs = gateways |> Seq.collect (fun g -> g.Output) |> String.concat "\n"
                    Expect.stringContains logs ("\"RequestId\"") "logs"

                    for secret in everyToken @ [ appSecret; encodingAesKey; masterKey ] do
                        Expect.isFalse (logs.Contains(secret: string)) "logs must not contain secret"
                }

            testCaseTask "one authorization code reaching two instances at once is exchanged once"
            <| fun () ->
                task {
                    let! sim = start (simulatorOptions ()) "http://127.0.0.1:0"

                    use _ =
                        { new IDisposable with
                            member _.Dispose() = sim.StopAsync().Wait()
                        }

                    let connectionString = postgres.Force().NewDatabase()
                    let masterKey = Convert.ToBase64String(Array.init 32 byte)
                    let settings = gatewaySettings sim.BaseUrl connectionString masterKey

                    let! gateways =
                        [ 1..2 ] |> List.map (fun _ -> startGatewayProcess settings) |> Task.WhenAll

                    use _ =
                        { new IDisposable with
                            member _.Dispose() =
                                gateways |> Array.iter (fun g -> (g :> IDisposable).Dispose())
                        }

                    sim.SetEventUrl(Some(gateways[0].Url "/wechat/component/events"))
                    use http = new HttpClient()
                    let! _ = http.PostAsync(sim.BaseUrl + "/sim/push-ticket", null)

                    let! tokenReady =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = gateways[1].Api.GetAsync "/api/component/access-token"
                                return r.IsSuccessStatusCode
                            })

                    Expect.isTrue tokenReady "tokenReady"
                    // No push: the two arrivals are the redirect, opened on both instances at once.
                    let! _ = postJson http (sim.BaseUrl + "/sim/push-order") {| order = "none" |}

                    let! links =
                        postJson gateways[0].Api "/api/authorization-links" {| tenant = "shop-9" |}

                    let! root = json links
                    let q = QueryHelpers.ParseQuery(Uri(str root "pc_url").Query)
                    let appid = "wxsimoa00000000001"

                    let! confirmed =
                        postJson
                            http
                            (sim.BaseUrl + "/sim/authorize")
                            {|
                                pre_auth_code = string q["pre_auth_code"]
                                redirect_uri = string q["redirect_uri"]
                                appid = appid
                            |}

                    let! c = json confirmed
                    let redirect = Uri(str c "redirect")
                    // A slow WeChat keeps the first exchange in flight while the second arrives.
                    let! _ =
                        postJson
                            http
                            (sim.BaseUrl + "/sim/faults")
                            {|
                                api = "api_query_auth"
                                latency_ms = 1500
                                times = 2
                            |}

                    let! _ = http.PostAsync(sim.BaseUrl + "/sim/calls/reset", null)

                    let! pages =
                        gateways
                        |> Array.map (fun g -> http.GetAsync(g.Url(redirect.PathAndQuery)))
                        |> Task.WhenAll

                    for page in pages do
                        let! body = page.Content.ReadAsStringAsync()
                        Expect.equal page.StatusCode HttpStatusCode.OK body
                        Expect.stringContains body appid "the page names the account"
                        Expect.stringContains body "shop-9" "the page names the tenant"

                    let! calls = http.GetAsync(sim.BaseUrl + "/sim/calls")
                    let! calls = json calls
                    Expect.equal (calls.GetProperty("api_query_auth").GetInt32()) 1 "api_query_auth calls"
                    let! authorizers = http.GetAsync(sim.BaseUrl + "/sim/authorizers")
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

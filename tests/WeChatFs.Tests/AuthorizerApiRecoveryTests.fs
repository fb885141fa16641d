/// The authorizer API end to end, continued: recovery from api_get_authorizer_list and no token in
/// clear in the database or the logs.
module WeChatFs.Tests.AuthorizerApiRecoveryTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Text
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open Microsoft.Extensions.DependencyInjection
open WeChatFs.Store
open WeChatFs.Tests.Harness
open WeChatFs.Tests.AuthorizerApiTests

let tests =
    testSequencedGroup "AuthorizerApi"
    <| testList
        "AuthorizerApiRecovery"
        [
            testCaseTask
                "tokens are refreshed before expiry exactly once, also across a restart in the middle of a refresh"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _ = authorizeVia pair "shop-1" shop
                    let! _ = authorizeVia pair "shop-2" mini
                    let! initial = calls pair "api_authorizer_token"
                    Expect.equal initial 0 "initial"
                    // A slow refresh is under way when the gateway stops.
                    do!
                        inject
                            pair
                            {|
                                api = "api_authorizer_token"
                                latency_ms = 1500
                                times = 1
                            |}

                    let inFlight = pair.Gateway.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)
                    // The simulator counts the call when it arrives, before the injected latency.
                    let! arrived =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task { let! n = calls pair "api_authorizer_token" in return n >= 1 })

                    Expect.isTrue arrived "the slow refresh reached WeChat before the restart"
                    let! g = pair.RestartGateway()

                    try
                        let! _ = inFlight
                        ()
                    with _ ->
                        ()

                    let! status, _ = accessToken pair shop
                    Expect.equal status HttpStatusCode.OK "status"
                    let! started = calls pair "api_authorizer_token"
                    // Both tokens become due: 1 h 55 min later on both clocks.
                    let ahead = TimeSpan.FromMinutes 115.
                    g.Clock.Offset <- ahead

                    let! _ =
                        postJson pair.Http (pair.SimUrl "/sim/clock/advance") {| seconds = int ahead.TotalSeconds |}

                    let! refreshed =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task { let! n = calls pair "api_authorizer_token" in return n >= started + 2 })

                    Expect.isTrue refreshed "refreshed"
                    // ... and no third refresh follows within the same due time.
                    let! once =
                        holdsFor (TimeSpan.FromSeconds 1.) (fun () ->
                            task { let! n = calls pair "api_authorizer_token" in return n = started + 2 })

                    Expect.isTrue once "each account's token refreshed exactly once"

                    for appid in [ shop; mini ] do
                        let! s, _ = accessToken pair appid
                        Expect.equal s HttpStatusCode.OK "s"
                }

            testCaseTask "an empty store is filled from api_get_authorizer_list at start"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _ = authorizeVia pair "shop-1" shop
                    let! _ = authorizeVia pair "shop-2" mini
                    // The database is lost: a new gateway on an empty store, same WeChat.
                    do! pair.Gateway.StopAsync()
                    let! g = startGatewayWith pair.Sim.BaseUrl (newDataFolder ()) (OffsetClock()) []
                    pair.Sim.SetEventUrl(Some(g.Url "/wechat/component/events"))
                    pair.Gateway <- g
                    let! _ = pushTicket pair

                    let! imported =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = g.Api.GetAsync "/api/authorizers"
                                let! root = json r
                                return root.GetProperty("total").GetInt32() = 2
                            })

                    Expect.isTrue imported "imported"
                    let! status, _ = accessToken pair mini
                    Expect.equal status HttpStatusCode.OK "status"
                    let! _, a = authorizer pair mini
                    Expect.equal (str a.Value "nick_name") "Demo Shop Mini" "str a.Value 'nick_name'"
                    let! synced = g.Api.PostAsync("/api/authorizers/sync", null)
                    let! report = json synced
                    Expect.equal (report.GetProperty("total").GetInt32()) 2 "report.GetProperty('total').GetInt32()"

                    Expect.equal
                        (report.GetProperty("imported").GetInt32())
                        0
                        "report.GetProperty('imported').GetInt32()"
                }

            testCaseTask "no refresh token or access token appears in clear in the database file or the logs"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _ = authorizeVia pair "shop-1" shop
                    let! _, token = accessToken pair shop
                    let! sim = simAuthorizer pair shop
                    let refresh = str sim "refresh_token"
                    let! componentResponse = pair.Gateway.Api.GetAsync "/api/component/access-token"
                    let! componentRoot = json componentResponse
                    let componentToken = str componentRoot "component_access_token"

                    let accessValue =
                        (Text.Json.JsonDocument.Parse token)
                            .RootElement.GetProperty("authorizer_access_token")
                            .GetString()

                    do! pair.Gateway.StopAsync()

                    let files =
                        Directory.GetFiles(pair.Gateway.DataFolder)
                        |> Array.filter (fun f -> f.Contains "wechatfs.db")
                        |> Array.map (File.ReadAllBytes >> Encoding.Latin1.GetString)
                        |> String.concat ""

                    Expect.stringContains files shop "files"
                    let logs = pair.Gateway.Logs.All |> String.concat "\n"

                    for secret in [ refresh; accessValue; componentToken; appSecret; encodingAesKey ] do
                        Expect.isFalse (files.Contains(secret: string)) "files must not contain secret"
                        Expect.isFalse (logs.Contains(secret: string)) "logs must not contain secret"

                    let! _ = pair.RestartGateway()
                    ()
                }

            testCaseTask
                "a fast-registered mini program is stored from its push; a failed registration is only recorded"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let store = pair.Gateway.App.Services.GetRequiredService<IStore>()

                    let register (legalPersonaWechat: string) =
                        postJson
                            pair.Gateway.Api
                            "/api/component/wechat/cgi-bin/component/fastregisterweapp?action=create"
                            {|
                                name = "Demo Tea House Co., Ltd."
                                code = "91440300MA5EXAMPLE"
                                code_type = 1
                                legal_persona_wechat = legalPersonaWechat
                                legal_persona_name = "Li Lei"
                                component_phone = "13800000000"
                            |}

                    let fastRegisterEvents () =
                        task {
                            let! events = store.RecentEvents(Some "fast_register", 10)
                            return events
                        }

                    // Through the component proxy, as a business system would call it.
                    let! accepted = register "lilei-wechat"
                    let! acceptedRoot = json accepted

                    Expect.equal
                        (acceptedRoot.GetProperty("errcode").GetInt32())
                        0
                        "acceptedRoot.GetProperty('errcode').GetInt32()"

                    // The authorization is stored first and its profile follows (api_get_authorizer_info).
                    let! stored =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! list = pair.Gateway.Api.GetAsync "/api/authorizers"
                                let! root = json list
                                let items = root.GetProperty("items")

                                return items.GetArrayLength() = 1 && str items[0] "kind" = "mini_program"
                            })

                    Expect.isTrue stored "stored"
                    let! events = fastRegisterEvents ()
                    let success = Seq.exactlyOne events
                    Expect.stringStarts success.Detail "status 0" "success.Detail"
                    let appid = success.Subject
                    let! status, a = authorizer pair appid
                    Expect.equal status HttpStatusCode.OK "status"
                    let a = a.Value
                    Expect.equal (str a "status") "authorized" "str a 'status'"
                    Expect.equal (str a "kind") "mini_program" "str a 'kind'"
                    Expect.equal (str a "nick_name") "Demo Tea House Co., Ltd." "str a 'nick_name'"
                    // Usable at once: the auth code in the push was exchanged for tokens.
                    let! tokenStatus, _ = accessToken pair appid
                    Expect.equal tokenStatus HttpStatusCode.OK "tokenStatus"

                    // The simulator fails verification for this legal person: the push carries no appid or code.
                    let! refused = register "verify-fails"
                    Expect.equal refused.StatusCode HttpStatusCode.OK "refused.StatusCode"

                    let! failureRecorded =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! events = fastRegisterEvents ()
                                return events.Length = 2
                            })

                    Expect.isTrue failureRecorded "failureRecorded"
                    let! events = fastRegisterEvents ()
                    Expect.stringStarts events.Head.Detail "status -1: open verity failed" "events.Head.Detail"
                    let! list = pair.Gateway.Api.GetAsync "/api/authorizers"
                    let! root = json list
                    Expect.equal (root.GetProperty("total").GetInt32()) 1 "root.GetProperty('total').GetInt32()"

                    // An incomplete request is refused by WeChat (40097) and nothing is pushed.
                    let! incomplete =
                        postJson
                            pair.Gateway.Api
                            "/api/component/wechat/cgi-bin/component/fastregisterweapp?action=create"
                            {| name = "No code" |}

                    let! incompleteRoot = json incomplete

                    Expect.equal
                        (incompleteRoot.GetProperty("errcode").GetInt32())
                        40097
                        "incompleteRoot.GetProperty('errcode').GetInt32()"
                }

            testCaseTask
                "after an import of more accounts than one scheduler page, every first token is fetched at once"
            <| fun () ->
                task {
                    // An hour between checks: only the import's wake-up and going on while whole
                    // pages are due can fetch them all within the test.
                    use! pair =
                        startPairWith (simulatorOptions ()) [ "WeChatFs:Component:CheckInterval", "01:00:00" ]

                    do! ready pair
                    let! added = postJson pair.Http (pair.SimUrl "/sim/miniprograms") {| count = 600 |}
                    Expect.isTrue added.IsSuccessStatusCode "accounts added to the simulator"
                    let! synced = pair.Gateway.Api.PostAsync("/api/authorizers/sync", null)
                    let! report = json synced
                    Expect.equal (report.GetProperty("imported").GetInt32()) 600 "imported"

                    let! fetched =
                        eventually (TimeSpan.FromSeconds 60.) (fun () ->
                            task { let! n = calls pair "api_authorizer_token" in return n >= 600 })

                    Expect.isTrue fetched "every imported account got its first token"
                    // ... once each: none of them is due again.
                    let! settled =
                        holdsFor (TimeSpan.FromSeconds 1.) (fun () ->
                            task { let! n = calls pair "api_authorizer_token" in return n = 600 })

                    Expect.isTrue settled "one token per account"
                }
        ]

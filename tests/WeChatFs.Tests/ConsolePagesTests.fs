/// The operator console, continued: turning it off and its pages (overview, funcKeys, deployments,
/// red packets) over a real store.
module WeChatFs.Tests.ConsolePagesTests

open System
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Tests.Harness
open WeChatFs.Tests.ConsoleTests

let tests =
    testSequencedGroup "Console"
    <| testList
        "ConsolePages"
        [
            testCaseTask "the console can be turned off"
            <| fun () ->
                task {
                    use! pair =
                        startPairWith (simulatorOptions ()) [ "WeChatFs:Console:Enabled", "false" ]

                    let! r = pair.Http.GetAsync(pair.Gateway.Url "/console/sign-in")
                    Expect.equal r.StatusCode HttpStatusCode.NotFound "r.StatusCode"
                }

            testTheoryTask "the overview and the gauges read the store" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    use! pair = startPairWith (simulatorOptions ()) (storeSettings provider)
                    let! _ = pushTicket pair

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! s, _ = componentToken pair
                                return s = HttpStatusCode.OK
                            })

                    let! _ = AuthorizerApiTests.authorizeVia pair "shop-store" "wxsimoa00000000001"
                    let client, _ = browser ()
                    use _ = client
                    let! _ = signIn client pair.Gateway adminKey
                    let! html = client.GetStringAsync(pair.Gateway.Url "/console")
                    Expect.stringContains html ("href=\"/console/authorizers?status=authorized\">1</a>") "html"
                    Expect.stringContains html ("href=\"/console/authorizers?status=revoked\">0</a>") "html"

                    let! list =
                        client.GetStringAsync(
                            pair.Gateway.Url "/console/authorizers?tenant=shop-store&status=authorized"
                        )

                    Expect.stringContains list "wxsimoa00000000001" "list"

                    let! none =
                        client.GetStringAsync(pair.Gateway.Url "/console/authorizers?tenant=shop-other")

                    Expect.isFalse (none.Contains("wxsimoa00000000001")) "none has no 'wxsimoa00000000001'"
                    let! metrics = pair.Gateway.Api.GetStringAsync "/metrics"

                    Expect.equal
                        (metricValue metrics "wechatfs_authorizers{status=\"authorized\"}")
                        (Some 1.)
                        "metricValue metrics 'wechatfs_authorizers{status=\\'author..."
                }

            testCaseTask "the funcKey page lists the routes saved through the API"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let client, _ = browser ()
                    use _ = client
                    let! _ = signIn client pair.Gateway adminKey
                    let! empty = client.GetAsync(pair.Gateway.Url "/console/func-keys")
                    Expect.equal empty.StatusCode HttpStatusCode.OK "empty.StatusCode"
                    let! emptyHtml = empty.Content.ReadAsStringAsync()
                    Expect.stringContains emptyHtml "<h1>FuncKey routes</h1>" "emptyHtml"

                    let! saved =
                        OAuthApiTests.saveFuncKey
                            pair
                            {|
                                func_key = "console-card"
                                target_url = "https://shop.example.com/card"
                                scope = "snsapi_userinfo"
                                tenant = "shop-console"
                                description = "Membership card"
                            |}

                    Expect.isTrue saved.IsSuccessStatusCode "saved"
                    let! html = client.GetStringAsync(pair.Gateway.Url "/console/func-keys")
                    Expect.stringContains html "console-card" "html"
                    Expect.stringContains html "https://shop.example.com/card" "html"
                    Expect.stringContains html "snsapi_userinfo" "html"
                    Expect.stringContains html "shop-console" "html"
                    Expect.stringContains html "Membership card" "html"
                    Expect.stringContains html "<th scope=\"col\">FuncKey</th>" "html"
                    Expect.stringContains html "aria-current=\"page\"" "html"
                    Expect.stringContains html "id=\"stale\"" "html"
                    // Signed out, the page sends you to sign in.
                    let anonymous, _ = browser ()
                    use _ = anonymous
                    let! refused = anonymous.GetAsync(pair.Gateway.Url "/console/func-keys")
                    Expect.equal refused.StatusCode HttpStatusCode.Redirect "refused.StatusCode"
                }

            testCaseTask "the deployments pages show a deployment's progress and each target's state"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let client, _ = browser ()
                    use _ = client
                    let! _ = signIn client pair.Gateway adminKey
                    let! empty = client.GetAsync(pair.Gateway.Url "/console/deployments")
                    Expect.equal empty.StatusCode HttpStatusCode.OK "empty.StatusCode"
                    let! emptyHtml = empty.Content.ReadAsStringAsync()
                    Expect.stringContains emptyHtml "<h1>Deployments</h1>" "emptyHtml"
                    let! appids, templateId = DeploymentsFixture.prepare pair 2

                    let! id =
                        DeploymentsFixture.deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "2.0.0"
                                user_desc = "console"
                                targets = appids
                                audit = null
                                release = "none"
                            |}

                    let! list = client.GetStringAsync(pair.Gateway.Url "/console/deployments")
                    Expect.stringContains list id "list"
                    Expect.stringContains list "<progress" "list"
                    Expect.stringContains list "2.0.0" "list"
                    let! detail = client.GetStringAsync(pair.Gateway.Url $"/console/deployments/{id}")
                    Expect.stringContains detail "<h1>Deployment</h1>" "detail"

                    for a in appids do
                        Expect.stringContains detail a "detail"

                    Expect.stringContains detail "<th scope=\"col\">Audit id</th>" "detail"
                    Expect.stringContains detail "Targets per state" "detail"
                    let! unknown = client.GetStringAsync(pair.Gateway.Url "/console/deployments/nope")
                    Expect.stringContains unknown "No deployment has this id." "unknown"
                }

            testCaseTask "the deliveries pages go through every delivery by their Next links, newest first"
            <| fun () ->
                task {
                    // More than two console pages (50 rows each) of delivered messages.
                    let! pair, hook = MessageApiTests.startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = AuthorizerApiTests.authorizeVia pair "shop-1" MessageApiTests.shop

                    for n in 1..109 do
                        let! _ =
                            sendMessage pair MessageApiTests.shop "text" [ "Content", $"row {n}"; "MsgId", $"91{n}" ]

                        ()

                    let listed () =
                        task {
                            let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=delivered&limit=500"
                            let! root = json r

                            return [ for item in root.GetProperty("items").EnumerateArray() -> str item "id" ]
                        }

                    // The authorization event and the 109 messages.
                    let! all =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! ids = listed ()
                                return ids.Length = 110
                            })

                    Expect.isTrue all "every push delivered"
                    let! expected = listed ()
                    let client, _ = browser ()
                    use _ = client
                    let! _ = signIn client pair.Gateway adminKey

                    let rowIds (html: string) =
                        [
                            for m in
                                Text.RegularExpressions.Regex.Matches(html, "href=\"/console/deliveries/([0-9a-f]+)\"") ->
                                m.Groups[1].Value
                        ]

                    let nextOf (html: string) =
                        let m = Text.RegularExpressions.Regex.Match(html, "<a href=\"([^\"]+)\">Next →</a>")

                        if m.Success then
                            Some(WebUtility.HtmlDecode m.Groups[1].Value)
                        else
                            None

                    let! first =
                        client.GetStringAsync(pair.Gateway.Url "/console/deliveries?status=delivered")

                    let mutable html = first
                    let mutable seen = rowIds first
                    let mutable pages = 1

                    while (nextOf html).IsSome do
                        let next = (nextOf html).Value
                        Expect.stringContains next "before=" "Next hands on a cursor"
                        let! page = client.GetStringAsync(pair.Gateway.Url next)
                        Expect.stringContains page "110 delivered deliveries" "the total on every page"
                        Expect.stringContains page ">← Newest</a>" "a way back to the first page"
                        html <- page
                        seen <- seen @ rowIds page
                        pages <- pages + 1

                    Expect.equal pages 3 "50, 50 and 10 rows"
                    Expect.equal seen expected "every delivery once, in the API's order"

                    // And back: "Previous" hands on the cursor of a page's first row, page after
                    // page to the first one, which has no "Previous".
                    let previousOf (html: string) =
                        let m =
                            Text.RegularExpressions.Regex.Match(html, "<a href=\"([^\"]+)\">← Previous</a>")

                        if m.Success then
                            Some(WebUtility.HtmlDecode m.Groups[1].Value)
                        else
                            None

                    let mutable backwards = [ rowIds html ]

                    while (previousOf html).IsSome do
                        let previous = (previousOf html).Value
                        Expect.stringContains previous "after=" "Previous hands on a cursor"
                        let! page = client.GetStringAsync(pair.Gateway.Url previous)
                        Expect.stringContains page "110 delivered deliveries" "the total on every page"
                        html <- page
                        backwards <- rowIds page :: backwards

                    Expect.equal backwards.Length 3 "three pages back to the first"
                    Expect.equal backwards.Head (rowIds first) "back on the first page"
                    Expect.equal (List.concat backwards) expected "the same rows on the way back"
                }

            testCaseTask "the red packets page lists packets, filtered by status and merchant, without secrets"
            <| fun () ->
                task {
                    let! pair = RedPackApiTests.startPayPair "sqlite" []
                    use _ = pair
                    let client, _ = browser ()
                    use _ = client
                    let! _ = signIn client pair.Gateway adminKey
                    let! empty = client.GetAsync(pair.Gateway.Url "/console/redpacks")
                    Expect.equal empty.StatusCode HttpStatusCode.OK "empty.StatusCode"
                    let! emptyHtml = empty.Content.ReadAsStringAsync()
                    Expect.stringContains emptyHtml "<h1>Red packets</h1>" "emptyHtml"
                    Expect.stringContains emptyHtml "<label for=\"status\">" "emptyHtml"
                    let! merchant = RedPackApiTests.registerMerchant pair

                    let! status, packet =
                        RedPackApiTests.sendPacket pair "console-1" (RedPackApiTests.packetBody 888)

                    Expect.equal status HttpStatusCode.Created (packet.GetRawText())
                    let id = str packet "id"
                    let packetStatus = str packet "status"
                    let! html = client.GetStringAsync(pair.Gateway.Url "/console/redpacks")
                    Expect.stringContains html id "html"
                    Expect.stringContains html RedPackApiTests.mchId "html"
                    Expect.stringContains html RedPackApiTests.appid "html"
                    Expect.stringContains html "8.88" "html"
                    Expect.isFalse (html.Contains(str merchant "api_key")) "no API key in the page"
                    Expect.isFalse (html.Contains "PRIVATE KEY") "no private key in the page"

                    let! byStatus =
                        client.GetStringAsync(
                            pair.Gateway.Url $"/console/redpacks?status={packetStatus}&mch_id={RedPackApiTests.mchId}"
                        )

                    Expect.stringContains byStatus id "byStatus"
                    let other = if packetStatus = "failed" then "refunded" else "failed"

                    let! otherStatus =
                        client.GetStringAsync(pair.Gateway.Url $"/console/redpacks?status={other}")

                    Expect.isFalse (otherStatus.Contains id) "otherStatus"

                    let! otherMerchant =
                        client.GetStringAsync(pair.Gateway.Url "/console/redpacks?mch_id=1900000999")

                    Expect.isFalse (otherMerchant.Contains id) "otherMerchant"
                }

        ]

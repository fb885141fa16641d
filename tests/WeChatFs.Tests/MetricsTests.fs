/// The metrics: per-minute push history and labels (pure), and `/metrics` scraped over HTTP from a
/// gateway that talks to the simulator.
module WeChatFs.Tests.MetricsTests

open System
open System.Net
open System.Net.Http
open System.Text
open System.Text.RegularExpressions
open System.Threading.Tasks
open FsCheck
open FsCheck.FSharp
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Metrics
open WeChatFs.Tests.Harness

let private scrape (client: HttpClient) (url: string) =
    task {
        let! r = client.GetAsync(url: string)
        let! body = r.Content.ReadAsStringAsync()
        return r.StatusCode, body
    }

let private forgedPush (pair: Pair) =
    pair.Http.PostAsync(
        pair.Gateway.Url "/wechat/component/events?timestamp=1&nonce=2&encrypt_type=aes&msg_signature=bad",
        new StringContent(
            "<xml><AppId><![CDATA[x]]></AppId><Encrypt><![CDATA[abc]]></Encrypt></xml>",
            Encoding.UTF8,
            "text/xml"
        )
    )


let tests =
    testSequencedGroup "Metrics"
    <| testList
        "Metrics"
        [
            testCase "the push series has one value per minute, ending now, with every count inside the window"
            <| fun () ->
                let counts =
                    Gen.listOf (Gen.zip (Gen.choose (0, 800)) (Gen.choose (1, 50))) |> Arb.fromGen

                Prop.forAll counts (fun entries ->
                    let now = 1_000_000L

                    let snapshot =
                        entries
                        |> List.map (fun (ago, n) -> now - int64 ago, int64 n)
                        |> List.groupBy fst
                        |> List.map (fun (m, xs) -> m, xs |> List.sumBy snd)
                        |> Map.ofList

                    let series = PushHistory.series now 180 snapshot
                    let inside = snapshot |> Map.filter (fun m _ -> m > now - 180L && m <= now)

                    series.Length = 180
                    && fst (List.last series) = now
                    && (series |> List.pairwise |> List.forall (fun ((a, _), (b, _)) -> b = a + 1L))
                    && (series |> List.sumBy snd) = (inside |> Map.toList |> List.sumBy snd))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

            testCase "an api label is a WeChat-shaped path or other, never anything a caller made up"
            <| fun () ->
                let pathChars =
                    Gen.elements ([ 'a' .. 'z' ] @ [ '0'; '9'; '_'; '/'; '.'; '?'; '='; 'A'; ' '; '%'; '-'; 'O' ])
                    |> Gen.arrayOf
                    |> Gen.map String
                    |> Arb.fromGen

                Prop.forAll pathChars (fun path ->
                    let label = apiLabel path

                    label = "other"
                    || (label.Length <= 80
                        && label
                           |> Seq.forall (fun c ->
                               Char.IsAsciiLetterLower c
                               || Char.IsAsciiDigit c
                               || c = '_'
                               || c = '/'
                               || c = '-')))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), p)

                Expect.equal
                    (apiLabel "/cgi-bin/component/api_component_token")
                    "cgi-bin/component/api_component_token"
                    "apiLabel '/cgi-bin/component/api_component_token'"

                Expect.equal
                    (apiLabel "/cgi-bin/user/info/oABCDEFGHIJ/x/y/z/w")
                    "other"
                    "apiLabel '/cgi-bin/user/info/oABCDEFGHIJ/x/y/z/w'"

                Expect.equal (apiLabel "/sns/oAbC123") "other" "apiLabel '/sns/oAbC123'"

            testCaseTask
                "metrics need the admin key and count pushes, WeChat calls, refreshes and gauges without a secret"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let url = pair.Gateway.Url "/metrics"
                    let! anonymous, _ = scrape pair.Http url
                    Expect.equal anonymous HttpStatusCode.Unauthorized "anonymous"

                    let! _ = pushTicket pair
                    let! tokenStatus, token = componentToken pair
                    Expect.equal tokenStatus HttpStatusCode.OK "tokenStatus"
                    let tokenValue = str token.Value "component_access_token"

                    for _ in 1..3 do
                        let! refused = forgedPush pair
                        Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"

                    let mutable body = ""

                    let! counted =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! status, text = scrape pair.Gateway.Api url
                                body <- text

                                return
                                    status = HttpStatusCode.OK
                                    && metricValue
                                        text
                                        "wechatfs_pushes_total{endpoint=\"component_events\",outcome=\"refused\"}"
                                        =
                                        Some 3.
                                    && (metricValue
                                            text
                                            "wechatfs_pushes_total{endpoint=\"component_events\",outcome=\"accepted\"}"
                                        |> Option.exists (fun n -> n >= 1.))
                            })

                    Expect.isTrue counted body

                    Expect.equal
                        (metricValue
                            body
                            "wechatfs_wechat_calls_total{api=\"cgi-bin/component/api_component_token\",errcode=\"0\"}")
                        (Some 1.)
                        "metricValue body 'wechatfs_wechat_calls_total{api=\\'cgi-bin/component/..."

                    Expect.equal
                        (metricValue body "wechatfs_token_refreshes_total{outcome=\"success\",role=\"component\"}")
                        (Some 1.)
                        "metricValue body 'wechatfs_token_refreshes_total{outcome=\\'success\\',..."

                    Expect.equal
                        (metricValue body "wechatfs_deliveries_pending")
                        (Some 0.)
                        "metricValue body 'wechatfs_deliveries_pending'"

                    Expect.equal
                        (metricValue body "wechatfs_deliveries_dead")
                        (Some 0.)
                        "metricValue body 'wechatfs_deliveries_dead'"

                    Expect.equal
                        (metricValue body "wechatfs_authorizers{status=\"authorized\"}")
                        (Some 0.)
                        "metricValue body 'wechatfs_authorizers{status=\\'authorized\\'}'"

                    let left = metricValue body "wechatfs_component_token_seconds_left"
                    Expect.isTrue (left.IsSome && left.Value > 7000. && left.Value <= 7200.) body
                    // One duration per push, refused or not (the simulator pushes a ticket by itself at start too).
                    let accepted =
                        metricValue body "wechatfs_pushes_total{endpoint=\"component_events\",outcome=\"accepted\"}"

                    Expect.equal
                        (metricValue body "wechatfs_push_duration_seconds_count{endpoint=\"component_events\"}")
                        (Some(accepted.Value + 3.))
                        "metricValue body 'wechatfs_push_duration_seconds_count{endpoint=\\'comp..."

                    Expect.isFalse (body.Contains(tokenValue: string)) "body must not contain tokenValue"
                    Expect.isFalse (body.Contains(appSecret: string)) "body must not contain appSecret"
                }

            testCaseTask
                "an authorized account, its refresh, a duplicate push and the intake log's syncs show in the metrics"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! _ = pushTicket pair

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! s, _ = componentToken pair
                                return s = HttpStatusCode.OK
                            })

                    let! _ = AuthorizerApiTests.authorizeVia pair "shop-m" "wxsimoa00000000001"

                    let! refreshed =
                        pair.Gateway.Api.PostAsync("/api/authorizers/wxsimoa00000000001/refresh", null)

                    Expect.equal refreshed.StatusCode HttpStatusCode.OK "refreshed.StatusCode"
                    // The same message twice (WeChat's retry): stored once, counted as a duplicate.
                    let! _ =
                        sendMessage pair "wxsimoa00000000001" "text" [ "Content", "hi"; "MsgId", "77001" ]

                    let! _ =
                        sendMessage pair "wxsimoa00000000001" "text" [ "Content", "hi"; "MsgId", "77001" ]

                    let mutable body = ""

                    let! seen =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! _, text = scrape pair.Gateway.Api (pair.Gateway.Url "/metrics")
                                body <- text

                                return
                                    metricValue text "wechatfs_authorizers{status=\"authorized\"}" = Some 1.
                                    && metricValue
                                        text
                                        "wechatfs_pushes_total{endpoint=\"authorizer_callback\",outcome=\"duplicate\"}"
                                        =
                                        Some 1.
                                    && metricValue
                                        text
                                        "wechatfs_pushes_total{endpoint=\"authorizer_callback\",outcome=\"accepted\"}"
                                        =
                                        Some 1.
                                    // The refresher's passes, once it knows the account.
                                    && metricValue
                                        text
                                        "wechatfs_authorizer_refresher_passes_total{outcome=\"success\"}"
                                       |> Option.exists (fun n -> n >= 1.)
                            })

                    Expect.isTrue seen body

                    let refreshes =
                        metricValue body "wechatfs_token_refreshes_total{outcome=\"success\",role=\"authorizer\"}"

                    Expect.isTrue (refreshes.IsSome && refreshes.Value >= 1.) body
                    // The stored push was synced to the intake log's disk first: at least one sync timed.
                    let syncs = metricValue body "wechatfs_intake_sync_duration_seconds_count"
                    Expect.isTrue (syncs.IsSome && syncs.Value >= 1.) $"intake syncs {syncs}"
                    Expect.isFalse (body.Contains("wxsimoa00000000001")) "body has no 'wxsimoa00000000001'"
                    // No openid, appid or token in any label: every label value is from a bounded set.
                    let labels = Regex.Matches(body, "(\\w+)=\"([^\"]*)\"")

                    for m in labels do
                        let name, value = m.Groups[1].Value, m.Groups[2].Value

                        if
                            name = "api"
                            || name = "errcode"
                            || name = "endpoint"
                            || name = "outcome"
                            || name = "status"
                            || name = "role"
                        then
                            Expect.isTrue (value.Length <= 80 && not (value.StartsWith "o")) ($"{name}={value}")
                }

            testCaseTask
                "metrics can be scraped without the key when configured so, and one gateway does not count another's pushes"
            <| fun () ->
                task {
                    use! open' =
                        startPairWith (simulatorOptions ()) [ "WeChatFs:Metrics:Anonymous", "true" ]

                    use! other = startPair ()

                    for _ in 1..2 do
                        let! _ = forgedPush other
                        ()

                    let! _ = forgedPush open'
                    let! status, body = scrape open'.Http (open'.Gateway.Url "/metrics")
                    Expect.equal status HttpStatusCode.OK "status"

                    Expect.equal
                        (metricValue body "wechatfs_pushes_total{endpoint=\"component_events\",outcome=\"refused\"}")
                        (Some 1.)
                        "metricValue body 'wechatfs_pushes_total{endpoint=\\'component_events\\'..."
                }

        ]

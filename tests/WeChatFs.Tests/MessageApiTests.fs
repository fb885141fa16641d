/// Messages and events end to end: the simulated WeChat sends, the gateway stores and answers, a real
/// webhook receives (or is down), and replies travel back encrypted.
module WeChatFs.Tests.MessageApiTests

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open Microsoft.Extensions.DependencyInjection
open WeChatFs.Store
open WeChatFs.Tests.Harness
open WeChatFs.Tests.AuthorizerApiTests

let private shop = "wxsimoa00000000001"
let private mini = "wxsimmp00000000001"

let private startWithWebhook (extra: (string * string) list) =
    task {
        let! hook = startWebhook ()
        let! pair = startPairWith (simulatorOptions ()) (webhookSettings hook @ extra)
        let! _ = pushTicket pair

        let! _ =
            eventually (TimeSpan.FromSeconds 5.) (fun () ->
                task {
                    let! r = pair.Gateway.Api.GetAsync "/api/component/access-token" in return r.IsSuccessStatusCode
                })

        return pair, hook
    }

let private messagesOf (hook: WebhookListener) =
    hook.Payloads
    |> List.filter (fun p -> not ((str p "kind").StartsWith "authorization."))

let private waitFor (hook: WebhookListener) (count: int) =
    eventually (TimeSpan.FromSeconds 10.) (fun () -> task { return (messagesOf hook).Length >= count })


let tests =
    testSequencedGroup "MessageApi"
    <| testList
        "MessageApi"
        [
            testCaseTask "every message and event type reaches the webhook once, typed and signed"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-7" shop
                    let! _ = authorizeVia pair "shop-7" mini

                    let cases =
                        [
                            shop, "text", [ "Content", "hello"; "MsgId", "1001" ], "text", "content", "hello"
                            shop,
                            "image",
                            [ "PicUrl", "http://pic"; "MediaId", "m1"; "MsgId", "1002" ],
                            "image",
                            "media_id",
                            "m1"
                            shop,
                            "voice",
                            [ "MediaId", "m2"; "Format", "amr"; "Recognition", "hi"; "MsgId", "1003" ],
                            "voice",
                            "format",
                            "amr"
                            shop,
                            "video",
                            [ "MediaId", "m3"; "ThumbMediaId", "t3"; "MsgId", "1004" ],
                            "video",
                            "thumb_media_id",
                            "t3"
                            shop,
                            "shortvideo",
                            [ "MediaId", "m4"; "ThumbMediaId", "t4"; "MsgId", "1005" ],
                            "shortvideo",
                            "media_id",
                            "m4"
                            shop,
                            "location",
                            [
                                "Location_X", "23.134521"
                                "Location_Y", "113.358803"
                                "Scale", "20"
                                "Label", "Here"
                                "MsgId", "1006"
                            ],
                            "location",
                            "label",
                            "Here"
                            shop,
                            "link",
                            [ "Title", "T"; "Description", "D"; "Url", "http://u"; "MsgId", "1007" ],
                            "link",
                            "url",
                            "http://u"
                            shop,
                            "event",
                            [ "Event", "subscribe"; "EventKey", "qrscene_42"; "Ticket", "tk" ],
                            "event.subscribe",
                            "scene",
                            "42"
                            shop, "event", [ "Event", "unsubscribe" ], "event.unsubscribe", "event", "unsubscribe"
                            shop,
                            "event",
                            [ "Event", "SCAN"; "EventKey", "42"; "Ticket", "tk" ],
                            "event.SCAN",
                            "event_key",
                            "42"
                            shop,
                            "event",
                            [
                                "Event", "LOCATION"
                                "Latitude", "23.137466"
                                "Longitude", "113.352425"
                                "Precision", "119.385040"
                            ],
                            "event.LOCATION",
                            "latitude",
                            "23.137466"
                            shop,
                            "event",
                            [ "Event", "CLICK"; "EventKey", "menu_1" ],
                            "event.CLICK",
                            "event_key",
                            "menu_1"
                            shop,
                            "event",
                            [ "Event", "VIEW"; "EventKey", "http://v"; "MenuId", "9" ],
                            "event.VIEW",
                            "menu_id",
                            "9"
                            shop,
                            "event",
                            [ "Event", "TEMPLATESENDJOBFINISH"; "MsgID", "200"; "Status", "success" ],
                            "event.TEMPLATESENDJOBFINISH",
                            "status",
                            "success"
                            mini,
                            "event",
                            [ "Event", "weapp_audit_success"; "SuccTime", "1700000500" ],
                            "event.weapp_audit_success",
                            "succ_time",
                            "1700000500"
                            mini,
                            "event",
                            [
                                "Event", "weapp_audit_fail"
                                "Reason", "r"
                                "FailTime", "1700000500"
                                "ScreenShot", "a|b"
                            ],
                            "event.weapp_audit_fail",
                            "screenshot",
                            "a|b"
                            mini,
                            "event",
                            [ "Event", "weapp_audit_delay"; "Reason", "later"; "DelayTime", "1700000600" ],
                            "event.weapp_audit_delay",
                            "reason",
                            "later"
                            shop,
                            "miniprogrampage",
                            [ "Title", "new kind"; "MsgId", "1008" ],
                            "unknown.miniprogrampage",
                            "msg_type",
                            "miniprogrampage"
                        ]

                    for i, (appid, msgType, fields, _, _, _) in List.indexed cases do
                        // Distinct senders keep events (keyed by sender and time) distinct.
                        let! r =
                            postJson
                                pair.Http
                                (pair.SimUrl "/sim/messages")
                                {|
                                    appid = appid
                                    msg_type = msgType
                                    fields = dict fields
                                    from_user = $"oUSER{i}"
                                |}

                        let! root = json r
                        Expect.equal (str root "body") "success" "str root 'body'"

                    let! all = waitFor hook cases.Length
                    Expect.isTrue all "all"

                    let! noMore =
                        holdsFor (TimeSpan.FromMilliseconds 300.) (fun () ->
                            Task.FromResult((messagesOf hook).Length = cases.Length))

                    Expect.isTrue noMore "no message is delivered twice"
                    let received = messagesOf hook
                    Expect.equal received.Length cases.Length "received.Length"

                    for r in hook.Received do
                        Expect.equal r.Signature (Messages.signBody "hook-secret" r.Body) "r.Signature"
                        Expect.isFalse (String.IsNullOrEmpty r.Delivery) "String.IsNullOrEmpty r.Delivery"

                    for appid, _, _, kind, field, value in cases do
                        let p = received |> List.find (fun p -> str p "kind" = kind)
                        Expect.equal (str p "authorizer_appid") appid "str p 'authorizer_appid'"
                        Expect.equal (str p "tenant") "shop-7" "str p 'tenant'"
                        Expect.equal (str (p.GetProperty "message") field) value "str (p.GetProperty 'message') field"
                        Expect.stringContains (str p "raw_xml") "<xml>" "str p 'raw_xml'"

                    // Authorization events are forwarded the same way.
                    Expect.exists
                        hook.Payloads
                        (fun p -> str p "kind" = "authorization.authorized")
                        "hook.Payloads has one that matches"
                }

            testCaseTask "WeChat's retries are delivered once"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop

                    for _ in 1..3 do
                        let! _ = sendMessage pair shop "text" [ "Content", "again"; "MsgId", "777" ]
                        ()

                    for _ in 1..2 do
                        let! _ =
                            postJson
                                pair.Http
                                (pair.SimUrl "/sim/messages")
                                {|
                                    appid = shop
                                    msg_type = "event"
                                    fields = dict [ "Event", "CLICK"; "EventKey", "k" ]
                                    create_time = 1700000000
                                |}

                        ()

                    let! both = waitFor hook 2
                    Expect.isTrue both "the message and the event are delivered"

                    let! once =
                        holdsFor (TimeSpan.FromMilliseconds 500.) (fun () ->
                            Task.FromResult((messagesOf hook).Length = 2))

                    Expect.isTrue once "retries are not delivered again"
                }

            testCaseTask
                "a webhook that is down gets the message later; after the last attempt it is dead and can be retried"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook [ "WeChatFs:Webhooks:MaxAttempts", "3" ]
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                return
                                    hook.Payloads
                                    |> List.exists (fun p -> str p "kind" = "authorization.authorized")
                            })

                    hook.Respond <- fun _ -> 503, ""

                    let! answer =
                        sendMessage pair shop "text" [ "Content", "while down"; "MsgId", "900" ]

                    Expect.equal (str answer "body") "success" "str answer 'body'"

                    let! dead =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=dead"
                                let! root = json r
                                return root.GetProperty("total").GetInt32() = 1
                            })

                    Expect.isTrue dead "dead"
                    let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=dead"
                    let! root = json r
                    let item = root.GetProperty("items")[0]
                    Expect.equal (item.GetProperty("attempts").GetInt32()) 3 "item.GetProperty('attempts').GetInt32()"
                    Expect.equal (str item "last_error") "HTTP 503" "str item 'last_error'"
                    hook.Respond <- fun _ -> 200, ""

                    let! retried =
                        pair.Gateway.Api.PostAsync($"""/api/deliveries/{str item "id"}/retry""", null)

                    Expect.equal retried.StatusCode HttpStatusCode.Accepted "retried.StatusCode"
                    let! delivered = waitFor hook 1
                    Expect.isTrue delivered "delivered"

                    let! again =
                        pair.Gateway.Api.PostAsync($"""/api/deliveries/{str item "id"}/retry""", null)

                    Expect.equal again.StatusCode HttpStatusCode.Conflict "again.StatusCode"
                }

            testCaseTask
                "delivered messages and old event records are deleted after their retention; undelivered ones stay"
            <| fun () ->
                task {
                    let! pair, hook =
                        startWithWebhook
                            [
                                "WeChatFs:Webhooks:DeliveredRetention", "01:00:00"
                                "WeChatFs:Webhooks:MaxAttempts", "1"
                                "WeChatFs:Events:Retention", "1.00:00:00"
                            ]

                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop
                    let! _ = sendMessage pair shop "text" [ "Content", "kept a while"; "MsgId", "950" ]

                    // The authorization event and the first message reach the webhook before it goes down.
                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let kinds = hook.Payloads |> List.map (fun p -> str p "kind")
                                return List.contains "authorization.authorized" kinds && List.contains "text" kinds
                            })

                    hook.Respond <- fun _ -> 503, ""

                    let! _ =
                        sendMessage pair shop "text" [ "Content", "never delivered"; "MsgId", "951" ]

                    let total status =
                        task {
                            let! r = pair.Gateway.Api.GetAsync $"/api/deliveries?status={status}"
                            let! root = json r
                            return root.GetProperty("total").GetInt32()
                        }

                    let! settled =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! delivered = total "delivered"
                                let! dead = total "dead"
                                return delivered >= 2 && dead = 1
                            })

                    Expect.isTrue settled "settled"
                    // Within the retention nothing goes.
                    let! kept =
                        holdsFor (TimeSpan.FromSeconds 1.5) (fun () ->
                            task {
                                let! delivered = total "delivered"
                                return delivered >= 2
                            })

                    Expect.isTrue kept "delivered messages stay within the retention"
                    pair.Gateway.Clock.Offset <- TimeSpan.FromHours 2.

                    let! purged =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! delivered = total "delivered"
                                return delivered = 0
                            })

                    Expect.isTrue purged "purged"
                    let! dead = total "dead"
                    Expect.equal dead 1 "dead"

                    // The event log keeps its records for a day: still there after two hours, gone after two days.
                    let store = pair.Gateway.App.Services.GetRequiredService<IStore>()

                    do!
                        store.AppendEvent
                            {
                                Kind = "test_record"
                                Subject = shop
                                Detail = ""
                                At = pair.Gateway.Clock.GetUtcNow()
                            }

                    let records () =
                        task {
                            let! recent = store.RecentEvents(Some "test_record", 10)
                            return recent.Length
                        }

                    pair.Gateway.Clock.Offset <- TimeSpan.FromHours 3.

                    let! kept =
                        holdsFor (TimeSpan.FromSeconds 1.5) (fun () ->
                            task {
                                let! n = records ()
                                return n = 1
                            })

                    Expect.isTrue kept "an event record stays within its retention"
                    pair.Gateway.Clock.Offset <- TimeSpan.FromDays 2.

                    let! eventsPurged =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! n = records ()
                                return n = 0
                            })

                    Expect.isTrue eventsPurged "eventsPurged"
                }

            testCaseTask "undelivered messages are delivered after a restart"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop
                    hook.Respond <- fun _ -> 500, ""

                    for i in 1..3 do
                        let! _ = sendMessage pair shop "text" [ "Content", $"m{i}"; "MsgId", $"50{i}" ]
                        ()

                    // Stopped with three messages undelivered; the webhook recovers while the gateway is down.
                    do! pair.Gateway.StopAsync()
                    hook.Respond <- fun _ -> 200, ""

                    let! g =
                        startGatewayWith
                            pair.Sim.BaseUrl
                            pair.Gateway.DataFolder
                            pair.Gateway.Clock
                            (webhookSettings hook)

                    pair.Gateway <- g
                    let! all = waitFor hook 3
                    Expect.isTrue all "all"

                    let! once =
                        holdsFor (TimeSpan.FromMilliseconds 500.) (fun () ->
                            Task.FromResult((messagesOf hook).Length = 3))

                    Expect.isTrue once "each message is delivered once after the restart"

                    let contents =
                        messagesOf hook
                        |> List.map (fun p -> str (p.GetProperty "message") "content")
                        |> List.sort

                    Expect.equal contents ([ "m1"; "m2"; "m3" ]) "contents"
                }

            testCaseTask "a webhook's reply goes back to WeChat as an encrypted passive reply"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop

                    hook.Respond <-
                        fun r ->
                            if r.Body.Contains "news please" then
                                200,
                                """{"reply":{"msg_type":"news","articles":[{"title":"T","description":"D","pic_url":"http://p","url":"http://u"}]}}"""
                            else
                                200, """{"reply":{"msg_type":"text","content":"hi ]]> there"}}"""

                    let! answer = sendMessage pair shop "text" [ "Content", "hello"; "MsgId", "31" ]
                    let reply = str answer "reply"

                    Expect.equal
                        (answer.GetProperty("reply_error").ValueKind)
                        JsonValueKind.Null
                        "answer.GetProperty('reply_error').ValueKind"

                    let fields = Wire.parseXml reply |> Result.defaultValue Map.empty

                    Expect.equal
                        (fields |> Map.tryFind "Content")
                        (Some "hi ]]> there")
                        "fields |> Map.tryFind 'Content'"

                    Expect.equal
                        (fields |> Map.tryFind "ToUserName")
                        (Some "oSIM_USER_0001")
                        "fields |> Map.tryFind 'ToUserName'"

                    Expect.equal
                        (fields |> Map.tryFind "FromUserName")
                        (Some "gh_5a1c0ffee0001")
                        "fields |> Map.tryFind 'FromUserName'"

                    let! news = sendMessage pair shop "text" [ "Content", "news please"; "MsgId", "32" ]
                    Expect.stringContains (str news "reply") "<ArticleCount>1</ArticleCount>" "str news 'reply'"
                }

            testCaseTask "the full-network release cases pass for every test group"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! _ = pushTicket pair

                    for group in 1..5 do
                        let! r = postJson pair.Http (pair.SimUrl "/sim/release-test") {| group = group |}
                        let! report = json r
                        Expect.isTrue (report.GetProperty("passed").GetBoolean()) (report.GetRawText())
                        // What the gateway itself sent, looked at directly rather than through the report:
                        let account = Simulator.SimModel.releaseTestAccounts[(group - 1) * 2].AppId
                        let user = $"oRELEASE_TEST_USER_{group}"
                        // the customer-service message through message/custom/send, to the test user;
                        let! custom = pair.Http.GetAsync(pair.SimUrl "/sim/custom-messages")
                        let! sent = json custom

                        Expect.exists
                            (sent.EnumerateArray())
                            (fun m ->
                                str m "AppId" = account
                                && str m "ToUser" = user
                                && (str m "Content").EndsWith "_from_api")
                            "a custom/send with <code>_from_api"

                        // the text case's passive reply, decrypted;
                        let! text =
                            sendMessage pair account "text" [ "Content", "TESTCOMPONENT_MSG_TYPE_TEXT" ]

                        let reply = Wire.parseXml (str text "reply") |> Result.defaultValue Map.empty

                        Expect.equal
                            (reply |> Map.tryFind "Content")
                            (Some "TESTCOMPONENT_MSG_TYPE_TEXT_callback")
                            "text reply"
                        // and the event case's.
                        let! event =
                            sendMessage pair account "event" [ "Event", "LOCATION"; "Latitude", "23.1" ]

                        let eventReply = Wire.parseXml (str event "reply") |> Result.defaultValue Map.empty
                        Expect.equal (eventReply |> Map.tryFind "Content") (Some "LOCATIONfrom_callback") "event reply"
                }

            testCaseTask "forged pushes are refused and unknown accounts are answered without a delivery"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook

                    let! forged =
                        pair.Http.PostAsync(
                            pair.Gateway.Url
                                $"/wechat/authorizers/{shop}/callback?timestamp=1&nonce=2&msg_signature=bad",
                            new StringContent("<xml><ToUserName>x</ToUserName><Encrypt>AAAA</Encrypt></xml>")
                        )

                    Expect.equal forged.StatusCode HttpStatusCode.Unauthorized "forged.StatusCode"

                    let! unknown =
                        sendMessage pair "wxsimoa00000000003" "text" [ "Content", "who?"; "MsgId", "1" ]

                    Expect.equal (str unknown "body") "success" "str unknown 'body'"

                    let! none =
                        holdsFor (TimeSpan.FromMilliseconds 300.) (fun () -> Task.FromResult((messagesOf hook).IsEmpty))

                    Expect.isTrue none "nothing is delivered for an account that is not authorized"
                    let! deliveries = pair.Gateway.Api.GetAsync "/api/deliveries"
                    let! root = json deliveries

                    Expect.equal
                        (root.GetProperty("items").EnumerateArray()
                         |> Seq.filter (fun d -> not ((str d "kind").StartsWith "authorization."))
                         |> Seq.length)
                        0
                        "root.GetProperty('items').EnumerateArray() |> Seq.filter (fun d -> ..."
                }

            testCaseTask "after a key rotation pushes under the previous key still open, and the URL check echoes"
            <| fun () ->
                task {
                    // The simulator (WeChat) still encrypts with the old key; the gateway has a new current one.
                    let! hook = startWebhook ()
                    use _ = hook

                    let! pair =
                        startPairWith
                            (simulatorOptions ())
                            (webhookSettings hook
                             @ [
                                 "WeChatFs:Component:EncodingAesKey", String('B', 43)
                                 "WeChatFs:Component:PreviousEncodingAesKey", encodingAesKey
                             ])

                    use _ = pair
                    let! _ = pushTicket pair
                    let! _ = authorizeVia pair "shop-1" shop
                    hook.Respond <- fun _ -> 200, """{"reply":{"msg_type":"text","content":"rotated"}}"""
                    let! answer = sendMessage pair shop "text" [ "Content", "hi"; "MsgId", "4242" ]
                    // The reply is sealed with the key that opened the push, so WeChat can read it.
                    Expect.stringContains (str answer "reply") "rotated" "str answer 'reply'"
                    let signature = Crypto.plainSignature token "1700000000" "42"

                    let! check =
                        pair.Http.GetStringAsync(
                            pair.Gateway.Url
                                $"/wechat/authorizers/{shop}/callback?signature={signature}&timestamp=1700000000&nonce=42&echostr=hello"
                        )

                    Expect.equal check "hello" "check"

                    let! bad =
                        pair.Http.GetAsync(
                            pair.Gateway.Url
                                $"/wechat/authorizers/{shop}/callback?signature=x&timestamp=1&nonce=2&echostr=hello"
                        )

                    Expect.equal bad.StatusCode HttpStatusCode.Unauthorized "bad.StatusCode"
                }

            testCaseTask "a tenant with its own webhook gets its messages there"
            <| fun () ->
                task {
                    let! shared = startWebhook ()
                    use _ = shared
                    let! own = startWebhook ()
                    use _ = own

                    let! pair =
                        startPairWith
                            (simulatorOptions ())
                            (webhookSettings shared @ [ "WeChatFs:Webhooks:Tenants:vip:Url", own.Url ])

                    use _ = pair
                    let! _ = pushTicket pair

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync "/api/component/access-token" in
                                return r.IsSuccessStatusCode
                            })

                    let! _ = authorizeVia pair "vip" shop
                    let! _ = authorizeVia pair "plain" mini
                    let! _ = sendMessage pair shop "text" [ "Content", "to vip"; "MsgId", "61" ]
                    let! _ = sendMessage pair mini "text" [ "Content", "to shared"; "MsgId", "62" ]
                    let! _ = waitFor own 1
                    let! _ = waitFor shared 1

                    Expect.equal
                        (messagesOf own |> List.map (fun p -> str (p.GetProperty "message") "content"))
                        ([ "to vip" ])
                        "messagesOf own |> List.map (fun p -> str (p.GetProperty 'message') ..."

                    Expect.equal
                        (messagesOf shared |> List.map (fun p -> str (p.GetProperty "message") "content"))
                        ([ "to shared" ])
                        "messagesOf shared |> List.map (fun p -> str (p.GetProperty 'message..."
                }

        ]

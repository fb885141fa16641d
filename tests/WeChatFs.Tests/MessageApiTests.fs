/// Messages and events end to end: the simulated WeChat sends, the gateway stores and answers, and a
/// real webhook receives every type once, signed, retries included. The gateway-and-webhook helpers
/// here serve MessageDeliveryTests and MessageRepliesTests too.
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

let shop = "wxsimoa00000000001"
let mini = "wxsimmp00000000001"

let startWithWebhook (extra: (string * string) list) =
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

let messagesOf (hook: WebhookListener) =
    hook.Payloads
    |> List.filter (fun p -> not ((str p "kind").StartsWith "authorization."))

let waitFor (hook: WebhookListener) (count: int) =
    eventually (TimeSpan.FromSeconds 10.) (fun () -> task { return (messagesOf hook).Length >= count })

let tests =
    // One sequence with the other message modules: each starts its own gateway and simulator.
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
                        Expect.equal r.Signature (signBody "hook-secret" r.Body) "r.Signature"
                        Expect.isFalse (String.IsNullOrEmpty r.Delivery) "String.IsNullOrEmpty r.Delivery"
                        Expect.equal r.ContentType "application/json; charset=utf-8" "the body's type"

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

            testCaseTask "the deliveries list pages by cursor through every delivery, newest first, as by offset"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop

                    for n in 1..7 do
                        let! _ = sendMessage pair shop "text" [ "Content", $"page {n}"; "MsgId", $"81{n}" ]
                        ()

                    let getRoot (query: string) =
                        task {
                            let! r = pair.Gateway.Api.GetAsync $"/api/deliveries?{query}"
                            Expect.equal r.StatusCode HttpStatusCode.OK query
                            return! json r
                        }

                    let ids (root: JsonElement) =
                        [ for item in root.GetProperty("items").EnumerateArray() -> str item "id" ]

                    let! all =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! root = getRoot "status=delivered&limit=100"
                                return root.GetProperty("total").GetInt32() = 8
                            })

                    Expect.isTrue all "the event and 7 messages delivered"

                    for status in [ ""; "status=delivered&" ] do
                        let! whole = getRoot $"{status}limit=100"
                        let expected = ids whole
                        Expect.equal expected.Length 8 "the whole list"
                        Expect.equal (whole.GetProperty("next_before").ValueKind) JsonValueKind.Null "nothing follows"

                        let! first = getRoot $"{status}limit=3"
                        let mutable page = first
                        let mutable paged = ids first

                        while page.GetProperty("next_before").ValueKind <> JsonValueKind.Null do
                            Expect.equal (page.GetProperty("total").GetInt32()) 8 "the total on every page"
                            let cursor = Uri.EscapeDataString(page.GetProperty("next_before").GetString())
                            let! next = getRoot $"{status}before={cursor}&limit=3"
                            page <- next
                            paged <- paged @ ids next

                        Expect.equal paged expected $"every item once, in order ({status})"

                        Expect.equal
                            (first.GetProperty("previous_after").ValueKind)
                            JsonValueKind.Null
                            "nothing precedes the first page"

                        // And back from the last page: each page's previous_after gives the page before.
                        let mutable backwards = [ ids page ]

                        while page.GetProperty("previous_after").ValueKind <> JsonValueKind.Null do
                            let cursor = Uri.EscapeDataString(page.GetProperty("previous_after").GetString())
                            let! previous = getRoot $"{status}after={cursor}&limit=3"
                            Expect.equal (previous.GetProperty("total").GetInt32()) 8 "the total on every page"
                            page <- previous
                            backwards <- ids previous :: backwards

                        Expect.equal (List.concat backwards) expected $"every item once on the way back ({status})"
                        Expect.equal backwards.Head (ids first) "back at the first page"

                        // An offset page hands on its cursor too.
                        let! byOffset = getRoot $"{status}offset=2&limit=3"
                        let cursor = Uri.EscapeDataString(byOffset.GetProperty("next_before").GetString())
                        let! after = getRoot $"{status}before={cursor}&limit=100"
                        Expect.equal (ids after) (List.skip 5 expected) "after an offset page"

                    for bad in
                        [
                            "before=nonsense"
                            "before=12.ab%20cd"
                            "before=1.abc&offset=0"
                            "after=nonsense"
                            "after=1.abc&before=2.abc"
                            "after=1.abc&offset=3"
                        ] do
                        let! r = pair.Gateway.Api.GetAsync $"/api/deliveries?{bad}"
                        Expect.equal r.StatusCode HttpStatusCode.BadRequest bad
                }
        ]

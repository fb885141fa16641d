/// What travels back to WeChat end to end: webhook replies as encrypted passive replies, the
/// full-network release check, refused forgeries, unknown accounts, key rotation and the URL check,
/// and a tenant's own webhook.
module WeChatFs.Tests.MessageRepliesTests

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
open WeChatFs.Tests.MessageApiTests

let tests =
    // One sequence with the other message modules: each starts its own gateway and simulator.
    testSequencedGroup "MessageApi"
    <| testList
        "MessageReplies"
        [
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

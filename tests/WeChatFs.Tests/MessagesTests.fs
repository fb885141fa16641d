/// Typing pushes, keys for retries, webhook bodies and signatures, replies and the release responder.
module WeChatFs.Tests.MessagesTests

open System
open System.Text
open System.Text.Json
open Expecto
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Messages
open WeChatFs.Replies
open WeChatFs.ReleaseCheck
open WeChatFs.Tests.Helpers

let private xml (msgType: string) (fields: string) =
    $"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUSER]]></FromUserName><CreateTime>1700000300</CreateTime><MsgType><![CDATA[{msgType}]]></MsgType>{fields}</xml>"

let private parsed s =
    match parse s with
    | Ok m -> m
    | Error e -> failwith $"{e}"


/// The webhook body of `m` for delivery "d1" of account "wxa", as it is sent, read as text.
let private sentText kind tenant at (m: Message) (raw: string) =
    use body =
        webhookBodyOf "d1" kind (WeChatFs.Domain.AuthorizerAppId "wxa") tenant at m raw

    Encoding.UTF8.GetString body.Memory.Span

let tests =
    testList
        "Messages"
        [
            testCase "messages and events are typed as the facts describe them"
            <| fun () ->
                Expect.equal
                    ((parsed (xml "text" "<Content><![CDATA[hello]]></Content><MsgId>1</MsgId>")).Body)
                    (Text "hello")
                    "(parsed (xml 'text' '<Content><![CDATA[hello]]></Content><MsgId>1</..."

                Expect.equal
                    ((parsed (
                        xml
                            "event"
                            "<Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>"
                    ))
                        .Body)
                    (LocationReport(23.137466, 113.352425, 119.38504))
                    "(parsed ( xml 'event' '<Event><![CDATA[LOCATION]]></Event><Latitude..."

                Expect.equal
                    ((parsed (xml "event" "<Event>subscribe</Event><EventKey>qrscene_42</EventKey><Ticket>tk</Ticket>"))
                        .Body)
                    (Subscribe(Some "qrscene_42", Some "42", Some "tk"))
                    "(parsed (xml 'event' '<Event>subscribe</Event><EventKey>qrscene_42<..."

                Expect.equal
                    ((parsed (
                        xml "event" "<Event>TEMPLATESENDJOBFINISH</Event><MsgID>200</MsgID><Status>success</Status>"
                    ))
                        .Body)
                    (TemplateSendJobFinish("200", "success"))
                    "(parsed (xml 'event' '<Event>TEMPLATESENDJOBFINISH</Event><MsgID>20..."

                Expect.equal
                    ((parsed (
                        xml
                            "location"
                            "<Location_X>23.1</Location_X><Location_Y>113.3</Location_Y><Scale>20</Scale><Label>Here</Label><MsgId>2</MsgId>"
                    ))
                        .Body)
                    (Location(23.1, 113.3, 20, "Here"))
                    "(parsed ( xml 'location' '<Location_X>23.1</Location_X><Location_Y>..."

            testCase "anything unknown or untypable is kept, never refused"
            <| fun () ->
                let m = parsed (xml "miniprogrampage" "<Title>x</Title>")
                Expect.equal m.Body (Unknown("miniprogrampage", None)) "m.Body"
                Expect.equal (kind m) "unknown.miniprogrampage" "kind m"
                let e = parsed (xml "event" "<Event>LOCATION</Event><Latitude>north</Latitude>")
                Expect.equal e.Body (Unknown("event", Some "LOCATION")) "e.Body"
                Expect.equal (kind e) "event.LOCATION" "kind e"
                let json = sentText (kind e) None DateTimeOffset.UnixEpoch e ""
                Expect.stringContains json "north" "json"

            testProp
                "a message typed in place is the message the XML reader's way types"
                (Prop.forAll
                    (Arb.fromGen (
                        Gen.zip3
                            (Gen.elements
                                [
                                    "text"
                                    "image"
                                    "voice"
                                    "video"
                                    "location"
                                    "link"
                                    "event"
                                    "event"
                                    "other"
                                ])
                            (Gen.elements
                                [
                                    "subscribe"
                                    "SCAN"
                                    "LOCATION"
                                    "CLICK"
                                    "VIEW"
                                    "TEMPLATESENDJOBFINISH"
                                    "weapp_audit_success"
                                    "weapp_audit_fail"
                                    "weapp_audit_delay"
                                    "new_event"
                                ])
                            (Gen.listOf (
                                Gen.zip
                                    (Gen.elements
                                        [
                                            "Content"
                                            "MsgId"
                                            "CreateTime"
                                            "FromUserName"
                                            "Event"
                                            "EventKey"
                                            "Ticket"
                                            "Latitude"
                                            "Longitude"
                                            "Precision"
                                            "Location_X"
                                            "Location_Y"
                                            "Scale"
                                            "Label"
                                            "MediaId"
                                            "Format"
                                            "Recognition"
                                            "PicUrl"
                                            "Title"
                                            "Url"
                                            "MenuId"
                                            "MsgID"
                                            "Status"
                                            "SuccTime"
                                            "FailTime"
                                            "Reason"
                                            "DelayTime"
                                        ])
                                    (Gen.oneof
                                        [
                                            Gen.elements
                                                [ "23.1"; "-113.5"; " 7 "; "1700000000"; "qrscene_42"; ""; "  " ]
                                            xmlSafeString |> Gen.map (fun s -> s.Replace("]]>", ""))
                                        ])
                            ))
                    ))
                    (fun (msgType: string, event: string, fields: (string * string) list) ->
                        let children =
                            fields
                            |> List.map (fun (name, value) -> $"<{name}><![CDATA[{value}]]></{name}>")
                            |> String.concat ""

                        let doc = xml msgType ($"<Event>{event}</Event>" + children)
                        // A comment is read by the XML reader alone: the same message, the other way.
                        let other = doc.Replace("<xml>", "<xml><!-- the reader's way -->")

                        match parse doc, parse other with
                        | Ok a, Ok b -> a.Header = b.Header && a.Body = b.Body
                        | _ -> false))

            testCase "retries share a key; messages by MsgId, events by sender and time"
            <| fun () ->
                let a = parsed (xml "text" "<Content>a</Content><MsgId>7</MsgId>")
                let b = parsed (xml "text" "<Content>b</Content><MsgId>8</MsgId>")

                Expect.equal
                    (dedupeKey (parsed (xml "text" "<Content>a</Content><MsgId>7</MsgId>")))
                    (dedupeKey a)
                    "dedupeKey (parsed (xml 'text' '<Content>a</Content><MsgId>7</MsgId>'))"

                Expect.notEqual (dedupeKey b) (dedupeKey a) "dedupeKey b"
                let e1 = parsed (xml "event" "<Event>CLICK</Event><EventKey>k</EventKey>")

                Expect.equal
                    (dedupeKey (parsed (xml "event" "<Event>CLICK</Event><EventKey>k</EventKey>")))
                    (dedupeKey e1)
                    "dedupeKey (parsed (xml 'event' '<Event>CLICK</Event><EventKey>k</Ev..."

                Expect.notEqual
                    (dedupeKey (parsed ((xml "event" "<Event>CLICK</Event>").Replace("1700000300", "1700000301"))))
                    (dedupeKey e1)
                    "dedupeKey (parsed ((xml 'event' '<Event>CLICK</Event>').Replace('17..."

            testCase "the webhook body has the documented fields"
            <| fun () ->
                let m = parsed (xml "text" "<Content>hi</Content><MsgId>9</MsgId>")
                let at = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

                let body = sentText (kind m) (Some(WeChatFs.Domain.TenantId "shop")) at m "<xml/>"

                let root = JsonDocument.Parse(body).RootElement
                Expect.equal (root.GetProperty("id").GetString()) "d1" "root.GetProperty('id').GetString()"
                Expect.equal (root.GetProperty("kind").GetString()) "text" "root.GetProperty('kind').GetString()"

                Expect.equal
                    (root.GetProperty("authorizer_appid").GetString())
                    "wxa"
                    "root.GetProperty('authorizer_appid').GetString()"

                Expect.equal (root.GetProperty("tenant").GetString()) "shop" "root.GetProperty('tenant').GetString()"

                Expect.equal
                    (root.GetProperty("received_at").GetDateTimeOffset())
                    at
                    "root.GetProperty('received_at').GetDateTimeOffset()"

                Expect.equal
                    (root.GetProperty("message").GetProperty("content").GetString())
                    "hi"
                    "root.GetProperty('message').GetProperty('content').GetString()"

                Expect.equal
                    (root.GetProperty("message").GetProperty("from_user_name").GetString())
                    "oUSER"
                    "root.GetProperty('message').GetProperty('from_user_name').GetString()"

                Expect.equal
                    (root.GetProperty("raw_xml").GetString())
                    "<xml/>"
                    "root.GetProperty('raw_xml').GetString()"

            testCase "the webhook body keeps Chinese text and markup readable, not escaped"
            <| fun () ->
                let raw = "<xml><Content><![CDATA[你好 <b> & 'x']]></Content></xml>"

                let m =
                    parsed (xml "text" "<Content><![CDATA[你好 <b> & 'x']]></Content><MsgId>9</MsgId>")

                let body = sentText (kind m) None DateTimeOffset.UnixEpoch m raw

                Expect.stringContains body "你好 <b> & 'x'" "body"
                let root = JsonDocument.Parse(body).RootElement
                Expect.equal (root.GetProperty("raw_xml").GetString()) raw "root.GetProperty('raw_xml').GetString()"

                Expect.equal
                    (root.GetProperty("message").GetProperty("content").GetString())
                    "你好 <b> & 'x'"
                    "root.GetProperty('message').GetProperty('content').GetString()"

                Expect.equal
                    (root.GetProperty("tenant").ValueKind)
                    JsonValueKind.Null
                    "root.GetProperty('tenant').ValueKind"

            testProp
                "the body as sent is the stored body's text, whatever the message's length and characters"
                (Prop.forAll (Arb.fromGen (Gen.zip xmlSafeString (Gen.choose (1, 60)))) (fun (text, times) ->
                    // Long text beside a short raw XML makes the pooled body grow past its first array,
                    // and an emoji, which the writer escapes (two \u escapes, twelve bytes).
                    let content = String.replicate times (text + "😀")

                    let m =
                        { parsed (xml "text" "<MsgId>9</MsgId>") with
                            Body = Text content
                        }

                    let at = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)
                    let account = WeChatFs.Domain.AuthorizerAppId "wxa"
                    use sent = webhookBodyOf "d1" (kind m) account None at m "<xml/>"
                    let text = Encoding.UTF8.GetString sent.Memory.Span
                    let root = JsonDocument.Parse(text).RootElement

                    // The same body through the text way, given the message as a node.
                    let node = Nodes.JsonNode.Parse(root.GetProperty("message").GetRawText())

                    text = webhookPayload "d1" (kind m) account None at node "<xml/>"
                    && root.GetProperty("message").GetProperty("content").GetString() = content
                    && root.GetProperty("raw_xml").GetString() = "<xml/>"))

            testCase "the signature is HMAC-SHA256 of the exact body"
            <| fun () ->
                use signer = new BodySigner(Encoding.UTF8.GetBytes "secret")
                let signed = signer.Sign(ReadOnlySpan(Encoding.UTF8.GetBytes "{\"a\":1}"))
                Expect.equal signed (signBody "secret" "{\"a\":1}") "the HMAC-SHA256 of the body, hex"

            testProp
                "two bodies have the same signature only when they are the same"
                (Prop.forAll (Arb.fromGen (Gen.zip xmlSafeString xmlSafeString)) (fun (a, b) ->
                    use signer = new BodySigner(Encoding.UTF8.GetBytes "k")

                    let sign (body: string) =
                        signer.Sign(ReadOnlySpan(Encoding.UTF8.GetBytes body))

                    (a = b) = (sign a = sign b)))

            testProp
                "one signer signs every body as a fresh HMAC would, from many threads at once"
                (Prop.forAll
                    (Arb.fromGen (Gen.zip (Gen.nonEmptyListOf xmlSafeString) xmlSafeString))
                    (fun (bodies, secret) ->
                        // The signer keeps a keyed hash per thread: a body must never carry what the
                        // thread's hash took in before, nor another thread's.
                        use signer = new BodySigner(Encoding.UTF8.GetBytes secret)

                        let signs =
                            [
                                for body in bodies @ bodies @ bodies ->
                                    Threading.Tasks.Task.Run(fun () ->
                                        body, signer.Sign(ReadOnlySpan(Encoding.UTF8.GetBytes body)))
                            ]
                            |> Threading.Tasks.Task.WhenAll

                        signs.Result
                        |> Array.forall (fun (body, signed) -> signed = signBody secret body)))

            testProp
                "any text survives a text reply, ]]> included, with sender and account swapped"
                (Prop.forAll (Arb.fromGen xmlSafeString) (fun content ->
                    let fields =
                        Wire.parseXml (replyXml "oUSER" "gh_1" 1L (TextReply(content + "]]>")))
                        |> Result.defaultValue Map.empty

                    Map.tryFind "Content" fields = Some(content + "]]>")
                    && Map.tryFind "ToUserName" fields = Some "oUSER"
                    && Map.tryFind "FromUserName" fields = Some "gh_1"))

            testCase "webhook answers become replies, or clear errors"
            <| fun () ->
                Expect.equal (parseReply "") (Ok None) "parseReply ''"
                Expect.equal (parseReply "{}") (Ok None) "parseReply '{}'"

                Expect.equal
                    (parseReply """{"reply":{"msg_type":"image","media_id":"m"}}""")
                    (Ok(Some(ImageReply "m")))
                    "parseReply '''{'reply':{'msg_type':'image','media_id':'m'}}'''"

                Expect.equal
                    (parseReply """{"reply":{"msg_type":"video","media_id":"m","title":"t"}}""")
                    (Ok(Some(VideoReply("m", "t", ""))))
                    "parseReply '''{'reply':{'msg_type':'video','media_id':'m','title':'..."

                Expect.equal
                    (parseReply """{"reply":{"msg_type":"text"}}""")
                    (Error(MissingReplyField "content"))
                    "parseReply '''{'reply':{'msg_type':'text'}}'''"

                Expect.equal
                    (parseReply """{"reply":{"msg_type":"card"}}""")
                    (Error(UnknownMsgType "card"))
                    "parseReply '''{'reply':{'msg_type':'card'}}'''"

                Expect.equal (parseReply "success") (Error NotJson) "parseReply 'success'"

                match
                    parseReply
                        """{"reply":{"msg_type":"music","title":"T","music_url":"u","hq_music_url":"h","thumb_media_id":"th"}}"""
                with
                | Ok(Some r) ->
                    let x = replyXml "o" "g" 1L r
                    Expect.stringContains x "<MsgType><![CDATA[music]]></MsgType>" "x"
                    Expect.stringContains x "<HQMusicUrl><![CDATA[h]]></HQMusicUrl>" "x"
                | other -> failwith $"{other}"

            testCase "the release responder answers only WeChat's test accounts"
            <| fun () ->
                for appid in releaseTestAppIds do
                    Expect.equal
                        (decideRelease
                            appid
                            (parsed (xml "text" "<Content>TESTCOMPONENT_MSG_TYPE_TEXT</Content><MsgId>1</MsgId>")))
                        (PassiveText "TESTCOMPONENT_MSG_TYPE_TEXT_callback")
                        "decideRelease appid (parsed (xml 'text' '<Content>TESTCOMPONENT_MSG..."

                    Expect.equal
                        (decideRelease
                            appid
                            (parsed (xml "text" "<Content>QUERY_AUTH_CODE:queryauthcode@@@x</Content><MsgId>2</MsgId>")))
                        (QueryAuthThenSend "queryauthcode@@@x")
                        "decideRelease appid (parsed (xml 'text' '<Content>QUERY_AUTH_CODE:q..."

                    Expect.equal
                        (decideRelease appid (parsed (xml "event" "<Event>LOCATION</Event>")))
                        (PassiveText "LOCATIONfrom_callback")
                        "decideRelease appid (parsed (xml 'event' '<Event>LOCATION</Event>'))"

                    Expect.equal
                        (decideRelease appid (parsed (xml "text" "<Content>hello</Content><MsgId>3</MsgId>")))
                        NotARelease
                        "decideRelease appid (parsed (xml 'text' '<Content>hello</Content><M..."

                Expect.equal releaseTestAppIds.Count 10 "releaseTestAppIds.Count"

                Expect.equal
                    (decideRelease
                        "wxsimoa00000000001"
                        (parsed (xml "text" "<Content>TESTCOMPONENT_MSG_TYPE_TEXT</Content>")))
                    NotARelease
                    "decideRelease 'wxsimoa00000000001' (parsed (xml 'text' '<Content>TE..."

                Expect.equal (releaseCustomText "c") "c_from_api" "releaseCustomText 'c'"

        ]

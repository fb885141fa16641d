/// Typing pushes, keys for retries, webhook bodies and signatures, replies and the release responder.
module WeChatFs.Tests.MessagesTests

open System
open System.Security.Cryptography
open System.Text
open System.Text.Json
open Xunit
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Messages
open WeChatFs.Tests.Helpers

let private xml (msgType: string) (fields: string) =
    $"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUSER]]></FromUserName><CreateTime>1700000300</CreateTime><MsgType><![CDATA[{msgType}]]></MsgType>{fields}</xml>"

let private parsed s =
    match parse s with
    | Ok m -> m
    | Error e -> failwith $"{e}"

[<Fact>]
let ``messages and events are typed as the facts describe them`` () =
    Assert.Equal(Text "hello", (parsed (xml "text" "<Content><![CDATA[hello]]></Content><MsgId>1</MsgId>")).Body)

    Assert.Equal(
        LocationReport(23.137466, 113.352425, 119.38504),
        (parsed (
            xml
                "event"
                "<Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>"
        ))
            .Body
    )

    Assert.Equal(
        Subscribe(Some "qrscene_42", Some "42", Some "tk"),
        (parsed (xml "event" "<Event>subscribe</Event><EventKey>qrscene_42</EventKey><Ticket>tk</Ticket>")).Body
    )

    Assert.Equal(
        TemplateSendJobFinish("200", "success"),
        (parsed (xml "event" "<Event>TEMPLATESENDJOBFINISH</Event><MsgID>200</MsgID><Status>success</Status>")).Body
    )

    Assert.Equal(
        Location(23.1, 113.3, 20, "Here"),
        (parsed (
            xml
                "location"
                "<Location_X>23.1</Location_X><Location_Y>113.3</Location_Y><Scale>20</Scale><Label>Here</Label><MsgId>2</MsgId>"
        ))
            .Body
    )

[<Fact>]
let ``anything unknown or untypable is kept, never refused`` () =
    let m = parsed (xml "miniprogrampage" "<Title>x</Title>")
    Assert.Equal(Unknown("miniprogrampage", None), m.Body)
    Assert.Equal("unknown.miniprogrampage", kind m)
    let e = parsed (xml "event" "<Event>LOCATION</Event><Latitude>north</Latitude>")
    Assert.Equal(Unknown("event", Some "LOCATION"), e.Body)
    Assert.Equal("event.LOCATION", kind e)
    let json = (messageJson e).ToJsonString()
    Assert.Contains("north", json)

[<Fact>]
let ``retries share a key; messages by MsgId, events by sender and time`` () =
    let a = parsed (xml "text" "<Content>a</Content><MsgId>7</MsgId>")
    let b = parsed (xml "text" "<Content>b</Content><MsgId>8</MsgId>")
    Assert.Equal(dedupeKey a, dedupeKey (parsed (xml "text" "<Content>a</Content><MsgId>7</MsgId>")))
    Assert.NotEqual<string>(dedupeKey a, dedupeKey b)
    let e1 = parsed (xml "event" "<Event>CLICK</Event><EventKey>k</EventKey>")
    Assert.Equal(dedupeKey e1, dedupeKey (parsed (xml "event" "<Event>CLICK</Event><EventKey>k</EventKey>")))

    Assert.NotEqual<string>(
        dedupeKey e1,
        dedupeKey (parsed ((xml "event" "<Event>CLICK</Event>").Replace("1700000300", "1700000301")))
    )

[<Fact>]
let ``the webhook body has the documented fields`` () =
    let m = parsed (xml "text" "<Content>hi</Content><MsgId>9</MsgId>")
    let at = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

    let body =
        webhookPayload "d1" (kind m) "wxa" (Some "shop") at (messageJson m) "<xml/>"

    let root = JsonDocument.Parse(body).RootElement
    Assert.Equal("d1", root.GetProperty("id").GetString())
    Assert.Equal("text", root.GetProperty("kind").GetString())
    Assert.Equal("wxa", root.GetProperty("authorizer_appid").GetString())
    Assert.Equal("shop", root.GetProperty("tenant").GetString())
    Assert.Equal(at, root.GetProperty("received_at").GetDateTimeOffset())
    Assert.Equal("hi", root.GetProperty("message").GetProperty("content").GetString())
    Assert.Equal("oUSER", root.GetProperty("message").GetProperty("from_user_name").GetString())
    Assert.Equal("<xml/>", root.GetProperty("raw_xml").GetString())

[<Fact>]
let ``the webhook body keeps Chinese text and markup readable, not escaped`` () =
    let raw = "<xml><Content><![CDATA[你好 <b> & 'x']]></Content></xml>"

    let m =
        parsed (xml "text" "<Content><![CDATA[你好 <b> & 'x']]></Content><MsgId>9</MsgId>")

    let body =
        webhookPayload "d1" (kind m) "wxa" None DateTimeOffset.UnixEpoch (messageJson m) raw

    Assert.Contains("你好 <b> & 'x'", body)
    let root = JsonDocument.Parse(body).RootElement
    Assert.Equal(raw, root.GetProperty("raw_xml").GetString())
    Assert.Equal("你好 <b> & 'x'", root.GetProperty("message").GetProperty("content").GetString())
    Assert.Equal(JsonValueKind.Null, root.GetProperty("tenant").ValueKind)

[<Fact>]
let ``the signature is HMAC-SHA256 of the exact body, and any change to the body changes it`` () =
    let expected =
        "sha256="
        + Convert.ToHexStringLower(
            HMACSHA256.HashData(Encoding.UTF8.GetBytes "secret", Encoding.UTF8.GetBytes "{\"a\":1}")
        )

    Assert.Equal(expected, signBody "secret" "{\"a\":1}")

    Prop.forAll (Arb.fromGen (Gen.zip xmlSafeString xmlSafeString)) (fun (a, b) ->
        (a = b) = (signBody "k" a = signBody "k" b))
    |> Check.QuickThrowOnFailure

[<Fact>]
let ``any text survives a text reply, ]]> included, with sender and account swapped`` () =
    Prop.forAll (Arb.fromGen xmlSafeString) (fun content ->
        let fields =
            Wire.parseXml (replyXml "oUSER" "gh_1" 1L (TextReply(content + "]]>")))
            |> Result.defaultValue Map.empty

        Map.tryFind "Content" fields = Some(content + "]]>")
        && Map.tryFind "ToUserName" fields = Some "oUSER"
        && Map.tryFind "FromUserName" fields = Some "gh_1")
    |> Check.QuickThrowOnFailure

[<Fact>]
let ``webhook answers become replies, or clear errors`` () =
    Assert.Equal(Ok None, parseReply "")
    Assert.Equal(Ok None, parseReply "{}")
    Assert.Equal(Ok(Some(ImageReply "m")), parseReply """{"reply":{"msg_type":"image","media_id":"m"}}""")

    Assert.Equal(
        Ok(Some(VideoReply("m", "t", ""))),
        parseReply """{"reply":{"msg_type":"video","media_id":"m","title":"t"}}"""
    )

    Assert.Equal(Error(MissingReplyField "content"), parseReply """{"reply":{"msg_type":"text"}}""")
    Assert.Equal(Error(UnknownMsgType "card"), parseReply """{"reply":{"msg_type":"card"}}""")
    Assert.Equal(Error NotJson, parseReply "success")

    match
        parseReply
            """{"reply":{"msg_type":"music","title":"T","music_url":"u","hq_music_url":"h","thumb_media_id":"th"}}"""
    with
    | Ok(Some r) ->
        let x = replyXml "o" "g" 1L r
        Assert.Contains("<MsgType><![CDATA[music]]></MsgType>", x)
        Assert.Contains("<HQMusicUrl><![CDATA[h]]></HQMusicUrl>", x)
    | other -> failwith $"{other}"

[<Fact>]
let ``the release responder answers only WeChat's test accounts`` () =
    for appid in releaseTestAppIds do
        Assert.Equal(
            PassiveText "TESTCOMPONENT_MSG_TYPE_TEXT_callback",
            decideRelease appid (parsed (xml "text" "<Content>TESTCOMPONENT_MSG_TYPE_TEXT</Content><MsgId>1</MsgId>"))
        )

        Assert.Equal(
            QueryAuthThenSend "queryauthcode@@@x",
            decideRelease
                appid
                (parsed (xml "text" "<Content>QUERY_AUTH_CODE:queryauthcode@@@x</Content><MsgId>2</MsgId>"))
        )

        Assert.Equal(
            PassiveText "LOCATIONfrom_callback",
            decideRelease appid (parsed (xml "event" "<Event>LOCATION</Event>"))
        )

        Assert.Equal(NotARelease, decideRelease appid (parsed (xml "text" "<Content>hello</Content><MsgId>3</MsgId>")))

    Assert.Equal(10, releaseTestAppIds.Count)

    Assert.Equal(
        NotARelease,
        decideRelease "wxsimoa00000000001" (parsed (xml "text" "<Content>TESTCOMPONENT_MSG_TYPE_TEXT</Content>"))
    )

    Assert.Equal("c_from_api", releaseCustomText "c")

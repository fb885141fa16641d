/// Reading pushes: XML with DTDs refused, component pushes typed by InfoType, JSON answers.
module WeChatFs.Tests.WireTests

open System.Text.Json
open Xunit
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Domain
open WeChatFs.Wire
open WeChatFs.Tests.Helpers

[<Fact>]
let ``a ticket push is read with its ticket`` () =
    let xml =
        "<xml><AppId><![CDATA[wx1]]></AppId><CreateTime>1700000000</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@x]]></ComponentVerifyTicket></xml>"

    Assert.Equal(Ok(TicketPushed(VerifyTicket "ticket@@@x", 1700000000L)), parseComponentPush xml)

[<Fact>]
let ``authorization pushes are read as the facts show them`` () =
    let xml =
        "<xml><AppId>wx1</AppId><CreateTime>1700000100</CreateTime><InfoType>authorized</InfoType><AuthorizerAppid>wxa</AuthorizerAppid><AuthorizationCode>queryauthcode@@@c</AuthorizationCode><AuthorizationCodeExpiredTime>1700003700</AuthorizationCodeExpiredTime><PreAuthCode>preauthcode@@@p</PreAuthCode></xml>"

    match parseComponentPush xml with
    | Ok(AuthorizedPushed p) ->
        Assert.Equal(AuthorizerAppId "wxa", p.AuthorizerAppId)
        Assert.Equal(AuthorizationCode "queryauthcode@@@c", p.Code)
        Assert.Equal(Some 1700003700L, p.CodeExpiredTime)
    | other -> failwith $"{other}"

    let un =
        "<xml><AppId>wx1</AppId><CreateTime>5</CreateTime><InfoType>unauthorized</InfoType><AuthorizerAppid>wxa</AuthorizerAppid></xml>"

    Assert.Equal(Ok(UnauthorizedPushed(AuthorizerAppId "wxa", 5L)), parseComponentPush un)

[<Fact>]
let ``the fast registration result uses lower-case fields`` () =
    let xml =
        "<xml><AppId>wx1</AppId><CreateTime>1</CreateTime><InfoType>notify_third_fasteregister</InfoType><appid>wxnew</appid><status>0</status><auth_code>queryauthcode@@@f</auth_code><msg>OK</msg><info><name>Co</name></info></xml>"

    match parseComponentPush xml with
    | Ok(FastRegisterPushed f) ->
        Assert.Equal(0, f.Status)
        Assert.Equal(Some "wxnew", f.AppId)
        Assert.Equal(Some(AuthorizationCode "queryauthcode@@@f"), f.AuthCode)
    | other -> failwith $"{other}"

[<Fact>]
let ``an unknown InfoType is a value, not an error`` () =
    Assert.Equal(Ok(UnknownInfoType "new_thing"), parseComponentPush "<xml><InfoType>new_thing</InfoType></xml>")

[<Fact>]
let ``documents with a DTD are refused`` () =
    let xml =
        """<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "y">]><xml><Encrypt>&x;</Encrypt></xml>"""

    match parseXml xml with
    | Error(MalformedXml _) -> ()
    | other -> failwith $"{other}"

[<Fact>]
let ``no string makes the XML reader throw`` () =
    Prop.forAll (ArbMap.defaults |> ArbMap.arbitrary<string>) (fun s ->
        let _ = parseXml s
        let _ = parseComponentPush s
        true)
    |> Check.QuickThrowOnFailure

[<Fact>]
let ``any text survives CDATA and plain element content`` () =
    Prop.forAll (Arb.fromGen xmlSafeString) (fun s ->
        let read (doc: string) =
            parseXml doc |> Result.map (Map.tryFind "A")

        let escaped = System.Security.SecurityElement.Escape s
        // The reader drops whitespace-only text, but never inside CDATA.
        read $"<xml><A>{escaped}</A></xml>" = Ok(Some(if s.Trim() = "" then "" else s))
        && (s.Contains "]]>" || read $"<xml><A><![CDATA[{s}]]></A></xml>" = Ok(Some s)))
    |> Check.QuickThrowOnFailure

[<Fact>]
let ``errcode absent or zero is success`` () =
    let root (s: string) = JsonDocument.Parse(s).RootElement
    Assert.Equal(None, errcodeOf (root """{"component_access_token":"x"}"""))
    Assert.Equal(None, errcodeOf (root """{"errcode":0,"errmsg":"ok"}"""))
    Assert.Equal(Some(61005, "expired"), errcodeOf (root """{"errcode":61005,"errmsg":"expired"}"""))

[<Fact>]
let ``func_info becomes permission set ids`` () =
    let info =
        JsonDocument
            .Parse(
                """{"func_info":[{"funcscope_category":{"id":1}},{"funcscope_category":{"id":15},"confirm_info":{}}]}"""
            )
            .RootElement

    Assert.Equal<int list>([ 1; 15 ], funcIds info)

/// Documents near WeChat's shape, and near misses: what the fast path answers, the reader must agree with.
let private nearWeChatXml =
    let name = Gen.elements [ "A"; "B"; "ToUserName"; "a1"; "_x"; "A-B"; "a:b"; "xml" ]

    let anyText =
        ArbMap.defaults
        |> ArbMap.generate<string>
        |> Gen.map (fun s -> if isNull s then "" else s)

    let content =
        Gen.oneof
            [
                Gen.map (fun s -> $"<![CDATA[{s}]]>") anyText
                Gen.map (fun s -> $"<![CDATA[{s}]]>") xmlSafeString
                Gen.map System.Security.SecurityElement.Escape xmlSafeString
                anyText
                Gen.constant ""
                Gen.constant "  \n "
                Gen.constant "<B>nested</B>"
                Gen.constant "<!-- note -->x"
                Gen.constant "<![CDATA[a]]> "
            ]

    let child =
        Gen.map3
            (fun (n: string) (c: string) (shape: int) ->
                match shape with
                | 0 -> $"<{n}/>"
                | 1 -> $"<{n} />"
                | 2 -> $"<{n}>{c}</{n}x>"
                | 3 -> $" <{n}>{c}</{n}>\n"
                | _ -> $"<{n}>{c}</{n}>")
            name
            content
            (Gen.frequency
                [
                    1, Gen.constant 0
                    1, Gen.constant 1
                    1, Gen.constant 2
                    2, Gen.constant 3
                    8, Gen.constant 4
                ])

    Gen.map4
        (fun (prefix: string) (children: string list) (close: string) (suffix: string) ->
            prefix + "<xml>" + String.concat "" children + close + suffix)
        (Gen.elements [ ""; ""; " \n"; "<?xml version=\"1.0\"?>"; "\uFEFF"; "\r\n" ])
        (Gen.listOf child)
        (Gen.elements [ "</xml>"; "</xml>"; "</xml>"; "</xm>"; "" ])
        (Gen.elements [ ""; ""; "\n"; "x"; "<!-- after -->" ])

[<Fact>]
let ``wherever the fast path answers, the XML reader gives the same fields`` () =
    Prop.forAll (Arb.fromGen nearWeChatXml) (fun doc ->
        match scanFlat doc with
        | Some fields -> readXml doc = Ok fields
        | None -> true)
    |> Check.QuickThrowOnFailure

[<Fact>]
let ``pushes shaped as WeChat sends them take the fast path`` () =
    Prop.forAll (Arb.fromGen (Gen.zip xmlSafeString xmlSafeString)) (fun (content: string, sender: string) ->
        let doc =
            $"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId></xml>"

        match scanFlat doc with
        | Some fields -> Ok fields = readXml doc && fields["Content"] = content
        | None -> false)
    |> Check.QuickThrowOnFailure

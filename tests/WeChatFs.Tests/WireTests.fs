/// Reading pushes: XML with DTDs refused, component pushes typed by InfoType, JSON answers.
module WeChatFs.Tests.WireTests

open System.Text.Json
open Expecto
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Domain
open WeChatFs.Wire
open WeChatFs.Tests.Helpers

/// Documents near WeChat's shape, and near misses: what the fast path answers, the reader must agree with.
let private nearWeChatXml =
    let name =
        Gen.elements [ "A"; "B"; "ToUserName"; "Encrypt"; "a1"; "_x"; "A-B"; "a:b"; "xml" ]

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


let tests =
    testList
        "Wire"
        [
            testCase "a ticket push is read with its ticket"
            <| fun () ->
                let xml =
                    "<xml><AppId><![CDATA[wx1]]></AppId><CreateTime>1700000000</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@x]]></ComponentVerifyTicket></xml>"

                Expect.equal
                    (parseComponentPush xml)
                    (Ok(TicketPushed(VerifyTicket "ticket@@@x", 1700000000L)))
                    "parseComponentPush xml"

            testCase "authorization pushes are read as the facts show them"
            <| fun () ->
                let xml =
                    "<xml><AppId>wx1</AppId><CreateTime>1700000100</CreateTime><InfoType>authorized</InfoType><AuthorizerAppid>wxa</AuthorizerAppid><AuthorizationCode>queryauthcode@@@c</AuthorizationCode><AuthorizationCodeExpiredTime>1700003700</AuthorizationCodeExpiredTime><PreAuthCode>preauthcode@@@p</PreAuthCode></xml>"

                match parseComponentPush xml with
                | Ok(AuthorizedPushed p) ->
                    Expect.equal p.AuthorizerAppId (AuthorizerAppId "wxa") "p.AuthorizerAppId"
                    Expect.equal p.Code (AuthorizationCode "queryauthcode@@@c") "p.Code"
                    Expect.equal p.CodeExpiredTime (Some 1700003700L) "p.CodeExpiredTime"
                | other -> failwith $"{other}"

                let un =
                    "<xml><AppId>wx1</AppId><CreateTime>5</CreateTime><InfoType>unauthorized</InfoType><AuthorizerAppid>wxa</AuthorizerAppid></xml>"

                Expect.equal
                    (parseComponentPush un)
                    (Ok(UnauthorizedPushed(AuthorizerAppId "wxa", 5L)))
                    "parseComponentPush un"

            testCase "the fast registration result uses lower-case fields"
            <| fun () ->
                let xml =
                    "<xml><AppId>wx1</AppId><CreateTime>1</CreateTime><InfoType>notify_third_fasteregister</InfoType><appid>wxnew</appid><status>0</status><auth_code>queryauthcode@@@f</auth_code><msg>OK</msg><info><name>Co</name></info></xml>"

                match parseComponentPush xml with
                | Ok(FastRegisterPushed f) ->
                    Expect.equal f.Status 0 "f.Status"
                    Expect.equal f.AppId (Some "wxnew") "f.AppId"
                    Expect.equal f.AuthCode (Some(AuthorizationCode "queryauthcode@@@f")) "f.AuthCode"
                | other -> failwith $"{other}"

            testCase "an unknown InfoType is a value, not an error"
            <| fun () ->
                Expect.equal
                    (parseComponentPush "<xml><InfoType>new_thing</InfoType></xml>")
                    (Ok(UnknownInfoType "new_thing"))
                    "parseComponentPush '<xml><InfoType>new_thing</InfoType></xml>'"

            testCase "documents with a DTD are refused"
            <| fun () ->
                let xml =
                    """<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "y">]><xml><Encrypt>&x;</Encrypt></xml>"""

                match parseXml xml with
                | Error(MalformedXml _) -> ()
                | other -> failwith $"{other}"

            testProp
                "any string that is not an XML document is refused as an error, never an exception"
                (Prop.forAll (ArbMap.defaults |> ArbMap.arbitrary<string>) (fun s ->
                    let document = not (isNull s) && s.Contains "<xml"

                    document
                    || (Result.isError (parseXml s) && Result.isError (parseComponentPush s))))

            testProp
                "any text survives CDATA and plain element content"
                (Prop.forAll (Arb.fromGen xmlSafeString) (fun s ->
                    let read (doc: string) =
                        parseXml doc |> Result.map (Map.tryFind "A")

                    let escaped = System.Security.SecurityElement.Escape s
                    // The reader drops whitespace-only text, but never inside CDATA.
                    read $"<xml><A>{escaped}</A></xml>" = Ok(Some(if s.Trim() = "" then "" else s))
                    && (s.Contains "]]>" || read $"<xml><A><![CDATA[{s}]]></A></xml>" = Ok(Some s))))

            testCase "errcode absent or zero is success"
            <| fun () ->
                let root (s: string) = JsonDocument.Parse(s).RootElement

                Expect.equal
                    (errcodeOf (root """{"component_access_token":"x"}"""))
                    None
                    "errcodeOf (root '''{'component_access_token':'x'}''')"

                Expect.equal
                    (errcodeOf (root """{"errcode":0,"errmsg":"ok"}"""))
                    None
                    "errcodeOf (root '''{'errcode':0,'errmsg':'ok'}''')"

                Expect.equal
                    (errcodeOf (root """{"errcode":61005,"errmsg":"expired"}"""))
                    (Some(61005, "expired"))
                    "errcodeOf (root '''{'errcode':61005,'errmsg':'expired'}''')"

            testCase "func_info becomes permission set ids"
            <| fun () ->
                let info =
                    JsonDocument
                        .Parse(
                            """{"func_info":[{"funcscope_category":{"id":1}},{"funcscope_category":{"id":15},"confirm_info":{}}]}"""
                        )
                        .RootElement

                Expect.equal (funcIds info) ([ 1; 15 ]) "funcIds info"

            testProp
                "wherever the fast path answers, the XML reader gives the same fields"
                (Prop.forAll (Arb.fromGen nearWeChatXml) (fun doc ->
                    match scanFlat doc with
                    | Some fields -> readXml doc = Ok fields
                    | None -> true))

            testProp
                "wherever the outer body's fast path finds Encrypt, encryptedPart reads the same text"
                (Prop.forAll (Arb.fromGen nearWeChatXml) (fun doc ->
                    match encryptedRange (System.MemoryExtensions.AsSpan doc) with
                    | ValueSome(struct (start, length)) -> encryptedPart doc = Ok(doc.Substring(start, length))
                    // Left to the reader only where the fast path does not read the document.
                    | ValueNone -> Result.isError (encryptedPart doc) || (scanFlat doc).IsNone))

            testProp
                "pushes shaped as WeChat sends them take the fast path"
                (Prop.forAll
                    (Arb.fromGen (Gen.zip xmlSafeString xmlSafeString))
                    (fun (content: string, sender: string) ->
                        let doc =
                            $"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId></xml>"

                        match scanFlat doc with
                        | Some fields -> Ok fields = readXml doc && fields["Content"] = content
                        | None -> false))

            testProp
                "the field reader answers what optionalField answers on parseXml's map, for every name"
                (Prop.forAll (Arb.fromGen nearWeChatXml) (fun doc ->
                    match parseXml doc, FieldReader.Read doc with
                    | Ok map, Ok reader ->
                        use reader = reader

                        [ "A"; "B"; "ToUserName"; "Encrypt"; "a1"; "_x"; "xml"; "Absent" ]
                        |> List.forall (fun name -> reader.Optional name = optionalField name map)
                    | Error _, Error _ -> true
                    | _ -> false))

            testProp
                "the field reader reads numbers as they are read from the map's text"
                (Prop.forAll
                    (Arb.fromGen (
                        Gen.zip
                            (Gen.elements [ "1"; " 12 "; "-3"; "+4"; "1e3"; "1.5"; "0x1"; "9223372036854775808"; "" ])
                            (Gen.elements [ "<![CDATA[{0}]]>"; "{0}"; "<!-- x -->{0}" ])
                    ))
                    (fun (number: string, shape: string) ->
                        let doc = "<xml><N>0</N><N>" + System.String.Format(shape, number) + "</N></xml>"

                        let map = parseXml doc |> Result.defaultValue Map.empty
                        use reader = FieldReader.Read doc |> Result.defaultWith (fun e -> failwith $"{e}")

                        let int64 =
                            optionalField "N" map
                            |> Option.bind (fun v ->
                                match System.Int64.TryParse v with
                                | true, n -> Some n
                                | _ -> None)

                        let float =
                            optionalField "N" map
                            |> Option.bind (fun v ->
                                match
                                    System.Double.TryParse(
                                        v,
                                        System.Globalization.NumberStyles.Float,
                                        System.Globalization.CultureInfo.InvariantCulture
                                    )
                                with
                                | true, n -> Some n
                                | _ -> None)

                        reader.Int64 "N" = int64 && reader.Float "N" = float))

        ]

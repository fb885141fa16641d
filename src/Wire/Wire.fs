/// WeChat's wire formats turned into domain values: the XML of pushes (DTDs refused) and the JSON of
/// API answers. Pure: strings in, Result out.
module WeChatFs.Wire

open System
open System.IO
open System.Text.Json
open System.Xml
open System.Xml.Linq
open WeChatFs.Domain

type WireError =
    /// Not well-formed XML, or XML with a DTD (refused: entity tricks have no place in a push).
    | MalformedXml of reason: string
    | MissingField of name: string
    | InvalidField of name: string * value: string

let describe =
    function
    | MalformedXml reason -> $"body is not acceptable XML: {reason}"
    | MissingField name -> $"field {name} is missing"
    | InvalidField(name, value) -> $"field {name} has an invalid value '{value}'"

/// The children of the root element, by name. A child with element content keeps its inner XML, so
/// nested parts (notify_third_fasteregister's <info>, news articles) can be read again.
type XmlFields = Map<string, string>

let private readerSettings =
    XmlReaderSettings(
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        IgnoreComments = true,
        IgnoreProcessingInstructions = true,
        IgnoreWhitespace = true,
        MaxCharactersInDocument = 1_048_576L
    )

/// One pass over a flat document (the usual push); None when a child has elements of its own.
let private readFlat (xml: string) =
    use reader = XmlReader.Create(new StringReader(xml), readerSettings)
    reader.MoveToContent() |> ignore
    let fields = Collections.Generic.Dictionary<string, string>()
    let text = Text.StringBuilder()
    let mutable current: string = null
    let mutable nested = false

    while not nested && reader.Read() do
        match reader.NodeType with
        | XmlNodeType.Element when reader.Depth = 1 ->
            if reader.IsEmptyElement then
                fields[reader.LocalName] <- ""
            else
                current <- reader.LocalName
                text.Clear() |> ignore
        | XmlNodeType.Element -> nested <- true
        | XmlNodeType.Text
        | XmlNodeType.CDATA
        | XmlNodeType.SignificantWhitespace when not (isNull current) -> text.Append reader.Value |> ignore
        | XmlNodeType.EndElement when reader.Depth = 1 && not (isNull current) ->
            fields[current] <- text.ToString()
            current <- null
        | _ -> ()

    if nested then
        None
    else
        Some(fields |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq)

/// WeChat's deepest push (news articles) nests four levels; a document much deeper is refused before
/// it is built: turning a deep tree back into text costs the square of its depth.
let maxDepth = 16

let private checkDepth (xml: string) =
    use reader = XmlReader.Create(new StringReader(xml), readerSettings)

    while reader.Read() do
        if reader.Depth > maxDepth then
            raise (XmlException $"nested deeper than {maxDepth} levels")

/// Nested documents keep each child's inner XML, so parts like <info> or <Articles> can be read again.
let private readNested (xml: string) =
    checkDepth xml
    use reader = XmlReader.Create(new StringReader(xml), readerSettings)
    let doc = XDocument.Load reader

    doc.Root.Elements()
    |> Seq.map (fun e ->
        let value =
            if e.HasElements then
                e.Nodes() |> Seq.map string |> String.concat ""
            else
                e.Value

        e.Name.LocalName, value)
    |> Map.ofSeq

/// The whole XmlReader path: one flat pass, or the nested reading when a child has elements.
let readXml (xml: string) : Result<XmlFields, WireError> =
    if String.IsNullOrWhiteSpace xml then
        Error(MalformedXml "empty body")
    else
        try
            match readFlat xml with
            | Some fields -> Ok fields
            | None -> Ok(readNested xml)
        with
        | :? XmlException as ex -> Error(MalformedXml ex.Message)
        | :? InvalidOperationException as ex -> Error(MalformedXml ex.Message)

let private isSpace c = c = ' ' || c = '\t' || c = '\n'

let private isNameStart c =
    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c = '_'

let private isNameChar c = isNameStart c || (c >= '0' && c <= '9')

/// Whether s[start..finish) reads back unchanged from XML: no carriage return (the reader normalises
/// line ends), no control character, lone surrogate or U+FFFE/U+FFFF (the reader refuses those).
let private verbatim (s: string) (start: int) (finish: int) =
    let mutable i = start
    let mutable ok = true

    while ok && i < finish do
        let c = s[i]

        if c < ' ' then
            ok <- c = '\t' || c = '\n'
        elif Char.IsHighSurrogate c then
            ok <- i + 1 < finish && Char.IsLowSurrogate s[i + 1]
            i <- i + 1
        elif Char.IsLowSurrogate c || c >= '\uFFFE' then
            ok <- false

        i <- i + 1

    ok

let private at (s: string) (i: int) (literal: string) =
    i >= 0
    && i + literal.Length <= s.Length
    && String.CompareOrdinal(s, i, literal, 0, literal.Length) = 0

/// The fast path for what WeChat actually sends: `<xml>` whose children each hold one CDATA section,
/// plain text without references, or nothing. Anything else (a declaration, comments, attributes,
/// references, carriage returns, nesting, characters XML refuses) gives None and is left to the
/// XmlReader, so wherever this answers, it answers what the reader would. No DTD can get through:
/// the document must begin with `<xml>`.
let scanFlat (xml: string) : XmlFields option =
    let n = if isNull xml then 0 else xml.Length
    let mutable i = 0
    let mutable fields = Map.empty
    let mutable ok = n > 0 && n <= int readerSettings.MaxCharactersInDocument
    let mutable finished = false

    let skipSpaces () =
        while i < n && isSpace xml[i] do
            i <- i + 1

    if ok then
        skipSpaces ()
        ok <- at xml i "<xml>"
        i <- i + 5

    while ok && not finished do
        skipSpaces ()

        if at xml i "</xml>" then
            i <- i + 6
            skipSpaces ()
            ok <- i = n
            finished <- true
        elif i + 1 < n && xml[i] = '<' && isNameStart xml[i + 1] then
            let nameStart = i + 1
            let mutable j = nameStart

            while j < n && isNameChar xml[j] do
                j <- j + 1

            let name = xml.Substring(nameStart, j - nameStart)

            if at xml j "/>" then
                fields <- fields.Add(name, "")
                i <- j + 2
            elif j < n && xml[j] = '>' then
                i <- j + 1
                let mutable value = null

                if at xml i "<![CDATA[" then
                    let start = i + 9
                    let finish = xml.IndexOf("]]>", start, StringComparison.Ordinal)

                    if finish >= 0 && verbatim xml start finish then
                        value <- xml.Substring(start, finish - start)
                        i <- finish + 3
                else
                    let finish = xml.IndexOf('<', i)

                    if
                        finish >= 0
                        && verbatim xml i finish
                        && xml.IndexOf('&', i, finish - i) < 0
                        && xml.IndexOf("]]>", i, finish - i, StringComparison.Ordinal) < 0
                    then
                        let mutable blank = true

                        for k in i .. finish - 1 do
                            if not (isSpace xml[k]) then
                                blank <- false

                        // Whitespace alone is not content to the reader either.
                        value <- if blank then "" else xml.Substring(i, finish - i)
                        i <- finish

                ok <-
                    not (isNull value)
                    && at xml i "</"
                    && at xml (i + 2) name
                    && at xml (i + 2 + name.Length) ">"

                if ok then
                    fields <- fields.Add(name, value)
                    i <- i + name.Length + 3
            else
                ok <- false
        else
            ok <- false

    if ok then Some fields else None

let parseXml (xml: string) : Result<XmlFields, WireError> =
    match scanFlat xml with
    | Some fields -> Ok fields
    | None -> readXml xml

let field name (fields: XmlFields) =
    match fields |> Map.tryFind name with
    | Some v when not (String.IsNullOrWhiteSpace v) -> Ok v
    | _ -> Error(MissingField name)

let optionalField name (fields: XmlFields) =
    fields |> Map.tryFind name |> Option.filter (String.IsNullOrWhiteSpace >> not)

let private int64Field name fields =
    field name fields
    |> Result.bind (fun v ->
        match Int64.TryParse v with
        | true, n -> Ok n
        | _ -> Error(InvalidField(name, v)))

/// The outer body of a push: `<xml><AppId|ToUserName/><Encrypt/></xml>`.
let encryptedPart (body: string) =
    parseXml body |> Result.bind (field "Encrypt")

/// An authorization grant pushed as `authorized` or `updateauthorized` (facts §1.2).
type AuthorizationPush =
    {
        AuthorizerAppId: AuthorizerAppId
        Code: AuthorizationCode
        /// Documented as seconds, behaves like an absolute timestamp; kept for display only.
        CodeExpiredTime: int64 option
        /// The pre_auth_code of the page the merchant confirmed on: it tells which link (and tenant) it was.
        PreAuthCode: PreAuthCode option
        CreateTime: int64
    }

/// notify_third_fasteregister (facts §1.3): lower-case fields; appid and auth_code only on success.
type FastRegisterPush =
    {
        Status: int
        AppId: string option
        AuthCode: AuthorizationCode option
        Message: string
        CreateTime: int64
    }

/// What arrives at the authorization event URL, by InfoType.
type ComponentPush =
    | TicketPushed of VerifyTicket * createTime: int64
    | AuthorizedPushed of AuthorizationPush
    | UpdateAuthorizedPushed of AuthorizationPush
    | UnauthorizedPushed of AuthorizerAppId * createTime: int64
    | FastRegisterPushed of FastRegisterPush
    | UnknownInfoType of infoType: string

let private authorizationPush fields =
    match field "AuthorizerAppid" fields, field "AuthorizationCode" fields, int64Field "CreateTime" fields with
    | Ok appId, Ok code, Ok created ->
        Ok
            {
                AuthorizerAppId = AuthorizerAppId appId
                Code = AuthorizationCode code
                CodeExpiredTime =
                    optionalField "AuthorizationCodeExpiredTime" fields
                    |> Option.bind (fun v ->
                        match Int64.TryParse v with
                        | true, n -> Some n
                        | _ -> None)
                PreAuthCode = optionalField "PreAuthCode" fields |> Option.map PreAuthCode
                CreateTime = created
            }
    | Error e, _, _
    | _, Error e, _
    | _, _, Error e -> Error e

/// Reads a decrypted push. An InfoType we don't know is a value, not an error: WeChat adds new ones.
let parseComponentPush (plainXml: string) : Result<ComponentPush, WireError> =
    parseXml plainXml
    |> Result.bind (fun fields ->
        match field "InfoType" fields with
        | Error e -> Error e
        | Ok "component_verify_ticket" ->
            match field "ComponentVerifyTicket" fields, int64Field "CreateTime" fields with
            | Ok t, Ok created -> Ok(TicketPushed(VerifyTicket t, created))
            | Error e, _
            | _, Error e -> Error e
        | Ok "authorized" -> authorizationPush fields |> Result.map AuthorizedPushed
        | Ok "updateauthorized" -> authorizationPush fields |> Result.map UpdateAuthorizedPushed
        | Ok "unauthorized" ->
            match field "AuthorizerAppid" fields, int64Field "CreateTime" fields with
            | Ok appId, Ok created -> Ok(UnauthorizedPushed(AuthorizerAppId appId, created))
            | Error e, _
            | _, Error e -> Error e
        | Ok "notify_third_fasteregister" ->
            let status =
                match optionalField "status" fields |> Option.map Int32.TryParse with
                | Some(true, n) -> n
                | _ -> -1

            Ok(
                FastRegisterPushed
                    {
                        Status = status
                        AppId = optionalField "appid" fields
                        AuthCode = optionalField "auth_code" fields |> Option.map AuthorizationCode
                        Message = optionalField "msg" fields |> Option.defaultValue ""
                        CreateTime = int64Field "CreateTime" fields |> Result.defaultValue 0L
                    }
            )
        | Ok other -> Ok(UnknownInfoType other))

/// An errcode answer from WeChat: absent or 0 means success (facts §0).
let errcodeOf (root: JsonElement) =
    match root.ValueKind with
    | JsonValueKind.Object ->
        match root.TryGetProperty "errcode" with
        | true, v when v.ValueKind = JsonValueKind.Number ->
            let code = v.GetInt32()

            if code = 0 then
                None
            else
                let msg =
                    match root.TryGetProperty "errmsg" with
                    | true, m when m.ValueKind = JsonValueKind.String -> m.GetString()
                    | _ -> ""

                Some(code, msg)
        | _ -> None
    | _ -> None

let stringProp (name: string) (e: JsonElement) =
    match e.ValueKind with
    | JsonValueKind.Object ->
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.String -> Some(v.GetString())
        | true, v when v.ValueKind = JsonValueKind.Number -> Some(v.GetRawText())
        | _ -> None
    | _ -> None

let intProp (name: string) (e: JsonElement) =
    match e.ValueKind with
    | JsonValueKind.Object ->
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.Number ->
            match v.TryGetInt32() with
            | true, n -> Some n
            | _ -> None
        | true, v when v.ValueKind = JsonValueKind.String ->
            match Int32.TryParse(v.GetString()) with
            | true, n -> Some n
            | _ -> None
        | _ -> None
    | _ -> None

let objProp (name: string) (e: JsonElement) =
    match e.ValueKind with
    | JsonValueKind.Object ->
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.Object -> Some v
        | _ -> None
    | _ -> None

let arrayProp (name: string) (e: JsonElement) =
    match e.ValueKind with
    | JsonValueKind.Object ->
        match e.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.Array -> v.EnumerateArray() |> List.ofSeq
        | _ -> []
    | _ -> []

/// func_info: [{"funcscope_category": {"id": 1}}, ...] → [1; ...]
let funcIds (authorizationInfo: JsonElement) =
    arrayProp "func_info" authorizationInfo
    |> List.choose (fun f -> objProp "funcscope_category" f |> Option.bind (intProp "id"))

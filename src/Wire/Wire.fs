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

/// The fast path (XmlScan.scanFlat) under the reader's size limit.
let scanFlat (xml: string) : XmlFields option =
    XmlScan.scanFlat (int readerSettings.MaxCharactersInDocument) xml

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

/// A document's fields read where they lie: in place, by the scanner's ranges, where the fast path
/// reads it (a value becomes a string only when asked for, a number is parsed from the text), and
/// from the XmlReader's map otherwise. Each answer is what `optionalField` on `parseXml`'s map would
/// give. Typing a message this way makes no map (a tree of new nodes for every field) and no string
/// of a field it does not keep. It holds a pooled array: dispose it once read (its answers are
/// values of their own and outlive it).
[<Sealed>]
type FieldReader private (xml: string, rented: XmlScan.FieldRange[], count: int, map: XmlFields voption) =
    let mutable ranges = rented

    /// The value of `name` in place when it is there and not blank (what `optionalField` keeps).
    let valueOf (name: string) (value: byref<ReadOnlySpan<char>>) =
        match map with
        | ValueNone ->
            let k = XmlScan.lastNamed (xml.AsSpan()) ranges count name

            if k < 0 then
                false
            else
                value <- xml.AsSpan(ranges[k].ValueStart, ranges[k].ValueLength)
                not (value.IsWhiteSpace())
        | ValueSome fields ->
            match optionalField name fields with
            | Some v ->
                value <- v.AsSpan()
                true
            | None -> false

    /// Reads `xml`: only XML that is not well-formed is an error.
    static member Read(xml: string) : Result<FieldReader, WireError> =
        let struct (ranges, count) =
            if isNull xml then
                struct (null, 0)
            else
                XmlScan.rentRanges (int readerSettings.MaxCharactersInDocument) (xml.AsSpan())

        if isNull ranges then
            readXml xml
            |> Result.map (fun fields -> new FieldReader(xml, null, 0, ValueSome fields))
        else
            Ok(new FieldReader(xml, ranges, count, ValueNone))

    /// `optionalField name`: the value, unless it is absent or blank.
    member _.Optional(name: string) : string option =
        let mutable value = ReadOnlySpan<char>.Empty

        match map with
        | ValueSome fields -> optionalField name fields
        | ValueNone when valueOf name &value -> Some(value.ToString())
        | ValueNone -> None

    /// `optionalField name`, parsed as a whole number the way `Int64.TryParse` reads its text.
    member _.Int64(name: string) : int64 option =
        let mutable value = ReadOnlySpan<char>.Empty

        if not (valueOf name &value) then
            None
        else
            match Int64.TryParse value with
            | true, n -> Some n
            | _ -> None

    /// `optionalField name`, parsed as a number in the invariant culture.
    member _.Float(name: string) : float option =
        let mutable value = ReadOnlySpan<char>.Empty

        if not (valueOf name &value) then
            None
        else
            match
                Double.TryParse(value, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture)
            with
            | true, n -> Some n
            | _ -> None

    interface IDisposable with
        member _.Dispose() =
            XmlScan.giveBack ranges
            ranges <- null

let private int64Field name fields =
    field name fields
    |> Result.bind (fun v ->
        match Int64.TryParse v with
        | true, n -> Ok n
        | _ -> Error(InvalidField(name, v)))

/// The outer body of a push: `<xml><AppId|ToUserName/><Encrypt/></xml>`.
let encryptedPart (body: string) =
    parseXml body |> Result.bind (field "Encrypt")

/// Where the outer body's Encrypt lies in `body`, when the fast path reads the body and the field is
/// not blank: what `encryptedPart` would answer, without a string of the body or of the field.
/// ValueNone: ask `encryptedPart` (the reader, or the error to refuse the push with).
let encryptedRange (body: ReadOnlySpan<char>) : struct (int * int) voption =
    let struct (ranges, count) =
        XmlScan.rentRanges (int readerSettings.MaxCharactersInDocument) body

    let k = XmlScan.lastNamed body ranges count "Encrypt"
    let found = if k < 0 then ValueNone else ValueSome ranges[k]
    XmlScan.giveBack ranges

    match found with
    | ValueSome r when not (body.Slice(r.ValueStart, r.ValueLength).IsWhiteSpace()) ->
        ValueSome(struct (r.ValueStart, r.ValueLength))
    | _ -> ValueNone

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

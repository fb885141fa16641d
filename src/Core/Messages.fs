/// Per-account messages and events (facts §5, §9.7): typed from the decrypted XML, keyed for WeChat's
/// retries, and turned into the webhook's JSON body and its HMAC signature. Passive replies are in
/// Replies, the release check's rules in ReleaseCheck. Pure: strings in, values out.
module WeChatFs.Messages

open System
open System.Globalization
open System.Security.Cryptography
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open WeChatFs.Domain
open WeChatFs.Wire

type Header =
    {
        ToUserName: string
        FromUserName: string
        CreateTime: int64
        MsgType: string
        MsgId: string option
    }

/// What a push says. A push that cannot be typed is never refused: it is kept as Unknown, raw XML with it.
type Body =
    | Text of content: string
    | Image of picUrl: string * mediaId: string
    | Voice of mediaId: string * format: string * recognition: string option
    | Video of mediaId: string * thumbMediaId: string
    | ShortVideo of mediaId: string * thumbMediaId: string
    | Location of x: float * y: float * scale: int * label: string
    | Link of title: string * description: string * url: string
    /// eventKey keeps WeChat's `qrscene_` prefix; scene is the value without it.
    | Subscribe of eventKey: string option * scene: string option * ticket: string option
    | Unsubscribe
    | Scan of eventKey: string * ticket: string option
    /// The GPS report of an official account user (location_report enabled).
    | LocationReport of latitude: float * longitude: float * precision: float
    | Click of eventKey: string
    | View of url: string * menuId: string option
    | TemplateSendJobFinish of msgId: string * status: string
    | WeappAuditSuccess of succTime: int64
    | WeappAuditFail of reason: string * failTime: int64 * screenshot: string option
    | WeappAuditDelay of reason: string * delayTime: int64
    /// Another MsgType or Event (or one whose fields did not parse): forwarded as it came.
    | Unknown of msgType: string * event: string option

type Message =
    {
        Header: Header
        Body: Body
        Fields: XmlFields
    }

let private text name fields =
    optionalField name fields |> Option.defaultValue ""

let private number (name: string) fields =
    match optionalField name fields with
    | Some v ->
        match Double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture) with
        | true, n -> Some n
        | _ -> None
    | None -> None

let private integer name fields =
    optionalField name fields
    |> Option.bind (fun v ->
        match Int64.TryParse v with
        | true, n -> Some n
        | _ -> None)

let private eventBody (fields: XmlFields) (event: string) =
    let key = optionalField "EventKey" fields

    match event with
    | "subscribe" ->
        let scene =
            key
            |> Option.filter (fun k -> k.StartsWith "qrscene_")
            |> Option.map (fun k -> k.Substring 8)

        Some(Subscribe(key, scene, optionalField "Ticket" fields))
    | "unsubscribe" -> Some Unsubscribe
    | "SCAN" -> Some(Scan(defaultArg key "", optionalField "Ticket" fields))
    | "LOCATION" ->
        match number "Latitude" fields, number "Longitude" fields, number "Precision" fields with
        | Some lat, Some lng, Some p -> Some(LocationReport(lat, lng, p))
        | _ -> None
    | "CLICK" -> Some(Click(defaultArg key ""))
    | "VIEW" -> Some(View(defaultArg key "", optionalField "MenuId" fields))
    // Note the capital ID in MsgID (facts §5.2).
    | "TEMPLATESENDJOBFINISH" -> Some(TemplateSendJobFinish(text "MsgID" fields, text "Status" fields))
    | "weapp_audit_success" -> integer "SuccTime" fields |> Option.map WeappAuditSuccess
    | "weapp_audit_fail" ->
        integer "FailTime" fields
        |> Option.map (fun t -> WeappAuditFail(text "Reason" fields, t, optionalField "ScreenShot" fields))
    | "weapp_audit_delay" ->
        integer "DelayTime" fields
        |> Option.map (fun t -> WeappAuditDelay(text "Reason" fields, t))
    | _ -> None

let private messageBody (fields: XmlFields) (msgType: string) =
    match msgType with
    | "text" -> Some(Text(text "Content" fields))
    | "image" -> Some(Image(text "PicUrl" fields, text "MediaId" fields))
    | "voice" -> Some(Voice(text "MediaId" fields, text "Format" fields, optionalField "Recognition" fields))
    | "video" -> Some(Video(text "MediaId" fields, text "ThumbMediaId" fields))
    | "shortvideo" -> Some(ShortVideo(text "MediaId" fields, text "ThumbMediaId" fields))
    | "location" ->
        match number "Location_X" fields, number "Location_Y" fields with
        | Some x, Some y ->
            Some(Location(x, y, integer "Scale" fields |> Option.map int |> Option.defaultValue 0, text "Label" fields))
        | _ -> None
    | "link" -> Some(Link(text "Title" fields, text "Description" fields, text "Url" fields))
    | _ -> None

/// Reads a decrypted message or event; only XML that is not well-formed is an error.
let parse (plainXml: string) : Result<Message, WireError> =
    parseXml plainXml
    |> Result.map (fun fields ->
        let msgType = text "MsgType" fields
        let event = optionalField "Event" fields

        let header =
            {
                ToUserName = text "ToUserName" fields
                FromUserName = text "FromUserName" fields
                CreateTime = integer "CreateTime" fields |> Option.defaultValue 0L
                MsgType = msgType
                MsgId = optionalField "MsgId" fields
            }

        let body =
            match msgType, event with
            | "event", Some e -> eventBody fields e
            | "event", None -> None
            | t, _ -> messageBody fields t
            |> Option.defaultValue (Unknown(msgType, event))

        {
            Header = header
            Body = body
            Fields = fields
        })

/// The webhook's `kind`: the MsgType for messages, `event.<Event>` for events (Event as WeChat
/// spells it), `unknown.<MsgType>` for what could not be typed.
let kind (m: Message) =
    match m.Body with
    | Unknown(t, Some e) when t = "event" -> $"event.{e}"
    | Unknown(t, _) -> $"unknown.{t}"
    | _ when m.Header.MsgType = "event" -> "event." + text "Event" m.Fields
    | _ -> m.Header.MsgType

/// WeChat retries carry the same key: MsgId for messages, FromUserName + CreateTime for events (facts §5).
let dedupeKey (m: Message) =
    match m.Header.MsgId with
    | Some id -> "msg:" + id
    | None -> String.Join(":", "evt", m.Header.FromUserName, m.Header.CreateTime, text "Event" m.Fields)

/// The dedupe key of a push: `dedupeKey` when the push carries what makes one (a MsgId, or a sender
/// and a CreateTime); otherwise a hash of the decrypted body, so pushes of unknown shape are not all
/// collapsed into one record, while WeChat's retries (the same body) still are.
let dedupeKeyOf (m: Message) (plainXml: string) =
    match m.Header.MsgId with
    | Some id when id <> "" -> "msg:" + id
    | _ when m.Header.FromUserName <> "" && m.Header.CreateTime <> 0L -> dedupeKey m
    | _ ->
        "body:"
        + (Security.Cryptography.SHA256.HashData(Text.Encoding.UTF8.GetBytes plainXml)
           |> Convert.ToHexStringLower)

/// The typed fields, snake_case, for the webhook's `message`.
let messageJson (m: Message) =
    let o = JsonObject()
    let set (k: string) (v: JsonNode) = o[k] <- v
    let str (v: string) = JsonValue.Create v :> JsonNode
    let num (v: float) = JsonValue.Create v :> JsonNode
    let long (v: int64) = JsonValue.Create v :> JsonNode
    let opt f v = v |> Option.map f |> Option.toObj
    set "to_user_name" (str m.Header.ToUserName)
    set "from_user_name" (str m.Header.FromUserName)
    set "create_time" (long m.Header.CreateTime)
    set "msg_type" (str m.Header.MsgType)
    m.Header.MsgId |> Option.iter (fun id -> set "msg_id" (str id))

    match m.Body with
    | Text content -> set "content" (str content)
    | Image(pic, media) ->
        set "pic_url" (str pic)
        set "media_id" (str media)
    | Voice(media, format, recognition) ->
        set "media_id" (str media)
        set "format" (str format)
        set "recognition" (opt str recognition)
    | Video(media, thumb)
    | ShortVideo(media, thumb) ->
        set "media_id" (str media)
        set "thumb_media_id" (str thumb)
    | Location(x, y, scale, label) ->
        set "location_x" (num x)
        set "location_y" (num y)
        set "scale" (long (int64 scale))
        set "label" (str label)
    | Link(title, description, url) ->
        set "title" (str title)
        set "description" (str description)
        set "url" (str url)
    | Subscribe(key, scene, ticket) ->
        set "event" (str "subscribe")
        set "event_key" (opt str key)
        set "scene" (opt str scene)
        set "ticket" (opt str ticket)
    | Unsubscribe -> set "event" (str "unsubscribe")
    | Scan(key, ticket) ->
        set "event" (str "SCAN")
        set "event_key" (str key)
        set "ticket" (opt str ticket)
    | LocationReport(lat, lng, precision) ->
        set "event" (str "LOCATION")
        set "latitude" (num lat)
        set "longitude" (num lng)
        set "precision" (num precision)
    | Click key ->
        set "event" (str "CLICK")
        set "event_key" (str key)
    | View(url, menu) ->
        set "event" (str "VIEW")
        set "event_key" (str url)
        set "menu_id" (opt str menu)
    | TemplateSendJobFinish(id, status) ->
        set "event" (str "TEMPLATESENDJOBFINISH")
        set "template_msg_id" (str id)
        set "status" (str status)
    | WeappAuditSuccess t ->
        set "event" (str "weapp_audit_success")
        set "succ_time" (long t)
    | WeappAuditFail(reason, t, shot) ->
        set "event" (str "weapp_audit_fail")
        set "reason" (str reason)
        set "fail_time" (long t)
        set "screenshot" (opt str shot)
    | WeappAuditDelay(reason, t) ->
        set "event" (str "weapp_audit_delay")
        set "reason" (str reason)
        set "delay_time" (long t)
    | Unknown(_, event) ->
        event |> Option.iter (fun e -> set "event" (str e))

        // Everything WeChat sent, by its own names, so nothing is lost.
        let raw = JsonObject()

        for KeyValue(k, v) in m.Fields do
            raw[k] <- str v

        set "fields" raw

    o

/// JSON for programs, not pages: `<` and non-ASCII text are written as they are, not as \u escapes.
let private payloadWriting =
    JsonWriterOptions(Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)

/// `{id, kind, authorizer_appid, tenant, received_at, message, raw_xml}`: the webhook body.
let webhookPayload
    (id: string)
    (kind: string)
    (AuthorizerAppId authorizerAppId)
    (tenant: TenantId option)
    (receivedAt: DateTimeOffset)
    (message: JsonNode)
    (rawXml: string)
    =
    // Written straight to UTF-8: no intermediate tree for the envelope, one buffer per payload.
    let buffer =
        Buffers.ArrayBufferWriter<byte>(512 + 3 * (if isNull rawXml then 0 else rawXml.Length))

    use w = new Utf8JsonWriter(buffer, payloadWriting)
    w.WriteStartObject()
    w.WriteString("id", id)
    w.WriteString("kind", kind)
    w.WriteString("authorizer_appid", authorizerAppId)

    match tenant with
    | Some(TenantId t) -> w.WriteString("tenant", t)
    | None -> w.WriteNull "tenant"

    w.WriteString("received_at", receivedAt.ToString("O", CultureInfo.InvariantCulture))
    w.WritePropertyName "message"

    if isNull message then
        w.WriteNullValue()
    else
        message.WriteTo w

    w.WriteString("raw_xml", rawXml)
    w.WriteEndObject()
    w.Flush()
    Encoding.UTF8.GetString buffer.WrittenSpan

/// The webhook body of a stored message from its decrypted XML (the embedded store keeps the XML and
/// makes the body when the row is read); `message` is null when the XML cannot be typed.
let webhookPayloadOfXml id kind authorizerAppId tenant receivedAt (plainXml: string) =
    let message =
        match parse plainXml with
        | Ok m -> messageJson m
        | Error _ -> null

    webhookPayload id kind authorizerAppId tenant receivedAt message plainXml

/// `X-WeChatFs-Signature`: `sha256=` + hex HMAC-SHA256 of the exact body under the webhook secret.
let signBody (secret: string) (body: string) =
    "sha256="
    + (HMACSHA256.HashData(Encoding.UTF8.GetBytes secret, Encoding.UTF8.GetBytes body)
       |> Convert.ToHexStringLower)

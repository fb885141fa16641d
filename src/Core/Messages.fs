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
        /// Events only: the Event as WeChat spells it.
        Event: string option
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
        /// The decrypted XML the message was typed from: an Unknown body's fields are read from it.
        Xml: string
    }

let private text (fields: FieldReader) name =
    fields.Optional name |> Option.defaultValue ""

let private eventBody (fields: FieldReader) (event: string) =
    let key = fields.Optional "EventKey"

    match event with
    | "subscribe" ->
        let scene =
            key
            |> Option.filter (fun k -> k.StartsWith "qrscene_")
            |> Option.map (fun k -> k.Substring 8)

        Some(Subscribe(key, scene, fields.Optional "Ticket"))
    | "unsubscribe" -> Some Unsubscribe
    | "SCAN" -> Some(Scan(defaultArg key "", fields.Optional "Ticket"))
    | "LOCATION" ->
        match fields.Float "Latitude", fields.Float "Longitude", fields.Float "Precision" with
        | Some lat, Some lng, Some p -> Some(LocationReport(lat, lng, p))
        | _ -> None
    | "CLICK" -> Some(Click(defaultArg key ""))
    | "VIEW" -> Some(View(defaultArg key "", fields.Optional "MenuId"))
    // Note the capital ID in MsgID (facts §5.2).
    | "TEMPLATESENDJOBFINISH" -> Some(TemplateSendJobFinish(text fields "MsgID", text fields "Status"))
    | "weapp_audit_success" -> fields.Int64 "SuccTime" |> Option.map WeappAuditSuccess
    | "weapp_audit_fail" ->
        fields.Int64 "FailTime"
        |> Option.map (fun t -> WeappAuditFail(text fields "Reason", t, fields.Optional "ScreenShot"))
    | "weapp_audit_delay" ->
        fields.Int64 "DelayTime"
        |> Option.map (fun t -> WeappAuditDelay(text fields "Reason", t))
    | _ -> None

let private messageBody (fields: FieldReader) (msgType: string) =
    match msgType with
    | "text" -> Some(Text(text fields "Content"))
    | "image" -> Some(Image(text fields "PicUrl", text fields "MediaId"))
    | "voice" -> Some(Voice(text fields "MediaId", text fields "Format", fields.Optional "Recognition"))
    | "video" -> Some(Video(text fields "MediaId", text fields "ThumbMediaId"))
    | "shortvideo" -> Some(ShortVideo(text fields "MediaId", text fields "ThumbMediaId"))
    | "location" ->
        match fields.Float "Location_X", fields.Float "Location_Y" with
        | Some x, Some y ->
            Some(Location(x, y, fields.Int64 "Scale" |> Option.map int |> Option.defaultValue 0, text fields "Label"))
        | _ -> None
    | "link" -> Some(Link(text fields "Title", text fields "Description", text fields "Url"))
    | _ -> None

/// Reads a decrypted message or event; only XML that is not well-formed is an error. The fields are
/// read in place (Wire.FieldReader): only the values the message keeps become strings.
let parse (plainXml: string) : Result<Message, WireError> =
    FieldReader.Read plainXml
    |> Result.map (fun fields ->
        use fields = fields
        let msgType = text fields "MsgType"
        let event = fields.Optional "Event"

        let header =
            {
                ToUserName = text fields "ToUserName"
                FromUserName = text fields "FromUserName"
                CreateTime = fields.Int64 "CreateTime" |> Option.defaultValue 0L
                MsgType = msgType
                MsgId = fields.Optional "MsgId"
                Event = event
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
            Xml = plainXml
        })

/// The webhook's `kind`: the MsgType for messages, `event.<Event>` for events (Event as WeChat
/// spells it), `unknown.<MsgType>` for what could not be typed.
let kind (m: Message) =
    match m.Body with
    | Unknown(t, Some e) when t = "event" -> $"event.{e}"
    | Unknown(t, _) -> $"unknown.{t}"
    | _ when m.Header.MsgType = "event" -> "event." + defaultArg m.Header.Event ""
    | _ -> m.Header.MsgType

/// WeChat retries carry the same key: MsgId for messages, FromUserName + CreateTime for events (facts §5).
let dedupeKey (m: Message) =
    match m.Header.MsgId with
    | Some id -> "msg:" + id
    | None -> String.Join(":", "evt", m.Header.FromUserName, m.Header.CreateTime, defaultArg m.Header.Event "")

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

/// The typed fields, snake_case, for the webhook's `message`: written as one JSON object, straight
/// to the writer of the body (no tree of nodes per push).
let writeMessage (w: Utf8JsonWriter) (m: Message) =
    let str (k: string) (v: string) = w.WriteString(k, v)
    let num (k: string) (v: float) = w.WriteNumber(k, v)
    let long (k: string) (v: int64) = w.WriteNumber(k, v)

    let opt (k: string) (v: string option) =
        match v with
        | Some v -> w.WriteString(k, v)
        | None -> w.WriteNull k

    w.WriteStartObject()
    str "to_user_name" m.Header.ToUserName
    str "from_user_name" m.Header.FromUserName
    long "create_time" m.Header.CreateTime
    str "msg_type" m.Header.MsgType
    m.Header.MsgId |> Option.iter (str "msg_id")

    match m.Body with
    | Text content -> str "content" content
    | Image(pic, media) ->
        str "pic_url" pic
        str "media_id" media
    | Voice(media, format, recognition) ->
        str "media_id" media
        str "format" format
        opt "recognition" recognition
    | Video(media, thumb)
    | ShortVideo(media, thumb) ->
        str "media_id" media
        str "thumb_media_id" thumb
    | Location(x, y, scale, label) ->
        num "location_x" x
        num "location_y" y
        long "scale" (int64 scale)
        str "label" label
    | Link(title, description, url) ->
        str "title" title
        str "description" description
        str "url" url
    | Subscribe(key, scene, ticket) ->
        str "event" "subscribe"
        opt "event_key" key
        opt "scene" scene
        opt "ticket" ticket
    | Unsubscribe -> str "event" "unsubscribe"
    | Scan(key, ticket) ->
        str "event" "SCAN"
        str "event_key" key
        opt "ticket" ticket
    | LocationReport(lat, lng, precision) ->
        str "event" "LOCATION"
        num "latitude" lat
        num "longitude" lng
        num "precision" precision
    | Click key ->
        str "event" "CLICK"
        str "event_key" key
    | View(url, menu) ->
        str "event" "VIEW"
        str "event_key" url
        opt "menu_id" menu
    | TemplateSendJobFinish(id, status) ->
        str "event" "TEMPLATESENDJOBFINISH"
        str "template_msg_id" id
        str "status" status
    | WeappAuditSuccess t ->
        str "event" "weapp_audit_success"
        long "succ_time" t
    | WeappAuditFail(reason, t, shot) ->
        str "event" "weapp_audit_fail"
        str "reason" reason
        long "fail_time" t
        opt "screenshot" shot
    | WeappAuditDelay(reason, t) ->
        str "event" "weapp_audit_delay"
        str "reason" reason
        long "delay_time" t
    | Unknown(_, event) ->
        event |> Option.iter (str "event")

        // Everything WeChat sent, by its own names, so nothing is lost.
        w.WritePropertyName "fields"
        w.WriteStartObject()

        // Read again from the XML: only what could not be typed needs every field.
        for KeyValue(k, v) in parseXml m.Xml |> Result.defaultValue Map.empty do
            str k v

        w.WriteEndObject()

    w.WriteEndObject()

/// JSON for programs, not pages: `<` and non-ASCII text are written as they are, not as \u escapes.
let private payloadWriting =
    JsonWriterOptions(Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)

// The webhook bodies' own pool: a body is held until its POST is answered, so tens are out at once
// under load, more than the shared pool keeps per size (it would allocate the rest anew).
let private bodyArrays = Buffers.ArrayPool<byte>.Create(1 <<< 20, 256)

/// A webhook body being written, in an array rented from a pool: the JSON writer asks for room for
/// the worst escaping of each string, and a buffer of its own per body, grown to that, allocated
/// more than the rest of a push. Disposed once the body is sent: the array goes back cleared, since
/// it held a customer's message.
[<Sealed>]
type PooledBody(capacity: int) =
    let mutable buffer = bodyArrays.Rent(max 256 capacity)
    let mutable written = 0

    let ensure (hint: int) =
        let need = written + max 1 hint

        if need > buffer.Length then
            let larger = bodyArrays.Rent(max need (2 * buffer.Length))
            Buffer.BlockCopy(buffer, 0, larger, 0, written)
            Array.Clear(buffer, 0, written)
            bodyArrays.Return buffer
            buffer <- larger

    /// The bytes written so far; valid until disposed.
    member _.Memory = ReadOnlyMemory<byte>(buffer, 0, written)

    interface Buffers.IBufferWriter<byte> with
        member _.Advance(count: int) = written <- written + count

        member _.GetMemory(hint: int) =
            ensure hint
            Memory<byte>(buffer, written, buffer.Length - written)

        member _.GetSpan(hint: int) =
            ensure hint
            Span<byte>(buffer, written, buffer.Length - written)

    interface IDisposable with
        member _.Dispose() =
            if not (isNull buffer) then
                Array.Clear(buffer, 0, written)
                bodyArrays.Return buffer
                buffer <- null
                written <- 0

/// `{id, kind, authorizer_appid, tenant, received_at, message, raw_xml}`: the webhook body in UTF-8,
/// as it is sent; `writeMessage` writes the `message` value. The caller disposes it once sent.
let webhookBody
    (id: string)
    (kind: string)
    (AuthorizerAppId authorizerAppId)
    (tenant: TenantId option)
    (receivedAt: DateTimeOffset)
    (writeMessage: Utf8JsonWriter -> unit)
    (rawXml: string)
    =
    // Room for what the writer asks for the XML and the message's text, so it seldom grows.
    let xmlLength = if isNull rawXml then 0 else rawXml.Length
    let body = new PooledBody(1024 + 8 * xmlLength)

    try
        use w = new Utf8JsonWriter(body, payloadWriting)
        w.WriteStartObject()
        w.WriteString("id", id)
        w.WriteString("kind", kind)
        w.WriteString("authorizer_appid", authorizerAppId)

        match tenant with
        | Some(TenantId t) -> w.WriteString("tenant", t)
        | None -> w.WriteNull "tenant"

        w.WriteString("received_at", receivedAt.ToString("O", CultureInfo.InvariantCulture))
        w.WritePropertyName "message"
        writeMessage w
        w.WriteString("raw_xml", rawXml)
        w.WriteEndObject()
        w.Flush()
        body
    with _ ->
        // A body that could not be written (text the writer refuses) goes back to the pool, cleared.
        (body :> IDisposable).Dispose()
        reraise ()

/// The webhook body of a typed message, as it is sent.
let webhookBodyOf id kind authorizerAppId tenant receivedAt (m: Message) rawXml =
    webhookBody id kind authorizerAppId tenant receivedAt (fun w -> writeMessage w m) rawXml

/// A webhook body as text (what the inbox stores and its API shows).
let private bodyText (body: PooledBody) =
    use body = body
    Encoding.UTF8.GetString body.Memory.Span

/// The webhook body as text, with `message` given as a node (null when there is none).
let webhookPayload id kind authorizerAppId tenant receivedAt (message: JsonNode) (rawXml: string) =
    let writeNode (w: Utf8JsonWriter) =
        if isNull message then
            w.WriteNullValue()
        else
            message.WriteTo w

    bodyText (webhookBody id kind authorizerAppId tenant receivedAt writeNode rawXml)

/// The webhook body of a stored message from its decrypted XML (the embedded store keeps the XML and
/// makes the body when the row is read); `message` is null when the XML cannot be typed.
let webhookPayloadOfXml id kind authorizerAppId tenant receivedAt (plainXml: string) =
    let message (w: Utf8JsonWriter) =
        match parse plainXml with
        | Ok m -> writeMessage w m
        | Error _ -> w.WriteNullValue()

    bodyText (webhookBody id kind authorizerAppId tenant receivedAt message plainXml)

/// `X-WeChatFs-Signature`: `sha256=` + hex HMAC-SHA256 of the exact body under the webhook secret.
/// Each thread keeps a hash keyed once: the one-shot `HMACSHA256.HashData` sets up the key and the
/// native context on every call, which with deliveries on every thread at once cost 4.1–4.7 µs of
/// processor a body against 1.5–1.7 (1.4 KB bodies, two cores). Safe to call from any thread. The
/// hashes are not tracked: the thread pool retires threads, and a tracked value would stay until
/// the signer is disposed; an untracked one goes with its thread (its native context finalized).
[<Sealed>]
type BodySigner(secret: byte[]) =
    let hashes =
        new Threading.ThreadLocal<IncrementalHash>(fun () ->
            IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, secret))

    member _.Sign(body: ReadOnlySpan<byte>) =
        let hash = hashes.Value
        hash.AppendData body
        let digest = hash.GetHashAndReset()

        String.Create(
            7 + 2 * digest.Length,
            digest,
            fun text digest ->
                "sha256=".AsSpan().CopyTo text
                Convert.TryToHexStringLower(ReadOnlySpan digest, text.Slice 7) |> ignore
        )

    interface IDisposable with
        member _.Dispose() = hashes.Dispose()

/// Messages and events sent to the gateway as WeChat sends them (facts §5): encrypted, to the message
/// URL with the account's appid, retried when no answer comes within 5 seconds; the passive reply
/// checked and decrypted. And the full-network release check (facts §6), with a pass/fail report.
module WeChatFs.Simulator.SimMessages

open System
open System.IO
open System.Net.Http
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open System.Xml
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState

let private cdata (s: string) =
    "<![CDATA[" + s.Replace("]]>", "]]]]><![CDATA[>") + "]]>"

/// Builds the plain XML of a message: the header, then the given fields in order.
let messageXml
    (toUser: string)
    (fromUser: string)
    (createTime: int64)
    (msgType: string)
    (fields: (string * string) list)
    =
    let body =
        fields
        |> List.map (fun (k, v) ->
            let numeric =
                Double.TryParse(v, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture)
                |> fst

            let value = if numeric && k <> "Content" then v else cdata v
            $"<{k}>{value}</{k}>")
        |> String.concat ""

    $"<xml><ToUserName>{cdata toUser}</ToUserName><FromUserName>{cdata fromUser}</FromUserName><CreateTime>{createTime}</CreateTime><MsgType>{cdata msgType}</MsgType>{body}</xml>"

let private settings =
    XmlReaderSettings(DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null)

let private fieldsOf (xml: string) =
    let doc = XmlDocument(XmlResolver = null)
    use reader = XmlReader.Create(new StringReader(xml), settings)
    doc.Load reader

    [
        for n in doc.DocumentElement.ChildNodes do
            if n.NodeType = XmlNodeType.Element then
                n.Name, n.InnerText
    ]
    |> Map.ofList

type ReplyCheck =
    | NoReply
    | Reply of plainXml: string
    | InvalidReply of reason: string

/// What WeChat does with an answer: `success` or empty is no reply; otherwise the encrypted reply's
/// signature must hold and it must decrypt for the platform's appid (facts §2.4).
let checkReply (options: SimulatorOptions) (body: string) =
    if String.IsNullOrWhiteSpace body || body = "success" then
        NoReply
    else
        try
            let f = fieldsOf body

            let get k =
                f |> Map.tryFind k |> Option.defaultValue ""

            let encrypt = get "Encrypt"

            if
                SimCrypto.signature options.Token (get "TimeStamp") (get "Nonce") encrypt
                <> get "MsgSignature"
            then
                InvalidReply "MsgSignature does not match"
            else
                match SimCrypto.decrypt (SimCrypto.aesKey options.EncodingAesKey) encrypt with
                | Some(plain, appid) when appid = options.ComponentAppId -> Reply plain
                | Some(_, appid) -> InvalidReply $"reply encrypted for appid {appid}"
                | None -> InvalidReply "reply does not decrypt"
        with ex ->
            InvalidReply $"reply is not XML: {ex.Message}"

type SendResult =
    {
        Attempts: int
        Status: int
        Body: string
        Reply: ReplyCheck
        Elapsed: TimeSpan
    }

let private http = new HttpClient(Timeout = Threading.Timeout.InfiniteTimeSpan)

/// Sends one message; WeChat waits 5 s, then retries (three times in all, facts §5 [U]: made a parameter).
let send (state: SimState) (appid: string) (plainXml: string) (tries: int) =
    task {
        match state.MessageUrlTemplate with
        | None -> return Error "no message URL configured"
        | Some template ->
            let url = template.Replace("$APPID$", appid)

            let toUser =
                (fieldsOf plainXml) |> Map.tryFind "ToUserName" |> Option.defaultValue ""

            let started = Diagnostics.Stopwatch.StartNew()
            let mutable result = None
            let mutable attempt = 0

            while result.IsNone && attempt < max 1 tries do
                attempt <- attempt + 1
                let post = Pusher.post state url ("ToUserName", toUser) plainXml
                let! first = Task.WhenAny(post :> Task, Task.Delay(TimeSpan.FromSeconds 5.))

                if Object.ReferenceEquals(first, post) then
                    let status, body = post.Result

                    if status > 0 then
                        result <-
                            Some
                                {
                                    Attempts = attempt
                                    Status = status
                                    Body = body
                                    Reply =
                                        if status = 200 then
                                            checkReply state.Options body
                                        else
                                            InvalidReply $"HTTP {status}"
                                    Elapsed = started.Elapsed
                                }

            return
                match result with
                | Some r -> Ok r
                | None -> Error $"no answer within 5 s, {attempt} attempts"
    }

let private accountOf (appid: string) =
    catalog |> List.tryFind (fun a -> a.AppId = appid)

let newMsgId () =
    string (RandomNumberGenerator.GetInt32(1, Int32.MaxValue))
    + string (RandomNumberGenerator.GetInt32(100000, 999999))

type CaseResult =
    {
        Name: string
        Passed: bool
        Detail: string
    }

/// The release check against one test group (facts §6): auto-authorization with its push, the text
/// case, the customer-service case and the legacy event case.
let releaseTest (state: SimState) (group: int) =
    task {
        let oa = releaseTestAccounts[(group - 1) * 2]
        let user = "oRELEASE_TEST_USER_" + string group
        let now () = state.Now().ToUnixTimeSeconds()
        let results = Collections.Generic.List<CaseResult>()

        let add name passed detail =
            results.Add
                {
                    Name = name
                    Passed = passed
                    Detail = detail
                }

        // 1. WeChat authorizes the test account itself, which pushes `authorized`.
        let preAuth, _ = state.CreatePreAuthCode()

        match state.Confirm(preAuth, oa.AppId, [ 1; 2; 3; 4; 15 ]) with
        | Error e -> add "authorization" false e
        | Ok(code, update) ->
            let! pushed =
                Pusher.pushAuthorized state (if update then "updateauthorized" else "authorized") oa.AppId code preAuth

            match pushed with
            | Some p -> add "authorization" (p.Status = 200 && p.Body = "success") $"push answered {p.Status} {p.Body}"
            | None -> add "authorization" false "no event URL configured"

        // 2. Text: a passive reply with `_callback`, at once.
        let text =
            messageXml
                oa.UserName
                user
                (now ())
                "text"
                [ "Content", "TESTCOMPONENT_MSG_TYPE_TEXT"; "MsgId", newMsgId () ]

        match! send state oa.AppId text 1 with
        | Ok { Reply = Reply plain; Elapsed = t } ->
            let f = fieldsOf plain
            let content = f |> Map.tryFind "Content" |> Option.defaultValue ""

            let swapped =
                Map.tryFind "ToUserName" f = Some user
                && Map.tryFind "FromUserName" f = Some oa.UserName

            add
                "text message"
                (content = "TESTCOMPONENT_MSG_TYPE_TEXT_callback"
                 && swapped
                 && t < TimeSpan.FromSeconds 5.)
                $"reply '{content}' in {t.TotalMilliseconds:F0} ms"
        | Ok r -> add "text message" false $"{r.Reply}"
        | Error e -> add "text message" false e

        // 3. Customer service: an empty answer at once, then `<code>_from_api` through custom/send.
        match state.NewAuthCode oa.AppId with
        | None -> add "customer-service message" false "test account not authorized"
        | Some code ->
            let queryText =
                messageXml
                    oa.UserName
                    user
                    (now ())
                    "text"
                    [ "Content", "QUERY_AUTH_CODE:" + code.Code; "MsgId", newMsgId () ]

            match! send state oa.AppId queryText 1 with
            | Ok { Reply = NoReply; Elapsed = t } when t < TimeSpan.FromSeconds 5. ->
                let expected = code.Code + "_from_api"
                let deadline = DateTime.UtcNow.AddSeconds 10.

                let sent () =
                    state.CustomMessages()
                    |> List.exists (fun m -> m.AppId = oa.AppId && m.ToUser = user && m.Content = expected)

                while not (sent ()) && DateTime.UtcNow < deadline do
                    do! Task.Delay 50

                add
                    "customer-service message"
                    (sent ())
                    (if sent () then
                         $"answered empty in {t.TotalMilliseconds:F0} ms, then custom/send"
                     else
                         "no custom/send with <code>_from_api within 10 s")
            | Ok r -> add "customer-service message" false $"expected an empty answer within 5 s, got {r.Reply}"
            | Error e -> add "customer-service message" false e

        // 4. Event (legacy case): `<Event>from_callback`.
        let event =
            messageXml
                oa.UserName
                user
                (now ())
                "event"
                [
                    "Event", "LOCATION"
                    "Latitude", "23.137466"
                    "Longitude", "113.352425"
                    "Precision", "119.385040"
                ]

        match! send state oa.AppId event 1 with
        | Ok { Reply = Reply plain } ->
            let content = fieldsOf plain |> Map.tryFind "Content" |> Option.defaultValue ""
            add "event" (content = "LOCATIONfrom_callback") $"reply '{content}'"
        | Ok r -> add "event" false $"{r.Reply}"
        | Error e -> add "event" false e

        return List.ofSeq results
    }

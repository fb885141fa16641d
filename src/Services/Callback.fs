/// The message and event URL's workflow (facts §5, §6): open the push, type it, let `onMessage` see
/// it, answer the release check, store it (durable before `success`), make the webhook's first
/// attempt while WeChat waits, and turn its answer into a passive reply. A push in, an outcome out;
/// the edge only turns the outcome into the HTTP answer.
module WeChatFs.Callback

open System
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.Inbox

/// What became of a push to the message and event URL.
type CallbackOutcome =
    /// Not opened (size, outer XML or signature): nothing stored; refused with this status.
    | Refused of status: int * reason: string
    /// Opened, but the decrypted XML is not well-formed: nothing stored; 400.
    | Unreadable of reason: string
    /// An encrypted passive reply to `message`, with the key the push was opened with (facts §2.4).
    | Reply of key: Crypto.AesKey * message: Messages.Message * reply: Replies.Reply
    /// The release check's customer-service case: an empty answer at once, the message follows.
    | EmptyAnswer
    /// No authorized account has this appid: recorded as an event; `success`.
    | UnknownAuthorizer of appid: string
    /// WeChat's retry of a stored push: delivered once, so just `success`.
    | DuplicatePush
    /// Stored (and, with a webhook, its first attempt made or under way): `success`.
    | Success

/// What the workflow works with.
type CallbackDeps =
    {
        Keys: Pushes.PushKeys
        /// Whether the full-network release check is answered (WeChatFs:ReleaseResponder).
        ReleaseResponder: bool
        InstanceId: string
        Store: IStore
        Authorizers: Authorizers.AuthorizerService
        Inbox: InboxService
        Clock: TimeProvider
        Logger: ILogger
        /// Sees every typed message first (the deployments take their audit events from it) and has
        /// stored what it needs when it returns.
        OnMessage: AuthorizerAppId -> Messages.Message -> Task
    }

/// A delivery's id: a version-7 UUID (time-ordered, like Guid.CreateVersion7's) whose random bits
/// come from the thread's fast generator. Guid's own asks the kernel for them, a system call per
/// push that cost more than the rest of the id; the ids need to be unique, not secret.
let deliveryId (now: DateTimeOffset) =
    let bytes = Array.zeroCreate<byte> 16
    Random.Shared.NextBytes(Span(bytes, 6, 10))
    let ms = now.ToUnixTimeMilliseconds()

    for i in 0..5 do
        bytes[i] <- byte (ms >>> (8 * (5 - i)))

    bytes[6] <- 0x70uy ||| (bytes[6] &&& 0x0Fuy)
    bytes[8] <- 0x80uy ||| (bytes[8] &&& 0x3Fuy)
    Guid(ReadOnlySpan bytes, true).ToString("N")

/// The customer-service answer runs on its own: WeChat hears the empty answer at once (facts §6).
let private answerReleaseLater (d: CallbackDeps) (appid: string) (code: string) (m: Messages.Message) =
    Task.Run(fun () ->
        task {
            try
                do! d.Inbox.AnswerReleaseQueryAuth(AuthorizerAppId appid, code, m.Header.FromUserName)
            with ex ->
                d.Logger.LogError(ex, "release check reply failed")
        }
        :> Task)
    |> ignore

/// An opened, typed push: onMessage, then the release check's answer or the store.
let private handle (d: CallbackDeps) (appid: string) (m: Messages.Message) (plain: string) key =
    task {
        do! d.OnMessage (AuthorizerAppId appid) m

        let release =
            if d.ReleaseResponder then
                ReleaseCheck.decideRelease appid m
            else
                ReleaseCheck.NotARelease

        match release with
        | ReleaseCheck.PassiveText text -> return Reply(key, m, Replies.TextReply text)
        | ReleaseCheck.QueryAuthThenSend code ->
            answerReleaseLater d appid code m
            return EmptyAnswer
        | ReleaseCheck.NotARelease ->
            match! d.Authorizers.Lookup(AuthorizerAppId appid) with
            | None ->
                do!
                    d.Store.AppendEvent
                        {
                            Kind = "unknown_authorizer_message"
                            Subject = appid
                            Detail = Messages.kind m
                            At = d.Clock.GetUtcNow()
                        }

                return UnknownAuthorizer appid
            | Some boundTenant ->
                // Stored (durable) first, then the webhook's first attempt while WeChat waits.
                let inbox = d.Inbox
                // Whole milliseconds, as the store keeps it: the body a later attempt makes from the
                // stored row is then the very body of the first attempt.
                let now =
                    let t = d.Clock.GetUtcNow()
                    t.AddTicks(-(t.Ticks % TimeSpan.TicksPerMillisecond))

                let id = deliveryId now
                let tenant = boundTenant |> Option.map Ids.tenant
                let kind = Messages.kind m

                // The row keeps the decrypted XML, half the size of the webhook body, which repeats the
                // message's text; the body is made from it when the row is read (InboxRows), and here
                // only for a first attempt while WeChat waits.
                let! outcome =
                    inbox.Append
                        {
                            Id = id
                            DedupeKey = Messages.dedupeKeyOf m plain
                            AuthorizerAppId = AuthorizerAppId appid
                            Tenant = boundTenant
                            Kind = kind
                            ReceivedAt = now
                            Payload = plain
                            ClaimedBy = Some d.InstanceId
                            ClaimedUntil = Some(now + inbox.FirstAttemptClaim)
                        }

                match outcome with
                | Duplicate _ -> return DuplicatePush
                | Stored _ ->
                    let body () =
                        Messages.webhookBodyOf id kind (AuthorizerAppId appid) boundTenant now m plain

                    match! inbox.FirstAttempt(id, tenant, body) with
                    | None -> return Success
                    | Some answer ->
                        match Replies.parseReply answer with
                        | Ok(Some reply) -> return Reply(key, m, reply)
                        | Ok None -> return Success
                        | Error e ->
                            d.Logger.LogWarning("webhook reply ignored: {Reason}", Replies.describeReplyError e)
                            return Success
    }

/// The workflow of one push to `/wechat/authorizers/{appid}/callback`.
let messagePush (d: CallbackDeps) (appid: string) (push: Pushes.SignedPush) : Task<CallbackOutcome> =
    match Pushes.openPush d.Keys push with
    | Error(status, reason) -> Task.FromResult(Refused(status, reason))
    | Ok(plain, key) ->
        match Messages.parse plain with
        | Error e -> Task.FromResult(Unreadable(Wire.describe e))
        | Ok m -> handle d appid m plain key

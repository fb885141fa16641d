/// The message and event URL (`/wechat/authorizers/$APPID$/callback`), and the deliveries API.
module WeChatFs.MessageApi

open System
open System.Security.Cryptography
open System.Text.Json.Nodes
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.Inbox
open WeChatFs.Http
open WeChatFs.Problems

let private success (ctx: HttpContext) = writeText ctx 200 "success"

/// An encrypted passive reply with the key the push was opened with (facts §2.4).
let private writeReply
    (s: Services)
    (ctx: HttpContext)
    (key: Crypto.AesKey)
    (m: Messages.Message)
    (reply: Replies.Reply)
    =
    let now = s.Clock.GetUtcNow().ToUnixTimeSeconds()
    let plain = Replies.replyXml m.Header.FromUserName m.Header.ToUserName now reply
    let nonce = string (RandomNumberGenerator.GetInt32(100_000_000, 999_999_999))

    let sealedReply =
        Crypto.sealReply
            s.Options.Token
            key
            (Ids.componentAppId s.Options.ComponentAppId)
            (RandomNumberGenerator.GetBytes 16)
            (string now)
            nonce
            plain

    ctx.Response.StatusCode <- 200
    ctx.Response.ContentType <- "application/xml; charset=utf-8"
    ctx.Response.WriteAsync(Crypto.replyXml sealedReply)

/// POST: verify, decrypt, type; store before answering; the webhook's reply (if it answers in time)
/// goes back encrypted, otherwise `success`. The workflow (Callback.messagePush) decides; this
/// handler only answers. `onMessage` sees every typed message first (the deployments take their
/// audit events from it) and has stored what it needs when it returns.
let callback
    (s: Services)
    (authorizers: Authorizers.AuthorizerService)
    (inbox: InboxService)
    (onMessage: AuthorizerAppId -> Messages.Message -> Task)
    =
    let deps: Callback.CallbackDeps =
        {
            Keys = ComponentApi.pushKeys s
            ReleaseResponder = s.Options.ReleaseResponder
            InstanceId = s.Options.InstanceId
            Store = s.Store
            Authorizers = authorizers
            Inbox = inbox
            Clock = s.Clock
            Logger = s.Logger
            OnMessage = onMessage
        }

    handler (fun ctx ->
        task {
            let appid = string ctx.Request.RouteValues["appid"]
            let! read = readSignedPush ctx

            let! outcome =
                match read with
                | Error(status, reason) -> Task.FromResult(Callback.Refused(status, reason))
                | Ok push -> Callback.messagePush deps appid push

            match outcome with
            | Callback.Refused(status, reason) ->
                s.Refusals.Refused("message_push", status, reason)
                do! writeText ctx status reason
            | Callback.Unreadable reason ->
                s.Refusals.Refused("message_push_unreadable", 400, reason)
                do! writeText ctx 400 reason
            | Callback.Reply(key, m, reply) -> do! writeReply s ctx key m reply
            | Callback.EmptyAnswer -> do! writeText ctx 200 ""
            | Callback.UnknownAuthorizer appid ->
                s.Refusals.Refused("unknown_authorizer", 200, $"message for unknown authorizer {appid}")
                do! success ctx
            | Callback.DuplicatePush ->
                ctx.Items[Metrics.duplicatePushKey] <- true
                do! success ctx
            | Callback.Success -> do! success ctx
        })

/// GET: the plain-mode URL check (facts §2.7): echo `echostr` when the signature holds.
let callbackCheck (s: Services) =
    handler (fun ctx ->
        let q = ctx.Request.Query

        let expected =
            Crypto.plainSignature s.Options.Token (string q["timestamp"]) (string q["nonce"])

        if String.Equals(expected, string q["signature"], StringComparison.OrdinalIgnoreCase) then
            writeText ctx 200 (string q["echostr"])
        else
            writeText ctx 401 "signature mismatch")

/// Authorization events go to the webhook too (no codes in them), through the same inbox.
let forwardAuthorizationEvent (s: Services) (inbox: InboxService) (push: Wire.ComponentPush) =
    task {
        let event =
            match push with
            | Wire.AuthorizedPushed p -> Some("authorized", p.AuthorizerAppId, p.CreateTime)
            | Wire.UpdateAuthorizedPushed p -> Some("updateauthorized", p.AuthorizerAppId, p.CreateTime)
            | Wire.UnauthorizedPushed(appid, created) -> Some("unauthorized", appid, created)
            | Wire.TicketPushed _
            | Wire.FastRegisterPushed _
            | Wire.UnknownInfoType _ -> None

        match event with
        | None -> ()
        | Some(infoType, account, created) ->
            let appid = Ids.authorizerAppId account
            let! a = s.Store.GetAuthorizer account
            let tenant = a |> Option.bind (fun a -> a.Tenant)
            let now = s.Clock.GetUtcNow()
            let id = Guid.CreateVersion7().ToString("N")
            let message = JsonObject()
            message["info_type"] <- JsonValue.Create infoType
            message["authorizer_appid"] <- JsonValue.Create appid
            message["create_time"] <- JsonValue.Create created
            let kind = "authorization." + infoType

            let! _ =
                inbox.Append
                    {
                        Id = id
                        DedupeKey = $"auth:{infoType}:{created}"
                        AuthorizerAppId = account
                        Tenant = tenant
                        Kind = kind
                        ReceivedAt = now
                        Payload = Messages.webhookPayload id kind account tenant now message ""
                        ClaimedBy = None
                        ClaimedUntil = None
                    }

            ()
    }

let private deliveryView (d: Delivery) =
    {|
        id = d.Id
        kind = d.Kind
        authorizer_appid = Ids.authorizerAppId d.AuthorizerAppId
        tenant = d.Tenant |> Option.map Ids.tenant |> Option.toObj
        received_at = d.ReceivedAt
        status = DeliveryStatus.toText d.Status
        attempts = d.Attempts
        next_attempt_at = d.NextAttemptAt |> Option.toNullable
        last_error = d.LastError |> Option.toObj
        delivered_at = d.DeliveredAt |> Option.toNullable
    |}

/// GET /api/deliveries?status=pending|delivered|dead&offset=&limit=, or instead of an offset
/// `before=` (the `next_before` of the page before) or `after=` (the `previous_after` of the page
/// after): a page by cursor costs the same at any depth.
let listDeliveries (s: Services) =
    admin s (fun ctx ->
        task {
            let q = ctx.Request.Query
            let statusText = string q["status"]
            let beforeText = string q["before"]
            let afterText = string q["after"]

            let intParam name fallback maxValue =
                Paging.boundedInt fallback maxValue (string q[name])

            let status =
                if statusText = "" then
                    Some None
                else
                    DeliveryStatus.ofText statusText |> Option.map Some

            let limit = max 1 (intParam "limit" 100 500)

            let given =
                [ string q["offset"]; beforeText; afterText ]
                |> List.filter (fun t -> t <> "")
                |> List.length

            let write (r: DeliveriesPage) =
                let text = Option.map Paging.Cursor.toText >> Option.toObj

                writeJson
                    ctx
                    200
                    {|
                        total = r.Page.Total
                        items = r.Page.Items |> List.map deliveryView
                        next_before = text r.Next
                        previous_after = text r.Previous
                    |}

            match status with
            | None -> do! problem ctx (BadRequest "status must be pending, delivered or dead")
            | Some _ when given > 1 -> do! problem ctx (BadRequest "give one of offset, before and after")
            | Some status ->
                match beforeText, Paging.Cursor.ofText beforeText, afterText, Paging.Cursor.ofText afterText with
                | "", _, "", _ ->
                    let! r = deliveriesAt s.Store status (intParam "offset" 0 Int32.MaxValue) limit
                    do! write r
                | "", _, _, None -> do! problem ctx (BadRequest "after must be the previous_after of a later page")
                | "", _, _, Some cursor ->
                    let! r = deliveriesAfter s.Store status cursor limit
                    do! write r
                | _, None, _, _ -> do! problem ctx (BadRequest "before must be the next_before of an earlier page")
                | _, Some cursor, _, _ ->
                    let! r = deliveriesBefore s.Store status cursor limit
                    do! write r
        })

let getDelivery (s: Services) =
    admin s (fun ctx ->
        task {
            match! s.Store.GetDelivery(string ctx.Request.RouteValues["id"]) with
            | Some d -> do! writeJson ctx 200 (deliveryView d)
            | None -> do! problem ctx (NotFound Missing.Delivery)
        })

/// POST /api/deliveries/{id}/retry: a dead (or waiting) delivery goes back in line now.
let retryDelivery (s: Services) =
    admin s (fun ctx ->
        task {
            let id = string ctx.Request.RouteValues["id"]

            match! s.Store.GetDelivery id with
            | None -> do! problem ctx (NotFound Missing.Delivery)
            | Some _ ->
                let! retried = s.Store.RetryDelivery(id, s.Clock.GetUtcNow())

                if retried then
                    do! writeJson ctx 202 {| id = id; retried = true |}
                else
                    do! problem ctx AlreadyDelivered
        })

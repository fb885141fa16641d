/// The authorization event URL and the component token API.
module WeChatFs.ComponentApi

open System
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.Http
open WeChatFs.Problems

// ---- component events --------------------------------------------------------------------------

/// What the authorization event URL does with each push; authorization events are handled by the
/// authorizer service when it is present.
type PushHandlers =
    {
        OnAuthorization: Wire.ComponentPush -> Task
    }

/// The key material both push URLs open pushes with.
let pushKeys (s: Services) : Pushes.PushKeys =
    {
        Token = s.Options.Token
        AesKeys = s.Options.AesKeys
        ComponentAppId = s.Options.ComponentAppId
    }

/// The authorization event URL: the workflow (Pushes.componentPush) decides; this answers.
let componentEvents (s: Services) (handlers: PushHandlers) =
    let deps: Pushes.ComponentPushDeps =
        {
            Keys = pushKeys s
            Store = s.Store
            Components = s.Components
            Clock = s.Clock
            Logger = s.Logger
            OnAuthorization = handlers.OnAuthorization
        }

    handler (fun ctx ->
        task {
            let! read = readSignedPush ctx

            let! outcome =
                match read with
                | Error(status, reason) -> Task.FromResult(Pushes.PushRefused(status, reason))
                | Ok push -> Pushes.componentPush deps push

            match outcome with
            | Pushes.PushRefused(status, reason) ->
                s.Refusals.Refused("component_push", status, reason)
                do! writeText ctx status reason
            | Pushes.PushUnreadable reason ->
                s.Refusals.Refused("component_push_unreadable", 400, reason)
                do! writeText ctx 400 reason
            | Pushes.StaleTicket created ->
                s.Refusals.Refused(
                    "stale_ticket",
                    200,
                    $"ticket push of CreateTime {created} is older than the stored ticket's"
                )

                do! writeText ctx 200 "success"
            | Pushes.PushHandled -> do! writeText ctx 200 "success"
        })

// ---- component API -------------------------------------------------------------------------------

let componentStatus (s: Services) =
    admin s (fun ctx ->
        task {
            let now = s.Clock.GetUtcNow()
            let! ticket = s.Store.LatestTicket s.Options.ComponentAppId
            let! token = s.Store.ComponentToken s.Options.ComponentAppId
            let! lastError = s.Components.LastError()
            let policy = s.Options.TokenPolicy

            let body =
                {|
                    component_appid = Ids.componentAppId s.Options.ComponentAppId
                    store = s.Store.Provider
                    ticket =
                        ticket
                        |> Option.map (fun t ->
                            {|
                                received_at = t.ReceivedAt
                                age_seconds = int (now - t.ReceivedAt).TotalSeconds
                                fresh = now - t.ReceivedAt < policy.TicketLifetime
                            |})
                        |> Option.toObj
                    token =
                        token
                        |> Option.map (fun t ->
                            {|
                                expires_at = t.ExpiresAt
                                seconds_left = max 0 (int (t.ExpiresAt - now).TotalSeconds)
                                valid = Expiring.isUsable now t
                                refresh_due = Expiring.isDue policy.RefreshMargin now t
                            |})
                        |> Option.toObj
                    last_error =
                        lastError
                        |> Option.map (fun e ->
                            {|
                                errcode = Option.toNullable e.Errcode
                                message = e.Message
                                meaning = e.Errcode |> Option.map ErrorGuide.explain |> Option.toObj
                                at = e.At
                            |})
                        |> Option.toObj
                |}

            do! writeJson ctx 200 body
        })

let componentAccessToken (s: Services) =
    admin s (fun ctx ->
        task {
            match! s.Components.GetToken() with
            | Ok t ->
                do!
                    writeJson
                        ctx
                        200
                        {|
                            component_access_token = Ids.componentToken t.Token
                            expires_at = t.ExpiresAt
                        |}
            | Error e -> do! problem ctx (Token e)
        })

/// A business system that got 40001/40014/42001 with the token reports it here; it is invalidated only
/// if it is still the current one.
let invalidateComponentToken (s: Services) =
    admin s (fun ctx ->
        task {
            try
                let! doc = JsonDocument.ParseAsync(ctx.Request.Body)

                match Wire.stringProp "component_access_token" doc.RootElement with
                | Some failed ->
                    let! removed = s.Components.Invalidate(ComponentAccessToken failed)
                    do! writeJson ctx 200 {| invalidated = removed |}
                | None -> do! problem ctx (BadRequest "component_access_token is required")
            with :? JsonException ->
                do! problem ctx (BadRequest "body must be JSON: {\"component_access_token\": \"...\"}")
        })

let componentProxy (s: Services) =
    admin s (fun ctx ->
        proxyRoute
            s
            ctx
            (fun () ->
                task {
                    match! s.Components.GetToken() with
                    | Ok t -> return Ok t.Token
                    | Error e -> return Error(Token e)
                })
            (fun t -> s.Components.Invalidate t :> Task)
            (fun call t ->
                s.Client.ForwardAsComponent(call.Method, call.Path, call.Query, call.Body, call.ContentType, t)))

/// Whether this instance can serve: the store answers, a recent ticket is stored and the component
/// token is usable; the body is what /readyz answers (through the health checks in Health.fs).
let readinessReport (store: Store.IStore) (appId: ComponentAppId) (policy: TokenPolicy) (now: DateTimeOffset) =
    task {
        let! ping = store.Ping()

        let! ticket, token =
            task {
                match ping with
                | Error _ -> return None, None
                | Ok() ->
                    let! t = store.LatestTicket appId
                    let! k = store.ComponentToken appId
                    return t, k
            }

        let check ok reason =
            {|
                ok = ok
                reason = if ok then null else reason
            |}

        let storeCheck =
            match ping with
            | Ok() -> check true ""
            | Error e -> check false $"store unreachable: {e}"

        let ticketCheck =
            match ticket with
            | Some t when now - t.ReceivedAt < policy.TicketLifetime -> check true ""
            | Some _ -> check false "the latest component_verify_ticket is older than 12 hours"
            | None -> check false "no component_verify_ticket has arrived yet"

        let tokenCheck =
            match token with
            | Some t when Expiring.isUsable now t -> check true ""
            | Some _ -> check false "the component token has expired"
            | None -> check false "no component token yet"

        let ready = storeCheck.ok && ticketCheck.ok && tokenCheck.ok

        return
            ready,
            box
                {|
                    ready = ready
                    checks =
                        {|
                            store = storeCheck
                            ticket = ticketCheck
                            component_token = tokenCheck
                        |}
                |}
    }

/// GET /readyz: ready to serve when the store answers, a fresh ticket is stored and the component
/// token is valid; otherwise 503 with the reason of each failing check.
let readiness (s: Services) =
    handler (fun ctx ->
        task {
            let! ready, body =
                readinessReport s.Store s.Options.ComponentAppId s.Options.TokenPolicy (s.Clock.GetUtcNow())

            do! writeJson ctx (if ready then 200 else 503) body
        })

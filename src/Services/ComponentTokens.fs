/// The component_access_token, kept alive: served from memory while fresh, refreshed before expiry by
/// exactly one caller across every instance on the store (an in-process gate plus a store lease),
/// invalidated only when the token that failed is still the current one.
module WeChatFs.ComponentTokens

open System
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient

type TokenError =
    /// No usable token and no ticket WeChat would accept: wait for the next push (up to 10 minutes).
    | NoTicket
    | RefreshFailed of WeChatError
    /// Another instance holds the refresh lease and did not finish in time.
    | RefreshBusy

let describeTokenError =
    function
    | NoTicket ->
        "no component_verify_ticket that WeChat would accept has arrived yet; WeChat pushes one every 10 minutes"
    | RefreshFailed e -> describeError e
    | RefreshBusy -> "another instance is refreshing the token; try again in a moment"

/// The last error WeChat gave while keeping the component token, for the status page.
type LastError =
    {
        Errcode: int option
        Message: string
        At: DateTimeOffset
    }

/// The CreateTime WeChat stamped on the stored ticket, to refuse a replayed or stale push.
let ticketCreateTimeKey = "component:ticket_create_time"

/// Whether a ticket push may replace the stored ticket, and the CreateTime to remember for it: one
/// stamped before the stored ticket's is stale (a replay, or a late retry) and changes nothing. A
/// CreateTime in the future counts as now, so one odd push cannot hold back every later one.
let ticketCreateTimeToStore (stored: int64 option) (incoming: int64) (nowSeconds: int64) =
    let effective = min incoming nowSeconds

    match stored with
    | Some s when incoming < s -> None
    | _ -> Some effective

/// Why a call made with the component token failed: no token could be had, or WeChat refused the call.
type ComponentCallError =
    | ComponentTokenFailed of TokenError
    | WeChatCallFailed of WeChatError

type ComponentTokenService
    (options: GatewayOptions, store: IStore, client: Client, clock: TimeProvider, logger: ILogger<ComponentTokenService>)
    =
    let appId = options.ComponentAppId
    let policy = options.TokenPolicy
    let gate = new SemaphoreSlim(1, 1)
    let leaseName = "component-token:" + Ids.componentAppId appId
    // The fresh token lives here; the store stays the source of truth across instances.
    let mutable cached: Expiring<ComponentAccessToken> option = None
    // After a transient failure, callers get the fallback (or an error) until retry.NotBefore.
    let mutable retry = Decisions.RetryState.clear
    // When api_start_push_ticket was last asked for after a refused ticket (rate-limited).
    let mutable lastPushRequest = DateTimeOffset.MinValue
    let pushRequestLock = obj ()

    /// After 61005/61006: ask WeChat to push a ticket at once rather than in up to 10 minutes, at
    /// most once per TicketPushRequestInterval, without holding up the caller.
    let requestTicketPush () =
        let now = clock.GetUtcNow()

        let due =
            lock pushRequestLock (fun () ->
                if now - lastPushRequest >= options.Hardening.TicketPushRequestInterval then
                    lastPushRequest <- now
                    true
                else
                    false)

        if due then
            Task.Run(fun () ->
                task {
                    try
                        logger.LogInformation("WeChat refused the ticket; asking it to push a new one")

                        match! client.StartPushTicket() with
                        | Ok() -> ()
                        | Error err -> logger.LogWarning("api_start_push_ticket failed: {Error}", describeError err)
                    with ex ->
                        logger.LogError(ex, "api_start_push_ticket failed")
                }
                :> Task)
            |> ignore

    let recordError (err: WeChatError) =
        store.SaveComponentError(errcodeOfError err, describeError err, clock.GetUtcNow())

    /// A ticket WeChat refused (61005/61006) is not offered again; the next push replaces it.
    let usableTicket () =
        task {
            let! ticket = store.LatestTicket appId
            let! marker = store.RejectedTicket()
            return Decisions.usableTicket ticket marker
        }

    let fetch (ticket: ReceivedTicket) (fallback: Expiring<ComponentAccessToken> option) =
        task {
            let! result = client.ComponentToken ticket.Ticket

            match result with
            | Ok(token, expiresIn) ->
                let issued = Expiring.issued (clock.GetUtcNow()) expiresIn token
                do! store.SaveComponentToken(appId, issued)
                cached <- Some issued
                retry <- Decisions.RetryState.clear
                logger.LogInformation("component token refreshed, valid until {ExpiresAt}", issued.ExpiresAt)
                return Ok issued
            | Error err ->
                do! recordError err

                match failureKind err with
                | TicketRejected ->
                    do! store.SaveRejectedTicket(Decisions.ticketMarker ticket)
                    // Meanwhile the still-valid token (the fallback) keeps being served.
                    requestTicketPush ()
                | _ -> retry <- Decisions.RetryState.failed Backoff.componentToken (clock.GetUtcNow()) retry

                logger.LogWarning("component token refresh failed: {Error}", describeError err)

                return
                    match fallback with
                    | Some t -> Ok t
                    | None -> Error(RefreshFailed err)
        }

    /// Another instance holds the lease: watch the store for its result instead of calling WeChat.
    let awaitOtherInstance (fallback: Expiring<ComponentAccessToken> option) =
        task {
            let deadline = clock.GetUtcNow() + options.RefreshLease
            let mutable result = None

            while result.IsNone && clock.GetUtcNow() < deadline do
                do! Task.Delay 50
                let! stored = store.ComponentToken appId
                let now = clock.GetUtcNow()

                match stored with
                | Some t when not (Expiring.isDue policy.RefreshMargin now t) ->
                    cached <- Some t
                    result <- Some(Ok t)
                | _ -> ()

            return
                match result, fallback with
                | Some r, _ -> r
                | None, Some t -> Ok t
                | None, None -> Error RefreshBusy
        }

    let refreshUnderLease (ticket: ReceivedTicket) fallback =
        task {
            let now = clock.GetUtcNow()
            let holder = options.InstanceId

            let! outcome =
                Leases.run store leaseName holder now (now + options.RefreshLease) (fun () ->
                    task {
                        // Between our read and the lease another instance may have finished a refresh.
                        let! stored = store.ComponentToken appId

                        match stored with
                        | Some t when not (Expiring.isDue policy.RefreshMargin now t) ->
                            cached <- Some t
                            return Ok t
                        | _ -> return! fetch ticket fallback
                    })

            match outcome with
            | Some result -> return result
            | None -> return! awaitOtherInstance fallback
        }

    let slowPath () =
        task {
            do! gate.WaitAsync()

            try
                let! ticket = usableTicket ()
                let! token = store.ComponentToken appId
                let now = clock.GetUtcNow()

                match decideComponent policy now ticket token with
                | UseToken t ->
                    cached <- Some t
                    return Ok t
                | WaitForTicket ->
                    cached <- None
                    return Error NoTicket
                | Refresh(ticket, fallback) ->
                    match Decisions.gateRefresh false now retry fallback with
                    | Decisions.ServeFallback t -> return Ok t
                    | Decisions.Busy -> return Error RefreshBusy
                    | Decisions.Proceed -> return! refreshUnderLease ticket fallback
            finally
                gate.Release() |> ignore
        }

    /// The current token: from memory while it is fresh, otherwise decided, and refreshed if due.
    member _.GetToken() : Task<Result<Expiring<ComponentAccessToken>, TokenError>> =
        match cached with
        | Some t when not (Expiring.isDue policy.RefreshMargin (clock.GetUtcNow()) t) -> Task.FromResult(Ok t)
        | _ -> slowPath ()

    /// WeChat rejected `failed` (40001/40014/42001). Forget it here, and in the store only if it is
    /// still the current token there: another instance may already have replaced it.
    member _.Invalidate(failed: ComponentAccessToken) =
        task {
            if shouldInvalidate failed cached then
                cached <- None

            let! removed = store.InvalidateComponentToken(appId, failed)

            if removed then
                logger.LogWarning("component token rejected by WeChat; invalidated, a new one will be fetched")

            return removed
        }

    /// A ticket was stored: if we have no good token (never had one, or the last ticket was refused),
    /// get one now rather than at the next scheduled check.
    member this.OnTicketStored() =
        let now = clock.GetUtcNow()

        match cached with
        | Some t when not (Expiring.isDue policy.RefreshMargin now t) -> ()
        | _ ->
            retry <-
                { retry with
                    NotBefore = DateTimeOffset.MinValue
                }

            Task.Run(fun () ->
                task {
                    try
                        let! _ = this.GetToken()
                        ()
                    with ex ->
                        logger.LogError(ex, "component token refresh after a ticket push failed")
                }
                :> Task)
            |> ignore

    /// Calls WeChat with the token; on 40001/40014/42001 invalidates it and retries once with a new one.
    member this.WithToken(call: ComponentAccessToken -> Task<Result<'a, WeChatError>>) =
        task {
            match! this.GetToken() with
            | Error e -> return Error(ComponentTokenFailed e)
            | Ok t ->
                match! call t.Token with
                | Error err when failureKind err = TokenRejected ->
                    let! _ = this.Invalidate t.Token

                    match! this.GetToken() with
                    | Error e -> return Error(ComponentTokenFailed e)
                    | Ok t2 ->
                        let! second = call t2.Token
                        return second |> Result.mapError WeChatCallFailed
                | other -> return other |> Result.mapError WeChatCallFailed
        }

    /// At start: no ticket younger than 12 h means pushes stopped; ask WeChat to start them again.
    member _.EnsureTicketPush() =
        task {
            let! ticket = store.LatestTicket appId

            if needsTicketPushStart policy (clock.GetUtcNow()) ticket then
                logger.LogInformation("no recent component_verify_ticket stored; asking WeChat to push one")
                let! started = client.StartPushTicket()

                match started with
                | Ok() -> ()
                | Error err ->
                    do! recordError err
                    logger.LogWarning("api_start_push_ticket failed: {Error}", describeError err)
        }

    member _.LastError() =
        task {
            let! stored = store.ComponentError()

            return
                stored
                |> Option.map (fun (errcode, message, at) ->
                    {
                        Errcode = errcode
                        Message = message
                        At = at
                    })
        }

    member _.AppId = appId

/// Keeps the token fresh with no request waiting on it: one check at start, then every CheckInterval.
type ComponentTokenRefresher
    (service: ComponentTokenService, options: GatewayOptions, logger: ILogger<ComponentTokenRefresher>) =
    inherit BackgroundService()

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            try
                do! service.EnsureTicketPush()
            with ex ->
                logger.LogError(ex, "ticket push check failed")

            while not stopping.IsCancellationRequested do
                try
                    let! _ = service.GetToken()
                    ()
                with ex ->
                    logger.LogError(ex, "component token check failed")

                try
                    do! Task.Delay(options.CheckInterval, stopping)
                with :? OperationCanceledException ->
                    ()
        }

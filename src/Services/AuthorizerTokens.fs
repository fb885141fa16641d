/// Each account's access token kept alive: served from memory while fresh, refreshed once per due time
/// across instances (a per-account gate here, a lease in the store), forced refreshes coalesced,
/// failures backed off, and a refused refresh token (61023) recovered through
/// api_get_authorizer_list. The decisions are Decisions.fs's; this loads state and carries them out.
module WeChatFs.AuthorizerTokens

open System
open System.Collections.Concurrent
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon

type AuthorizerTokens
    (
        options: GatewayOptions,
        store: IStore,
        client: Client,
        components: ComponentTokenService,
        clock: TimeProvider,
        logger: ILogger
    ) =
    let margin = options.TokenPolicy.RefreshMargin
    let maxJitter = options.AuthorizerRefreshJitter
    let cache = ConcurrentDictionary<AuthorizerAppId, Expiring<AuthorizerAccessToken>>()
    let gates = ConcurrentDictionary<AuthorizerAppId, SemaphoreSlim>()
    let retryNotBefore = ConcurrentDictionary<AuthorizerAppId, Decisions.RetryState>()
    // When each account's token last came from WeChat here: forced refreshes within a few seconds of
    // it share that token instead of calling again (200 concurrent refreshes make one call).
    let refreshedAt = ConcurrentDictionary<AuthorizerAppId, DateTimeOffset>()
    let marginFor appid = margin + jitterFor maxJitter appid
    let event = appendEvent store clock

    // While Preload runs: the accounts whose token was dropped from memory meanwhile, which it must
    // not bring back from a read of the store made before the drop.
    let mutable preloading = false
    let dropped = ConcurrentDictionary<AuthorizerAppId, unit>()

    let markDropped (appid: AuthorizerAppId) =
        if Volatile.Read &preloading then
            dropped[appid] <- ()

    let drop (appid: AuthorizerAppId) =
        markDropped appid
        cache.TryRemove appid |> ignore

    let retryOf appid =
        match retryNotBefore.TryGetValue appid with
        | true, state -> state
        | _ -> Decisions.RetryState.clear

    let noteFailure appid =
        retryNotBefore[appid] <- Decisions.RetryState.failed Backoff.authorizerToken (clock.GetUtcNow()) (retryOf appid)

    /// The account cannot be served (revoked, or waiting for the merchant): no token of it stays in memory.
    let unusable (appid: AuthorizerAppId) status reason =
        drop appid
        Error(Unusable(status, reason))

    /// The account became unusable: its status in the store (which drops its tokens there) and here.
    let markUnusable (appid: AuthorizerAppId) status (reason: string) at =
        task {
            do! store.SetAuthorizerStatus(appid, status, Some reason, at)
            drop appid
        }

    let rec refresh (a: Authorizer) (refreshToken: AuthorizerRefreshToken) fallback (recovering: bool) =
        task {
            let! result =
                components.WithToken(fun t -> client.AuthorizerToken(t, a.AppId, refreshToken))

            match result with
            | Ok(token, expiresIn, newRefresh) ->
                let now = clock.GetUtcNow()
                let issued = Expiring.issued now expiresIn token
                // The rotated refresh token is written with the access token, before anyone uses either.
                do! store.SaveAuthorizerTokens(a.AppId, issued, newRefresh, now)
                cache[a.AppId] <- issued
                refreshedAt[a.AppId] <- now
                retryNotBefore.TryRemove a.AppId |> ignore

                if newRefresh <> refreshToken then
                    logger.LogInformation(
                        "authorizer {AppId}: refresh token rotated and stored",
                        Ids.authorizerAppId a.AppId
                    )

                return Ok issued
            | Error(ComponentTokenFailed e) ->
                return
                    match fallback with
                    | Some t -> Ok t
                    | None -> Error(ComponentTokenUnavailable e)
            | Error(WeChatCallFailed err) ->
                // The decision is Decisions.onAuthorizerRefreshFailure's; this carries it out.
                let setStatus status reason at =
                    task {
                        do! markUnusable a.AppId status reason at

                        let kind =
                            match status with
                            | Revoked -> "revoked"
                            | _ -> "needs_reauthorization"

                        do! event kind a.AppId reason
                        return Error(Unusable(status, reason))
                    }

                match Decisions.onAuthorizerRefreshFailure (failureKind err) recovering (clock.GetUtcNow()) with
                | Decisions.RecoverFromList ->
                    // 61023: the list may hold a working refresh token (facts §3.4, §3.8).
                    logger.LogWarning(
                        "authorizer {AppId}: refresh token refused (61023); reloading from api_get_authorizer_list",
                        Ids.authorizerAppId a.AppId
                    )

                    match! listAll components client with
                    | Ok listed ->
                        let listedToken =
                            listed
                            |> List.tryFind (fun l -> l.AppId = a.AppId)
                            |> Option.bind (fun l -> l.RefreshToken)

                        match Decisions.onRecoveryListed refreshToken listedToken (clock.GetUtcNow()) with
                        | Decisions.RetryWith recovered ->
                            do! event "refresh_token_recovered" a.AppId ""
                            return! refresh a recovered fallback true
                        | Decisions.GiveUp(status, reason, at) -> return! setStatus status reason at
                    | Error e ->
                        noteFailure a.AppId

                        return
                            match fallback with
                            | Some t -> Ok t
                            | None -> Error(AuthorizerRefreshFailed err)
                | Decisions.SetStatus(status, reason, at) -> return! setStatus status reason at
                | Decisions.BackOff ->
                    noteFailure a.AppId

                    logger.LogWarning(
                        "authorizer {AppId}: refresh failed: {Error}",
                        Ids.authorizerAppId a.AppId,
                        describeError err
                    )

                    return
                        match fallback with
                        | Some t -> Ok t
                        | None -> Error(AuthorizerRefreshFailed err)
        }

    let awaitOtherInstance appid fallback =
        task {
            let deadline = clock.GetUtcNow() + options.RefreshLease
            let mutable result = None

            while result.IsNone && clock.GetUtcNow() < deadline do
                do! Task.Delay 50
                let! a = store.GetAuthorizer appid

                match a |> Option.bind (fun a -> a.AccessToken) with
                | Some t when not (Expiring.isDue (marginFor appid) (clock.GetUtcNow()) t) ->
                    cache[appid] <- t
                    result <- Some(Ok t)
                | _ -> ()

            return
                match result, fallback with
                | Some r, _ -> r
                | None, Some t -> Ok t
                | None, None -> Error AuthorizerRefreshBusy
        }

    /// Decide with the stored record; refresh under the cross-instance lease when due (or forced).
    /// A forced refresh that finds a token fetched less than `forceCoalescing` ago (by a refresh it
    /// waited for at the gate, or one just before it) takes that one instead of calling again.
    let obtain (appid: AuthorizerAppId) (forced: bool) =
        task {
            let gate = gates.GetOrAdd(appid, fun _ -> new SemaphoreSlim(1, 1))
            do! gate.WaitAsync()

            try
                let force =
                    forced
                    && not (
                        match refreshedAt.TryGetValue appid with
                        | true, at -> coalesced (clock.GetUtcNow()) at
                        | _ -> false
                    )

                match! store.GetAuthorizer appid with
                | None -> return Error UnknownAuthorizer
                | Some a ->
                    let now = clock.GetUtcNow()

                    let decision =
                        match decideAuthorizer (marginFor appid) now a, force, a.RefreshToken with
                        | UseAuthorizerToken t, true, Some r -> RefreshAuthorizer(r, Some t)
                        | d, _, _ -> d

                    match decision with
                    | UseAuthorizerToken t ->
                        cache[appid] <- t
                        return Ok t
                    | Unavailable(status, reason) -> return unusable appid status reason
                    | RefreshAuthorizer(_, fallback) when
                        Decisions.gateRefresh force now (retryOf appid) fallback <> Decisions.Proceed
                        ->
                        return
                            match fallback with
                            | Some t -> Ok t
                            | None -> Error AuthorizerRefreshBusy
                    | RefreshAuthorizer(_, fallback) ->
                        let lease = "authorizer-token:" + Ids.authorizerAppId appid

                        let! outcome =
                            Leases.run store lease options.InstanceId now (now + options.RefreshLease) (fun () ->
                                task {
                                    // Re-read under the lease: another instance may have refreshed already.
                                    match! store.GetAuthorizer appid with
                                    | None -> return Error UnknownAuthorizer
                                    | Some current ->
                                        match decideAuthorizer (marginFor appid) (clock.GetUtcNow()) current with
                                        | UseAuthorizerToken t when not force ->
                                            cache[appid] <- t
                                            return Ok t
                                        | Unavailable(status, reason) -> return unusable appid status reason
                                        | UseAuthorizerToken _
                                        | RefreshAuthorizer _ ->
                                            match current.RefreshToken with
                                            | Some r -> return! refresh current r fallback false
                                            | None ->
                                                return Error(Unusable(NeedsReauthorization, "no refresh token stored"))
                                })

                        match outcome with
                        | Some r -> return r
                        | None -> return! awaitOtherInstance appid fallback
            finally
                gate.Release() |> ignore
        }


    /// The authorizer's token: from memory while fresh, else refreshed once across instances.
    member _.Get(appid: AuthorizerAppId) : Task<Result<Expiring<AuthorizerAccessToken>, AuthorizerTokenError>> =
        match cache.TryGetValue appid with
        | true, t when not (Expiring.isDue (marginFor appid) (clock.GetUtcNow()) t) -> Task.FromResult(Ok t)
        | _ -> obtain appid false

    /// An operator's explicit refresh, even when the token is not due.
    member _.Force(appid: AuthorizerAppId) = obtain appid true

    /// WeChat rejected `failed`: forget it here, and in the store only while it is still current there.
    member _.Invalidate(appid: AuthorizerAppId, failed: AuthorizerAccessToken) =
        task {
            // Marked even when memory does not hold it (yet): a preload that read the failed token
            // before this must not bring it in.
            markDropped appid

            match cache.TryGetValue appid with
            | true, t when t.Token = failed -> cache.TryRemove appid |> ignore
            | _ -> ()

            return! store.InvalidateAuthorizerToken(appid, failed)
        }

    /// One scheduler pass: refresh every token that is due, a few at a time. Answers how many
    /// candidates the store gave (at most a page of 500) and how many of them were worked on (not
    /// already fresh in memory), so the scheduler can go on at once while a full page was due.
    member this.RefreshDue(concurrency: int) =
        task {
            let now = clock.GetUtcNow()
            // Candidates within the widest jittered margin; GetToken refreshes only those really due.
            let! due = store.DueAuthorizers(now + margin + maxJitter, 500)

            // A candidate whose jitter puts its refresh later is fresh in memory once it has been
            // read, and one that failed waits out its backoff: neither is worked on again before.
            let toWork =
                due
                |> List.filter (fun appid ->
                    now >= (retryOf appid).NotBefore
                    && (match cache.TryGetValue appid with
                        | true, t -> Expiring.isDue (marginFor appid) now t
                        | _ -> true))

            use throttle = new SemaphoreSlim(max 1 concurrency)

            let work (appid: AuthorizerAppId) =
                task {
                    do! throttle.WaitAsync()

                    try
                        try
                            let! _ = this.Get appid
                            ()
                        with ex ->
                            logger.LogError(ex, "refresh of {AppId} failed", Ids.authorizerAppId appid)
                    finally
                        throttle.Release() |> ignore
                }

            let! _ = toWork |> List.map work |> Task.WhenAll
            return due.Length, toWork.Length
        }

    /// Pacing (Decisions.Pacing): refreshes the `count` earliest-expiring tokens now, whether due or
    /// not, except those waiting out a backoff.
    member _.RefreshEarliest(count: int, concurrency: int) =
        task {
            let now = clock.GetUtcNow()
            let! earliest = store.DueAuthorizers(DateTimeOffset.MaxValue, count)
            let toWork = earliest |> List.filter (fun appid -> now >= (retryOf appid).NotBefore)
            use throttle = new SemaphoreSlim(max 1 concurrency)

            let work (appid: AuthorizerAppId) =
                task {
                    do! throttle.WaitAsync()

                    try
                        try
                            let! _ = obtain appid true
                            ()
                        with ex ->
                            logger.LogError(ex, "paced refresh of {AppId} failed", Ids.authorizerAppId appid)
                    finally
                        throttle.Release() |> ignore
                }

            let! _ = toWork |> List.map work |> Task.WhenAll
            return toWork.Length
        }

    /// A token an authorization just stored (or none): served from memory, and any backoff cleared.
    member _.Remember(appid: AuthorizerAppId, token: Expiring<AuthorizerAccessToken> option) =
        match token with
        | Some t -> cache[appid] <- t
        | None -> drop appid

        retryNotBefore.TryRemove appid |> ignore

    /// The account became unusable (an `unauthorized` push, ...): recorded in the store and here.
    member _.MarkUnusable(appid: AuthorizerAppId, status: AuthorizerStatus, reason: string, at: DateTimeOffset) =
        markUnusable appid status reason at

    /// The account changed in the store (revoked, a new refresh token): read it again next time.
    member _.Forget(appid: AuthorizerAppId) = drop appid

    /// After a start: every token in the store that is still fresh, into memory a page at a time,
    /// so that an account's first read after a restart is not a read of the store (at 100,000
    /// accounts, those reads held the token API to a seventh of its rate on PostgreSQL). A token
    /// already in memory is kept, and one dropped meanwhile is not brought back. How many it loaded.
    member _.Preload(pageSize: int, stopping: CancellationToken) =
        task {
            Volatile.Write(&preloading, true)

            try
                let mutable after = None
                let mutable more = true
                let mutable loaded = 0

                while more && not stopping.IsCancellationRequested do
                    let! page = store.AuthorizerTokensAfter(after, pageSize)
                    let now = clock.GetUtcNow()

                    for a in page do
                        match preloadableToken (marginFor a.Account) now a.State a.Current with
                        | Some t when cache.TryAdd(a.Account, t) ->
                            // Dropped after the page was read: either the drop removes this entry,
                            // or it is seen here and the entry goes.
                            if dropped.ContainsKey a.Account then
                                cache.TryRemove(Collections.Generic.KeyValuePair(a.Account, t)) |> ignore
                            else
                                loaded <- loaded + 1
                        | _ -> ()

                    after <- page |> List.tryLast |> Option.map _.Account
                    more <- page.Length = pageSize

                return loaded
            finally
                Volatile.Write(&preloading, false)
                dropped.Clear()
        }

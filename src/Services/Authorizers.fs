/// Authorized accounts: the authorization flow (links, callback, pushes), their tokens kept alive for
/// good (refreshed once per due time across instances, recovered through api_get_authorizer_list on
/// 61023), and recovery of the whole list after a lost database.
module WeChatFs.Authorizers

open System
open System.Collections.Concurrent
open System.Security.Cryptography
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens

type AuthorizationError =
    | ComponentUnavailable of TokenError
    | WeChatRefused of WeChatError

let describeAuthorizationError =
    function
    | ComponentUnavailable e -> describeTokenError e
    | WeChatRefused e -> describeError e

type AuthorizerTokenError =
    | UnknownAuthorizer
    | Unusable of AuthorizerStatus * reason: string
    | ComponentTokenUnavailable of TokenError
    | AuthorizerRefreshFailed of WeChatError
    | AuthorizerRefreshBusy

type AuthorizationLinks =
    {
        PreAuthCode: PreAuthCode
        PcUrl: string
        MobileUrl: string
        ExpiresAt: DateTimeOffset
    }

type SyncReport =
    {
        Total: int
        Imported: int
        Updated: int
    }

/// Keys of small values; codes are hashed so no code appears in a key.
let private hashKey (prefix: string) (value: string) =
    prefix
    + (SHA256.HashData(Encoding.UTF8.GetBytes value)[..11] |> Convert.ToHexStringLower)

let private tenantOfPreAuthKey (PreAuthCode code) = hashKey "preauth:" code
let private exchangedCodeKey (AuthorizationCode code) = hashKey "authcode:" code
/// The latest AuthorizationCode pushed for an account (the full-network release check falls back to it).
let latestCodeKey (AuthorizerAppId appid) = "lastcode:" + appid

/// Spreads refreshes of tokens issued together over a few minutes, the same for every instance.
let jitterFor (maxJitter: TimeSpan) (AuthorizerAppId appid) =
    if maxJitter <= TimeSpan.Zero then
        TimeSpan.Zero
    else
        let h = SHA256.HashData(Encoding.UTF8.GetBytes appid)
        let n = BitConverter.ToUInt32(h, 0)
        TimeSpan.FromSeconds(float (n % uint32 (max 1.0 maxJitter.TotalSeconds)))

let private query (pairs: (string * string option) list) =
    pairs
    |> List.choose (fun (k, v) -> v |> Option.map (fun v -> $"{k}={Uri.EscapeDataString v}"))
    |> String.concat "&"

/// The PC scan page and the mobile link (facts §4.1, §4.2).
let authorizationUrls
    (mpBase: Uri)
    (ComponentAppId appId)
    (PreAuthCode code)
    (redirectUri: string)
    (authType: int option)
    (bizAppId: string option)
    =
    let common =
        [
            "component_appid", Some appId
            "pre_auth_code", Some code
            "redirect_uri", Some redirectUri
            "auth_type", authType |> Option.map string
            "biz_appid", bizAppId
        ]

    let baseUrl = mpBase.ToString().TrimEnd '/'
    let pc = $"{baseUrl}/cgi-bin/componentloginpage?{query common}"

    let mobile =
        $"""{baseUrl}/safe/bindcomponent?{query ([ "action", Some "bindcomponent"; "no_scan", Some "1" ] @ common)}#wechat_redirect"""

    pc, mobile

/// Forced refreshes this close to the last one share its token.
let forceCoalescing = TimeSpan.FromSeconds 5.

/// Whether a forced refresh at `now` is answered by the token fetched at `refreshedAt`.
let coalesced (now: DateTimeOffset) (refreshedAt: DateTimeOffset) =
    now - refreshedAt < forceCoalescing && now >= refreshedAt

type AuthorizerService
    (
        options: GatewayOptions,
        store: IStore,
        client: Client,
        components: ComponentTokenService,
        clock: TimeProvider,
        stateKey: byte[],
        logger: ILogger<AuthorizerService>
    ) =
    let margin = options.TokenPolicy.RefreshMargin
    let maxJitter = options.AuthorizerRefreshJitter
    let cache = ConcurrentDictionary<AuthorizerAppId, Expiring<AuthorizerAccessToken>>()
    let gates = ConcurrentDictionary<AuthorizerAppId, SemaphoreSlim>()
    let retryNotBefore = ConcurrentDictionary<AuthorizerAppId, Decisions.RetryState>()
    let completion = new SemaphoreSlim(1, 1)
    // When each account's token last came from WeChat here: forced refreshes within a few seconds of
    // it share that token instead of calling again (200 concurrent refreshes make one call).
    let refreshedAt = ConcurrentDictionary<AuthorizerAppId, DateTimeOffset>()
    // appid → (when read, tenant if the account is known): the message path asks on every push.
    let directory =
        ConcurrentDictionary<AuthorizerAppId, DateTimeOffset * TenantId option option>()

    let directoryTtl = TimeSpan.FromSeconds 10.
    let marginFor appid = margin + jitterFor maxJitter appid

    let event kind (AuthorizerAppId subject) detail =
        store.AppendEvent
            {
                Kind = kind
                Subject = subject
                Detail = detail
                At = clock.GetUtcNow()
            }

    let withComponent call =
        task {
            match! components.WithToken call with
            | Ok v -> return Ok v
            | Error(Choice1Of2 e) -> return Error(ComponentUnavailable e)
            | Error(Choice2Of2 e) -> return Error(WeChatRefused e)
        }

    let fetchProfile (appid: AuthorizerAppId) =
        task {
            match! withComponent (fun t -> client.GetAuthorizerInfo(t, appid)) with
            | Ok info ->
                match! store.GetAuthorizer appid with
                | Some a ->
                    do!
                        store.SaveAuthorizer
                            { a with
                                Profile = Some info.Profile
                                FuncIds = if info.FuncIds.IsEmpty then a.FuncIds else info.FuncIds
                                UpdatedAt = clock.GetUtcNow()
                            }
                | None -> ()
            | Error e ->
                // The profile is for display; the authorization itself is already safe in the store.
                logger.LogWarning("api_get_authorizer_info failed: {Error}", describeAuthorizationError e)
        }

    /// Pages through api_get_authorizer_list, 500 at a time (facts §3.8).
    let listAll () =
        task {
            let mutable offset = 0
            let mutable total = Int32.MaxValue
            let mutable items = []
            let mutable failure = None

            while failure.IsNone && offset < total do
                match! withComponent (fun t -> client.GetAuthorizerList(t, offset, 500)) with
                | Ok(count, page) ->
                    total <- count
                    items <- items @ page
                    offset <- if page.IsEmpty then total else offset + page.Length
                | Error e -> failure <- Some e

            return
                match failure with
                | Some e -> Error e
                | None -> Ok items
        }

    let retryOf appid =
        match retryNotBefore.TryGetValue appid with
        | true, state -> state
        | _ -> Decisions.RetryState.clear

    let noteFailure appid =
        retryNotBefore[appid] <- Decisions.RetryState.failed Backoff.authorizerToken (clock.GetUtcNow()) (retryOf appid)

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
            | Error(Choice1Of2 e) ->
                return
                    match fallback with
                    | Some t -> Ok t
                    | None -> Error(ComponentTokenUnavailable e)
            | Error(Choice2Of2 err) ->
                // The decision is Decisions.onAuthorizerRefreshFailure's; this carries it out.
                let setStatus status reason at =
                    task {
                        do! store.SetAuthorizerStatus(a.AppId, status, Some reason, at)
                        cache.TryRemove a.AppId |> ignore

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

                    match! listAll () with
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
                    | Unavailable(status, reason) ->
                        cache.TryRemove appid |> ignore
                        return Error(Unusable(status, reason))
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
                                        | Unavailable(status, reason) -> return Error(Unusable(status, reason))
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

    member _.StateKey = stateKey

    /// Whether the account is known here and its tenant: read from the store at most every 10 s per
    /// account, so a burst of messages does not become a burst of store reads.
    member _.Lookup(appid: AuthorizerAppId) : Task<TenantId option option> =
        let now = clock.GetUtcNow()

        match directory.TryGetValue appid with
        | true, (at, known) when now - at < directoryTtl -> Task.FromResult known
        | _ ->
            task {
                let! a = store.GetAuthorizer appid
                let known = a |> Option.map (fun a -> a.Tenant)
                directory[appid] <- (now, known)
                return known
            }

    /// A fresh pre_auth_code and the two links; the tenant travels in the signed state and is also
    /// remembered under the pre_auth_code, so an `authorized` push alone binds the right tenant.
    member _.CreateLinks(tenant: TenantId, authType: int option, bizAppId: string option, stateLifetime: TimeSpan) =
        task {
            match! withComponent (fun t -> client.CreatePreAuthCode t) with
            | Error e -> return Error e
            | Ok(code, expiresIn) ->
                let now = clock.GetUtcNow()

                // The state is bound to this pre_auth_code: its nonce is derived from the code.
                let (PreAuthCode codeText) = code

                let state =
                    Secrets.AuthState.sign
                        stateKey
                        (now + stateLifetime)
                        (AuthorizationLinks.stateNonce stateKey codeText)
                        (Ids.tenant tenant)

                let redirect =
                    options.PublicBaseUrl.ToString().TrimEnd '/'
                    + "/wechat/component/authorized?state="
                    + Uri.EscapeDataString state

                let pc, mobile =
                    authorizationUrls options.MpBaseUrl options.ComponentAppId code redirect authType bizAppId

                do! store.PutValue(tenantOfPreAuthKey code, Ids.tenant tenant, false)

                return
                    Ok
                        {
                            PreAuthCode = code
                            PcUrl = pc
                            MobileUrl = mobile
                            ExpiresAt = now.AddSeconds(float expiresIn)
                        }
        }

    /// api_query_auth with a code from the redirect or a push, idempotently: the refresh token is
    /// stored before anything is acknowledged; the profile follows.
    member _.Complete(code: AuthorizationCode, tenant: TenantId option, preAuthCode: PreAuthCode option) =
        task {
            do! completion.WaitAsync()

            try
                let! already = store.GetValue(exchangedCodeKey code)

                let! previous =
                    match already with
                    | Some appid -> store.GetAuthorizer(AuthorizerAppId appid)
                    | None -> Task.FromResult None

                match previous with
                | Some a ->
                    // The same code again (a reload, or the push after the redirect): bind, don't exchange.
                    match tenant, a.Tenant with
                    | Some t, None ->
                        let bound =
                            { a with
                                Tenant = Some t
                                UpdatedAt = clock.GetUtcNow()
                            }

                        do! store.SaveAuthorizer bound
                        directory.TryRemove bound.AppId |> ignore
                        return Ok(bound, false)
                    | _ -> return Ok(a, false)
                | None ->
                    match! withComponent (fun t -> client.QueryAuth(t, code)) with
                    | Error e -> return Error e
                    | Ok r ->
                        let now = clock.GetUtcNow()
                        let! existing = store.GetAuthorizer r.AuthorizerAppId

                        let! remembered =
                            match preAuthCode with
                            | Some p -> store.GetValue(tenantOfPreAuthKey p)
                            | None -> Task.FromResult None

                        let boundTenant =
                            tenant
                            |> Option.orElse (remembered |> Option.map TenantId)
                            |> Option.orElse (existing |> Option.bind (fun e -> e.Tenant))

                        let record =
                            {
                                AppId = r.AuthorizerAppId
                                Tenant = boundTenant
                                Status = Authorized
                                StatusReason = None
                                FuncIds = r.FuncIds
                                Profile = existing |> Option.bind (fun e -> e.Profile)
                                RefreshToken =
                                    r.RefreshToken
                                    |> Option.orElse (existing |> Option.bind (fun e -> e.RefreshToken))
                                AccessToken = r.AccessToken |> Option.map (fun (t, exp) -> Expiring.issued now exp t)
                                AuthorizedAt = now
                                UpdatedAt = now
                            }

                        do! store.SaveAuthorizer record
                        directory.TryRemove record.AppId |> ignore
                        do! store.PutValue(exchangedCodeKey code, Ids.authorizerAppId r.AuthorizerAppId, false)

                        match record.AccessToken with
                        | Some t -> cache[record.AppId] <- t
                        | None -> cache.TryRemove record.AppId |> ignore

                        retryNotBefore.TryRemove record.AppId |> ignore

                        do!
                            event
                                "authorized"
                                record.AppId
                                (boundTenant |> Option.map Ids.tenant |> Option.defaultValue "")

                        do! fetchProfile record.AppId
                        let! saved = store.GetAuthorizer record.AppId
                        return Ok(defaultArg saved record, true)
            finally
                completion.Release() |> ignore
        }

    /// authorized / updateauthorized / unauthorized / notify_third_fasteregister (facts §1.2, §1.3).
    member this.HandlePush(push: Wire.ComponentPush) : Task =
        task {
            match push with
            | Wire.AuthorizedPushed p
            | Wire.UpdateAuthorizedPushed p ->
                do! store.PutValue(latestCodeKey p.AuthorizerAppId, Ids.authorizationCode p.Code, true)

                match! this.Complete(p.Code, None, p.PreAuthCode) with
                | Ok _ -> ()
                | Error e ->
                    // The code is stored; answering WeChat is not held up by a failed exchange.
                    logger.LogWarning(
                        "authorization push: api_query_auth failed: {Error}",
                        describeAuthorizationError e
                    )

                    do! event "query_auth_failed" p.AuthorizerAppId (describeAuthorizationError e)
            | Wire.UnauthorizedPushed(appid, _) ->
                match! store.GetAuthorizer appid with
                | Some _ ->
                    do! store.SetAuthorizerStatus(appid, Revoked, Some "unauthorized push", clock.GetUtcNow())
                    cache.TryRemove appid |> ignore
                | None -> ()

                do! event "unauthorized" appid ""
            | Wire.FastRegisterPushed f ->
                let subject = AuthorizerAppId(defaultArg f.AppId "")
                do! event "fast_register" subject $"status {f.Status}: {f.Message}"

                match f.Status, f.AuthCode with
                | 0, Some code ->
                    match! this.Complete(code, None, None) with
                    | Ok _ -> ()
                    | Error e ->
                        logger.LogWarning("fast register: api_query_auth failed: {Error}", describeAuthorizationError e)
                | _ -> ()
            | Wire.TicketPushed _
            | Wire.UnknownInfoType _ -> ()
        }

    /// The authorizer's token: from memory while fresh, else refreshed once across instances.
    member _.GetToken(appid: AuthorizerAppId) : Task<Result<Expiring<AuthorizerAccessToken>, AuthorizerTokenError>> =
        match cache.TryGetValue appid with
        | true, t when not (Expiring.isDue (marginFor appid) (clock.GetUtcNow()) t) -> Task.FromResult(Ok t)
        | _ -> obtain appid false

    /// An operator's explicit refresh, even when the token is not due.
    member _.ForceRefresh(appid: AuthorizerAppId) = obtain appid true

    /// WeChat rejected `failed`: forget it here, and in the store only while it is still current there.
    member _.Invalidate(appid: AuthorizerAppId, failed: AuthorizerAccessToken) =
        task {
            match cache.TryGetValue appid with
            | true, t when t.Token = failed -> cache.TryRemove appid |> ignore
            | _ -> ()

            return! store.InvalidateAuthorizerToken(appid, failed)
        }

    /// Imports every authorizer and refresh token from api_get_authorizer_list: the way back after a
    /// lost database. Known accounts get a changed refresh token; unknown ones are created.
    member _.Sync() =
        task {
            match! listAll () with
            | Error e -> return Error e
            | Ok listed ->
                let mutable imported = 0
                let mutable updated = 0

                for l in listed do
                    let now = clock.GetUtcNow()
                    let! existing = store.GetAuthorizer l.AppId

                    match existing, l.RefreshToken with
                    | None, _ ->
                        let! added =
                            store.AddAuthorizerIfAbsent
                                {
                                    AppId = l.AppId
                                    Tenant = None
                                    Status =
                                        if l.RefreshToken.IsSome then
                                            Authorized
                                        else
                                            NeedsReauthorization
                                    StatusReason =
                                        if l.RefreshToken.IsSome then
                                            None
                                        else
                                            Some "listed without a refresh token"
                                    FuncIds = []
                                    Profile = None
                                    RefreshToken = l.RefreshToken
                                    AccessToken = None
                                    AuthorizedAt =
                                        if l.AuthTime > 0L then
                                            DateTimeOffset.FromUnixTimeSeconds l.AuthTime
                                        else
                                            now
                                    UpdatedAt = now
                                }

                        // An authorization stored meanwhile (here or on another instance) wins.
                        if added then
                            imported <- imported + 1
                            do! fetchProfile l.AppId
                    | Some a, Some r when a.RefreshToken <> Some r || a.Status <> Authorized ->
                        do!
                            store.SaveAuthorizer
                                { a with
                                    RefreshToken = Some r
                                    Status = Authorized
                                    StatusReason = None
                                    UpdatedAt = now
                                }

                        cache.TryRemove l.AppId |> ignore
                        updated <- updated + 1
                    | Some _, _ -> ()

                directory.Clear()

                do!
                    store.AppendEvent
                        {
                            Kind = "sync"
                            Subject = ""
                            Detail = $"{listed.Length} listed, {imported} imported, {updated} updated"
                            At = clock.GetUtcNow()
                        }

                return
                    Ok
                        {
                            Total = listed.Length
                            Imported = imported
                            Updated = updated
                        }
        }

    /// One scheduler pass: refresh every token that is due, a few at a time.
    member this.RefreshDue(concurrency: int) =
        task {
            let now = clock.GetUtcNow()
            // Candidates within the widest jittered margin; GetToken refreshes only those really due.
            let! due = store.DueAuthorizers(now + margin + maxJitter, 500)

            use throttle = new SemaphoreSlim(max 1 concurrency)

            let work (appid: AuthorizerAppId) =
                task {
                    do! throttle.WaitAsync()

                    try
                        try
                            let! _ = this.GetToken appid
                            ()
                        with ex ->
                            logger.LogError(ex, "refresh of {AppId} failed", Ids.authorizerAppId appid)
                    finally
                        throttle.Release() |> ignore
                }

            let! _ = due |> List.map work |> Task.WhenAll
            return due.Length
        }

/// Keeps authorizer tokens fresh in the background; at start, an empty store is filled from
/// api_get_authorizer_list (as soon as a component token is available).
type AuthorizerRefresher
    (service: AuthorizerService, store: IStore, options: GatewayOptions, logger: ILogger<AuthorizerRefresher>) =
    inherit BackgroundService()

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            let mutable recovered = false

            while not stopping.IsCancellationRequested do
                try
                    if not recovered then
                        let! count = store.CountAuthorizers()

                        if count > 0 then
                            recovered <- true
                        else
                            match! service.Sync() with
                            | Ok report ->
                                recovered <- true

                                if report.Total > 0 then
                                    logger.LogInformation(
                                        "store had no authorizers; imported {Count} from api_get_authorizer_list",
                                        report.Imported
                                    )
                            | Error _ -> ()

                    let! _ = service.RefreshDue 4
                    ()
                with ex ->
                    logger.LogError(ex, "authorizer refresh pass failed")

                try
                    do! Task.Delay(options.CheckInterval, stopping)
                with :? OperationCanceledException ->
                    ()
        }

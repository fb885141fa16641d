/// Authorized accounts: the authorization flow (links, callback, pushes), the directory the message
/// path asks, the tokens (kept by AuthorizerTokens), and recovery of the whole list after a lost
/// database.
module WeChatFs.Authorizers

open System
open System.Collections.Concurrent
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon
open WeChatFs.AuthorizerTokens

/// The key of the latest AuthorizationCode pushed for an account, for readers of the value table
/// (the store's LatestCode reads the same).
let latestCodeKey appid = ComponentRows.latestCodeKey appid

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
    let tokens = AuthorizerTokens(options, store, client, components, clock, logger)

    let completion = new SemaphoreSlim(1, 1)
    // Released by an import that brought accounts: wakes the refresher (AuthorizerRefresher).
    let arrived = new SemaphoreSlim(0, 1)
    // appid → (when read, tenant if the account is known): the message path asks on every push.
    let directory =
        ConcurrentDictionary<AuthorizerAppId, DateTimeOffset * TenantId option option>()

    let directoryTtl = TimeSpan.FromSeconds 10.
    let event = appendEvent store clock
    let withComponent call = withComponent components call
    let listAll () = listAll components client

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

                do! store.RememberPreAuthTenant(code, tenant)

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
    /// stored before anything is acknowledged; the profile follows. The redirect and the push of one
    /// authorization may reach two instances at once, so the exchange runs under a store lease named
    /// after the code: WeChat issues one token, and the other instance binds to what the first stored.
    member _.Complete(code: AuthorizationCode, tenant: TenantId option, preAuthCode: PreAuthCode option) =
        // The same code again (a reload, or the push after the redirect): bind, don't exchange.
        let bind (a: Authorizer) =
            task {
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
            }

        let exchangedBefore () =
            task {
                match! store.ExchangedCode code with
                | Some appid -> return! store.GetAuthorizer appid
                | None -> return None
            }

        let exchange () =
            task {
                match! withComponent (fun t -> client.QueryAuth(t, code)) with
                | Error e -> return Error e
                | Ok r ->
                    let now = clock.GetUtcNow()
                    let! existing = store.GetAuthorizer r.AuthorizerAppId

                    let! remembered =
                        match preAuthCode with
                        | Some p -> store.PreAuthTenant p
                        | None -> Task.FromResult None

                    let boundTenant =
                        tenant
                        |> Option.orElse remembered
                        |> Option.orElse (existing |> Option.bind (fun e -> e.Tenant))

                    let accessToken, refreshToken =
                        Decisions.tokensAfterExchange
                            (r.AccessToken |> Option.map (fun (t, exp) -> Expiring.issued now exp t), r.RefreshToken)
                            (existing |> Option.bind (fun e -> e.AccessToken),
                             existing |> Option.bind (fun e -> e.RefreshToken))

                    let record =
                        {
                            AppId = r.AuthorizerAppId
                            Tenant = boundTenant
                            Status = Authorized
                            StatusReason = None
                            FuncIds = r.FuncIds
                            Profile = existing |> Option.bind (fun e -> e.Profile)
                            RefreshToken = refreshToken
                            AccessToken = accessToken
                            AuthorizedAt = now
                            UpdatedAt = now
                        }

                    do! store.SaveAuthorizer record
                    directory.TryRemove record.AppId |> ignore
                    do! store.RecordExchangedCode(code, r.AuthorizerAppId)

                    tokens.Remember(record.AppId, record.AccessToken)

                    do! event "authorized" record.AppId (boundTenant |> Option.map Ids.tenant |> Option.defaultValue "")

                    do! fetchProfile record.AppId
                    let! saved = store.GetAuthorizer record.AppId
                    return Ok(defaultArg saved record, true)
            }

        // Exchanged already, or exchanged here under the lease, or exchanged by the instance holding
        // the lease (polled until the lease time runs out; a holder that failed frees the lease).
        let underLease () =
            task {
                let lease = ComponentRows.exchangeLeaseName code
                let deadline = clock.GetUtcNow() + options.RefreshLease
                let mutable result = None

                while result.IsNone do
                    match! exchangedBefore () with
                    | Some a ->
                        let! bound = bind a
                        result <- Some bound
                    | None ->
                        let now = clock.GetUtcNow()

                        let! outcome =
                            Leases.run store lease options.InstanceId now (now + options.RefreshLease) (fun () ->
                                task {
                                    // Re-read under the lease: the holder before may have just finished.
                                    match! exchangedBefore () with
                                    | Some a -> return! bind a
                                    | None -> return! exchange ()
                                })

                        match outcome with
                        | Some r -> result <- Some r
                        | None when clock.GetUtcNow() >= deadline -> result <- Some(Error ExchangeBusy)
                        | None -> do! Task.Delay 50

                return result.Value
            }

        task {
            do! completion.WaitAsync()

            try
                return! underLease ()
            finally
                completion.Release() |> ignore
        }

    /// authorized / updateauthorized / unauthorized / notify_third_fasteregister (facts §1.2, §1.3).
    member this.HandlePush(push: Wire.ComponentPush) : Task =
        task {
            match push with
            | Wire.AuthorizedPushed p
            | Wire.UpdateAuthorizedPushed p ->
                do! store.SaveLatestCode(p.AuthorizerAppId, p.Code)

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
                | Some _ -> do! tokens.MarkUnusable(appid, Revoked, "unauthorized push", clock.GetUtcNow())
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
        tokens.Get appid

    /// An operator's explicit refresh, even when the token is not due.
    member _.ForceRefresh(appid: AuthorizerAppId) = tokens.Force appid

    /// WeChat rejected `failed`: forget it here, and in the store only while it is still current there.
    member _.Invalidate(appid: AuthorizerAppId, failed: AuthorizerAccessToken) = tokens.Invalidate(appid, failed)

    /// Resolves when an import brought accounts (their first tokens are wanted now, not at the next
    /// check), or after `timeout`.
    member _.WaitForAccounts(timeout: TimeSpan, stopping: CancellationToken) : Task =
        arrived.WaitAsync(timeout, stopping)

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

                        tokens.Forget l.AppId
                        updated <- updated + 1
                    | Some _, _ -> ()

                directory.Clear()

                if imported + updated > 0 && arrived.CurrentCount = 0 then
                    try
                        arrived.Release() |> ignore
                    with :? SemaphoreFullException ->
                        ()

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
    member _.RefreshDue(concurrency: int) = tokens.RefreshDue concurrency

    member _.PreloadTokens(stopping: CancellationToken) = tokens.Preload(1000, stopping)

    /// Pacing: the `count` earliest-expiring tokens refreshed now.
    member _.RefreshEarliest(count: int, concurrency: int) =
        tokens.RefreshEarliest(count, concurrency)

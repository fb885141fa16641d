/// What the simulated WeChat remembers: tickets, tokens, codes, accounts and their authorizations,
/// with the lifetimes and errors of the facts file. One lock guards it all; it is a fake server.
module WeChatFs.Simulator.SimState

open System
open System.Collections.Generic
open System.Security.Cryptography
open WeChatFs.Simulator.SimModel

type SimState(options: SimulatorOptions) =
    let sync = obj ()
    let mutable offset = TimeSpan.Zero
    let mutable eventUrl = options.EventUrl
    let mutable messageUrlTemplate = options.MessageUrlTemplate
    let tickets = Dictionary<string, DateTimeOffset>()
    let componentTokens = List<IssuedToken>()
    let preAuthCodes = Dictionary<string, DateTimeOffset * bool>()
    let authCodes = Dictionary<string, AuthCode>()
    let authorizations = Dictionary<string, Authorization>()
    let counters = Dictionary<string, int>()
    let faults = Dictionary<string, Queue<Fault>>()
    let pushes = List<PushRecord>()
    let customMessages = List<CustomMessage>()
    let mutable pushOrder = PushBeforeRedirect
    let mutable fastRegistered = 0
    let mutable generated = 0

    let locked f = lock sync f

    // The two below are called with the lock held.

    /// A new authorization code for `appid`, good for AuthCodeLifetime.
    let issueCode (appid: string) (now: DateTimeOffset) =
        let code =
            {
                Code = newAuthCode ()
                AppId = appid
                ExpiresAt = now + options.AuthCodeLifetime
            }

        authCodes[code.Code] <- code
        code

    /// A first authorization of `acct`, with a new refresh token.
    let authorizeNew (acct: Account) (funcIds: int list) (now: DateTimeOffset) =
        authorizations[acct.AppId] <-
            {
                Account = acct
                Authorized = true
                FuncIds = funcIds
                RefreshToken = newRefreshToken ()
                PreviousRefreshToken = None
                RotateNext = false
                AuthTime = now
                Tokens = List<IssuedToken>()
            }

    member _.Options = options

    member _.Now() =
        DateTimeOffset.UtcNow + locked (fun () -> offset)

    member _.Advance(by: TimeSpan) =
        locked (fun () -> offset <- offset + by)

    member _.EventUrl = locked (fun () -> eventUrl)
    member _.SetEventUrl url = locked (fun () -> eventUrl <- url)
    member _.MessageUrlTemplate = locked (fun () -> messageUrlTemplate)

    member _.SetMessageUrlTemplate url =
        locked (fun () -> messageUrlTemplate <- url)

    member _.PushOrder = locked (fun () -> pushOrder)
    member _.SetPushOrder order = locked (fun () -> pushOrder <- order)

    // ---- counters and faults ----

    member _.Count(api: string) =
        locked (fun () ->
            match counters.TryGetValue api with
            | true, n -> counters[api] <- n + 1
            | _ -> counters[api] <- 1)

    member _.Calls() =
        locked (fun () -> counters |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq)

    member _.ResetCalls() = locked (fun () -> counters.Clear())

    member _.InjectFault(api: string, fault: Fault, times: int) =
        locked (fun () ->
            let q =
                match faults.TryGetValue api with
                | true, q -> q
                | _ ->
                    let q = Queue<Fault>()
                    faults[api] <- q
                    q

            for _ in 1..times do
                q.Enqueue fault)

    member _.NextFault(api: string) =
        locked (fun () ->
            match faults.TryGetValue api with
            | true, q when q.Count > 0 -> Some(q.Dequeue())
            | _ -> None)

    // ---- tickets and the component token ----

    member this.IssueTicket() =
        let t = newTicket ()
        let now = this.Now()
        locked (fun () -> tickets[t] <- now)
        t

    /// api_component_token's checks (facts §3.1): appid, secret, then the ticket (61006 unknown,
    /// 61005 older than 12 h). A new token starts the 5-minute overlap of the one before.
    member this.ComponentToken(appid: string, secret: string, ticket: string) =
        let now = this.Now()

        locked (fun () ->
            if appid <> options.ComponentAppId then
                Error 61011
            elif String.IsNullOrEmpty secret then
                Error 41004
            elif secret <> options.ComponentAppSecret then
                Error 40125
            else
                match tickets.TryGetValue ticket with
                | false, _ -> Error 61006
                | true, issued when now - issued >= TimeSpan.FromHours 12. -> Error 61005
                | true, _ -> Ok(issueReplacing componentTokens now (newComponentToken ())))

    member this.CheckComponentToken(value: string) =
        let now = this.Now()

        if String.IsNullOrEmpty value then
            Error 41001
        else
            locked (fun () -> componentTokens |> Seq.tryFind (fun t -> t.Value = value) |> checkToken now)

    member _.ComponentTokens() =
        locked (fun () -> List.ofSeq componentTokens)

    // ---- authorization ----

    member this.CreatePreAuthCode() =
        let code = newPreAuthCode ()
        let expires = this.Now() + options.PreAuthCodeLifetime
        locked (fun () -> preAuthCodes[code] <- (expires, false))
        code, int options.PreAuthCodeLifetime.TotalSeconds

    /// Ok when the code exists, is unused and unexpired; the reason otherwise (for the page).
    member this.CheckPreAuthCode(code: string) =
        let now = this.Now()

        locked (fun () ->
            match preAuthCodes.TryGetValue code with
            | false, _ -> Error "unknown pre_auth_code"
            | true, (_, true) -> Error "this pre_auth_code has already been used"
            | true, (expires, _) when now >= expires -> Error "this pre_auth_code has expired"
            | true, _ -> Ok())

    /// The admin confirmed on the page: the code is spent, the account (re)authorized with a new
    /// refresh token (re-authorization invalidates the previous one, facts §3.3). Returns the auth code
    /// and whether this was an update of an existing authorization.
    member this.Confirm(preAuthCode: string, appid: string, funcIds: int list) =
        let now = this.Now()

        match this.CheckPreAuthCode preAuthCode with
        | Error e -> Error e
        | Ok() ->
            match catalog |> List.tryFind (fun a -> a.AppId = appid) with
            | None -> Error "unknown account"
            | Some acct ->
                locked (fun () ->
                    let expires, _ = preAuthCodes[preAuthCode]
                    preAuthCodes[preAuthCode] <- (expires, true)

                    let existing =
                        match authorizations.TryGetValue appid with
                        | true, a -> Some a
                        | _ -> None

                    let update = existing |> Option.exists (fun a -> a.Authorized)

                    match existing with
                    | Some a ->
                        a.Authorized <- true
                        a.FuncIds <- funcIds
                        a.RefreshToken <- newRefreshToken ()
                        a.PreviousRefreshToken <- None
                        a.AuthTime <- now
                    | None -> authorizeNew acct funcIds now

                    Ok(issueCode appid now, update))

    /// A new authorization code for an account that is already authorized (the release check's
    /// `QUERY_AUTH_CODE:$query_auth_code$`, facts §6).
    member this.NewAuthCode(appid: string) =
        let now = this.Now()

        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a when a.Authorized -> Some(issueCode appid now)
            | _ -> None)

    /// fastregisterweapp succeeded (facts §1.3): a new mini program for the company, authorized to this
    /// platform; the auth code goes out in the notify_third_fasteregister push. The facts do not say
    /// which permissions it comes with; the simulator grants those its page checks by default. Until
    /// it is given a name of its own, the new account goes by the company's.
    member this.FastRegister(company: string) =
        let now = this.Now()

        locked (fun () ->
            fastRegistered <- fastRegistered + 1
            let n = fastRegistered
            // 18-character appids and 16-character user names, like the others.
            let acct =
                account $"wxsimfr{n:D11}" $"gh_5a1fastr{n:D5}" company company MiniProgram 0 0

            authorizeNew acct (defaultPermissions MiniProgram) now
            issueCode acct.AppId now)

    /// `count` new mini programs authorized with `funcIds` at once, for tests and benchmarks that need
    /// many (appids wxsimgen + 10 digits). No push: the gateway learns of them through
    /// api_get_authorizer_list.
    member this.AddMiniPrograms(count: int, funcIds: int list) =
        let now = this.Now()

        locked (fun () ->
            [
                for _ in 1..count do
                    generated <- generated + 1
                    let n = generated

                    let acct =
                        account
                            $"wxsimgen{n:D10}"
                            $"gh_5a1gen{n:D7}"
                            $"Generated mini {n}"
                            "Generated Co., Ltd."
                            MiniProgram
                            0
                            0

                    authorizeNew acct funcIds now
                    acct.AppId
            ])

    member private this.IssueAuthorizerToken(a: Authorization) =
        issueReplacing a.Tokens (this.Now()) (newAuthorizerToken ())

    /// api_query_auth (facts §3.3): 61009 unknown code, 61010 expired. The same code may be exchanged
    /// again within its lifetime (it arrives on the redirect and in the push); each exchange issues a
    /// new access token with the same refresh token.
    member this.QueryAuth(code: string) =
        let now = this.Now()

        locked (fun () ->
            match authCodes.TryGetValue code with
            | false, _ -> Error 61009
            | true, c when now >= c.ExpiresAt -> Error 61010
            | true, c ->
                match authorizations.TryGetValue c.AppId with
                | true, a when a.Authorized -> Ok(a, this.IssueAuthorizerToken a)
                | _ -> Error 61003)

    /// api_authorizer_token (facts §3.4): 61003 when no longer authorized, 61023 for a refresh token
    /// that is not the current one (nor a rotated one inside its grace).
    member this.AuthorizerToken(appid: string, refreshToken: string) =
        let now = this.Now()

        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a when a.Authorized ->
                let inGrace =
                    match a.PreviousRefreshToken with
                    | Some(old, until) -> old = refreshToken && now < until
                    | None -> false

                if refreshToken <> a.RefreshToken && not inGrace then
                    Error 61023
                else
                    if a.RotateNext then
                        a.PreviousRefreshToken <- Some(a.RefreshToken, now + overlap)
                        a.RefreshToken <- newRefreshToken ()
                        a.RotateNext <- false

                    Ok(a, this.IssueAuthorizerToken a)
            | _ -> Error 61003)

    member _.Authorization(appid: string) =
        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a -> Some a
            | _ -> None)

    member _.Authorizations() =
        locked (fun () -> authorizations.Values |> List.ofSeq)

    /// Which authorizer a token acts for, or the errcode (facts §12).
    member this.CheckAuthorizerToken(value: string) =
        let now = this.Now()

        if String.IsNullOrEmpty value then
            Error 41001
        else
            locked (fun () ->
                authorizations.Values
                |> Seq.tryPick (fun a ->
                    a.Tokens |> Seq.tryFind (fun t -> t.Value = value) |> Option.map (fun t -> a, t))
                |> function
                    | None -> Error 40001
                    | Some(a, t) ->
                        match checkToken now (Some t) with
                        | Error e -> Error e
                        | Ok() when not a.Authorized -> Error 61003
                        | Ok() -> Ok a)

    member _.Revoke(appid: string) =
        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a when a.Authorized ->
                a.Authorized <- false
                a.Tokens.Clear()
                true
            | _ -> false)

    /// The stored refresh token stops working and the account's current one changes, so that only
    /// api_get_authorizer_list knows the working one (the 61023 recovery path, facts §3.4, §3.8).
    member _.InvalidateRefreshToken(appid: string) =
        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a ->
                a.RefreshToken <- newRefreshToken ()
                a.PreviousRefreshToken <- None
                true
            | _ -> false)

    member _.RotateRefreshTokenNext(appid: string) =
        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a ->
                a.RotateNext <- true
                true
            | _ -> false)

    member this.ExpireAccessTokens(appid: string) =
        let now = this.Now()

        locked (fun () ->
            match authorizations.TryGetValue appid with
            | true, a ->
                let expired =
                    a.Tokens
                    |> Seq.map (fun t ->
                        { t with
                            ExpiresAt = now.AddSeconds -1.
                        })
                    |> List.ofSeq

                a.Tokens.Clear()
                a.Tokens.AddRange expired
                true
            | _ -> false)

    // ---- records ----

    member _.RecordPush(p: PushRecord) = locked (fun () -> pushes.Add p)
    member _.Pushes() = locked (fun () -> List.ofSeq pushes)
    member _.RecordCustomMessage(m: CustomMessage) = locked (fun () -> customMessages.Add m)

    member _.CustomMessages() =
        locked (fun () -> List.ofSeq customMessages)

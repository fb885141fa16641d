/// The pure core: ids and token roles as types, and the decisions about tickets and tokens.
/// Nothing here reads a clock, draws randomness or does IO: callers pass `now` and the stored state in.
module WeChatFs.Domain

open System

/// The third-party platform's own appid (component_appid).
type ComponentAppId = ComponentAppId of string

/// The appid of an official account or mini program that authorized the platform.
type AuthorizerAppId = AuthorizerAppId of string

/// The shop (tenant) an authorizer is bound to; chosen by the business system.
type TenantId = TenantId of string

/// component_verify_ticket, pushed by WeChat every 10 minutes, valid 12 hours.
type VerifyTicket = VerifyTicket of string

/// component_access_token: the platform's own token, for /cgi-bin/component/* calls.
type ComponentAccessToken = ComponentAccessToken of string

/// authorizer_access_token: acts for one authorizer; never valid where a component token belongs.
type AuthorizerAccessToken = AuthorizerAccessToken of string

/// authorizer_refresh_token: the one credential that, once lost, forces the merchant to re-authorize.
type AuthorizerRefreshToken = AuthorizerRefreshToken of string

/// pre_auth_code: single use, starts one authorization page.
type PreAuthCode = PreAuthCode of string

/// authorization_code (auth_code / AuthorizationCode): exchanged once with api_query_auth.
type AuthorizationCode = AuthorizationCode of string

/// A follower's openid: one person as one official account or mini program knows them (differs per account).
type OpenId = OpenId of string

/// The name of a web-OAuth route (funcKey): the last segment of /wechat/oauth/{authorizerAppid}/{funcKey}.
type FuncKey = FuncKey of string

/// The gateway's own id for one red packet (not WeChat's mch_billno): the key of /api/redpacks/{id}.
type RedPackId = RedPackId of string

module Ids =
    let componentAppId (ComponentAppId v) = v
    let authorizerAppId (AuthorizerAppId v) = v
    let tenant (TenantId v) = v
    let ticket (VerifyTicket v) = v
    let componentToken (ComponentAccessToken v) = v
    let authorizerToken (AuthorizerAccessToken v) = v
    let refreshToken (AuthorizerRefreshToken v) = v
    let preAuthCode (PreAuthCode v) = v
    let authorizationCode (AuthorizationCode v) = v
    let redPackId (RedPackId v) = v
    let openId (OpenId v) = v
    let funcKey (FuncKey v) = v

/// A token and the instant it stops working, computed once from expires_in when it was issued.
type Expiring<'token> =
    {
        Token: 'token
        ExpiresAt: DateTimeOffset
    }

module Expiring =
    /// WeChat answers expires_in seconds; the instant is fixed at the time the answer arrived.
    let issued (now: DateTimeOffset) (expiresInSeconds: int) token =
        {
            Token = token
            ExpiresAt = now.AddSeconds(float (max 0 expiresInSeconds))
        }

    let isUsable (now: DateTimeOffset) (t: Expiring<_>) = now < t.ExpiresAt

    /// Due for refresh once inside the margin before expiry.
    let isDue (margin: TimeSpan) (now: DateTimeOffset) (t: Expiring<_>) = now >= t.ExpiresAt - margin

/// One retry schedule for everything that retries (token refreshes, webhook deliveries): the first
/// delay after the first failure, doubled after each further one, never more than the cap.
type Backoff = { First: TimeSpan; Cap: TimeSpan }

module Backoff =
    /// The component token: 2 s doubling to at most a minute, so a WeChat outage costs few calls
    /// while a still-valid token keeps being served.
    let componentToken =
        {
            First = TimeSpan.FromSeconds 2.
            Cap = TimeSpan.FromMinutes 1.
        }

    /// Authorizer tokens, per account: 2 s doubling to at most five minutes.
    let authorizerToken =
        {
            First = TimeSpan.FromSeconds 2.
            Cap = TimeSpan.FromMinutes 5.
        }

    /// The wait after `failures` consecutive failures (1 = the first); none before any failure.
    let delay (b: Backoff) (failures: int) =
        if failures <= 0 then
            TimeSpan.Zero
        else
            let factor = Math.Pow(2.0, float (min (failures - 1) 40))
            TimeSpan.FromMilliseconds(min b.Cap.TotalMilliseconds (b.First.TotalMilliseconds * factor))

type ReceivedTicket =
    {
        Ticket: VerifyTicket
        ReceivedAt: DateTimeOffset
    }

type TokenPolicy =
    {
        /// Refresh this long before expiry (WeChat suggests ~1h50m of a 2 h token: 10 minutes).
        RefreshMargin: TimeSpan
        /// A ticket older than this is refused by WeChat with 61005.
        TicketLifetime: TimeSpan
    }

module TokenPolicy =
    let defaults =
        {
            RefreshMargin = TimeSpan.FromMinutes 10.
            TicketLifetime = TimeSpan.FromHours 12.
        }

/// What to do when the component token is needed now.
type ComponentDecision =
    /// The stored token is good and not yet due.
    | UseToken of Expiring<ComponentAccessToken>
    /// Fetch a new token with this ticket; `fallback` is a still-usable token to serve if the fetch fails.
    | Refresh of ticket: ReceivedTicket * fallback: Expiring<ComponentAccessToken> option
    /// No usable token and no ticket young enough to get one: wait for WeChat's next push.
    | WaitForTicket

/// Total over every combination of stored ticket and token; `now` is the caller's clock reading.
let decideComponent (policy: TokenPolicy) (now: DateTimeOffset) (ticket: ReceivedTicket option) token =
    let freshTicket =
        ticket |> Option.filter (fun t -> now - t.ReceivedAt < policy.TicketLifetime)

    let usable = token |> Option.filter (Expiring.isUsable now)

    match usable, freshTicket with
    | Some t, _ when not (Expiring.isDue policy.RefreshMargin now t) -> UseToken t
    | _, Some tk -> Refresh(tk, usable)
    | Some t, None -> UseToken t
    | None, None -> WaitForTicket

/// At start: ask WeChat to (re)start pushing when no ticket younger than its lifetime is stored.
let needsTicketPushStart (policy: TokenPolicy) (now: DateTimeOffset) (ticket: ReceivedTicket option) =
    match ticket with
    | Some t -> now - t.ReceivedAt >= policy.TicketLifetime
    | None -> true

/// Of two tickets, the one received last wins; a repeated push of the same ticket changes nothing.
let newerTicket (stored: ReceivedTicket option) (incoming: ReceivedTicket) =
    match stored with
    | Some s when s.ReceivedAt > incoming.ReceivedAt -> s
    | _ -> incoming

/// A token that WeChat rejected is invalidated only if it is still the current one: another request
/// (or instance) may already have replaced it, and throwing that replacement away would start a storm.
let shouldInvalidate (failed: 'token) (current: Expiring<'token> option) =
    match current with
    | Some c -> c.Token = failed
    | None -> false

/// How a WeChat errcode bears on the token or ticket that was used.
type FailureKind =
    /// 40001 / 40014 / 42001: the token used is invalid or expired; refresh it and retry once.
    | TokenRejected
    /// 61005 / 61006: the ticket is expired or invalid; wait for the next push.
    | TicketRejected
    /// -1 or a transport problem: retry later with backoff.
    | Transient
    /// 61023: the refresh token is invalid; reload it from api_get_authorizer_list.
    | RefreshTokenRejected
    /// 61003: the account no longer authorizes the platform.
    | AuthorizationRevoked
    /// Everything else: a configuration or request problem that retrying does not fix.
    | Permanent

let classifyErrcode (code: int) =
    match code with
    | 40001
    | 40014
    | 42001 -> TokenRejected
    | 61005
    | 61006 -> TicketRejected
    | -1 -> Transient
    | 61023 -> RefreshTokenRejected
    | 61003 -> AuthorizationRevoked
    | _ -> Permanent

/// Where an authorized account stands.
type AuthorizerStatus =
    | Authorized
    /// The merchant withdrew the authorization (unauthorized push, or 61003): history kept, tokens gone.
    | Revoked
    /// The refresh token was refused and none could be recovered: the merchant must authorize again.
    | NeedsReauthorization

module AuthorizerStatus =
    let toText =
        function
        | Authorized -> "authorized"
        | Revoked -> "revoked"
        | NeedsReauthorization -> "needs_reauthorization"

    let ofText =
        function
        | "authorized" -> Some Authorized
        | "revoked" -> Some Revoked
        | "needs_reauthorization" -> Some NeedsReauthorization
        | _ -> None

type AuthorizerKind =
    | OfficialAccount
    | MiniProgram

module AuthorizerKind =
    let toText =
        function
        | OfficialAccount -> "official_account"
        | MiniProgram -> "mini_program"

    let ofText =
        function
        | "mini_program" -> MiniProgram
        | _ -> OfficialAccount

/// What api_get_authorizer_info says about an account (public profile, no secrets).
type AuthorizerProfile =
    {
        NickName: string
        HeadImg: string
        UserName: string
        PrincipalName: string
        ServiceTypeId: int
        VerifyTypeId: int
        Kind: AuthorizerKind
    }

type Authorizer =
    {
        AppId: AuthorizerAppId
        Tenant: TenantId option
        Status: AuthorizerStatus
        StatusReason: string option
        FuncIds: int list
        Profile: AuthorizerProfile option
        RefreshToken: AuthorizerRefreshToken option
        AccessToken: Expiring<AuthorizerAccessToken> option
        AuthorizedAt: DateTimeOffset
        UpdatedAt: DateTimeOffset
    }

/// What to do when an authorizer's token is needed now.
type AuthorizerDecision =
    | UseAuthorizerToken of Expiring<AuthorizerAccessToken>
    | RefreshAuthorizer of AuthorizerRefreshToken * fallback: Expiring<AuthorizerAccessToken> option
    /// Revoked, needs re-authorization, or no refresh token at all: no call to WeChat can help.
    | Unavailable of AuthorizerStatus * reason: string

let decideAuthorizer (margin: TimeSpan) (now: DateTimeOffset) (a: Authorizer) =
    let usable = a.AccessToken |> Option.filter (Expiring.isUsable now)

    match a.Status, usable, a.RefreshToken with
    | (Revoked | NeedsReauthorization), _, _ -> Unavailable(a.Status, defaultArg a.StatusReason "")
    | Authorized, Some t, _ when not (Expiring.isDue margin now t) -> UseAuthorizerToken t
    | Authorized, _, Some r -> RefreshAuthorizer(r, usable)
    | Authorized, Some t, None -> UseAuthorizerToken t
    | Authorized, None, None -> Unavailable(NeedsReauthorization, "no refresh token stored")

/// What a start-up preload keeps of a stored token: the one decideAuthorizer would serve without a
/// refresh (an authorized account's usable token, not yet due), read without the refresh token.
let preloadableToken
    (margin: TimeSpan)
    (now: DateTimeOffset)
    (status: AuthorizerStatus)
    (token: Expiring<AuthorizerAccessToken> option)
    =
    match status, token |> Option.filter (Expiring.isUsable now) with
    | Authorized, Some t when not (Expiring.isDue margin now t) -> Some t
    | _ -> None

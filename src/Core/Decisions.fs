/// The token services' decisions as total functions of (state, input, now): which ticket may be
/// offered to WeChat, whether a refresh may go ahead (force, retry-not-before), how a failure moves
/// the retry state, and what an authorizer's refresh failure (61023, 61003, the rest) leads to.
/// The services load the state, call these, and carry out what they return; nothing here reads a
/// clock or does I/O, so each rule is property-tested over generated timelines.
module WeChatFs.Decisions

open System
open WeChatFs.Domain

// ---- tickets -------------------------------------------------------------------------------------

/// How a ticket WeChat refused is remembered: the instant it was received, in milliseconds.
let ticketMarker (t: ReceivedTicket) = t.ReceivedAt.ToUnixTimeMilliseconds()

/// The ticket to offer WeChat: the latest stored one, unless WeChat refused that very ticket
/// (61005/61006); then none until the next push replaces it.
let usableTicket (latest: ReceivedTicket option) (rejected: int64 option) =
    match latest, rejected with
    | Some t, Some r when r = ticketMarker t -> None
    | t, _ -> t

// ---- retries -------------------------------------------------------------------------------------

/// Consecutive failures of one refresh and the instant before which it is not tried again.
type RetryState =
    {
        Failures: int
        NotBefore: DateTimeOffset
    }

module RetryState =
    /// No failure since the last success.
    let clear =
        {
            Failures = 0
            NotBefore = DateTimeOffset.MinValue
        }

    /// One more failure at `now`: the next try waits the schedule's delay for that many failures.
    let failed (schedule: Backoff) (now: DateTimeOffset) (state: RetryState) =
        let failures = state.Failures + 1

        {
            Failures = failures
            NotBefore = now + Backoff.delay schedule failures
        }

/// Whether a due refresh may call WeChat now.
type Gate<'token> =
    /// Call WeChat.
    | Proceed
    /// Backing off after a failure: serve the still-usable token instead.
    | ServeFallback of 'token
    /// Backing off and nothing usable to serve: the caller hears "busy, try again shortly".
    | Busy

/// An operator's forced refresh always proceeds; otherwise a refresh waits out the backoff.
let gateRefresh (force: bool) (now: DateTimeOffset) (retry: RetryState) (fallback: 'token option) =
    if force || now >= retry.NotBefore then
        Proceed
    else
        match fallback with
        | Some t -> ServeFallback t
        | None -> Busy

// ---- authorizer refresh failures -----------------------------------------------------------------

/// What an authorizer's failed refresh leads to.
type AuthorizerFailureDecision =
    /// 61023 on the stored refresh token: reload it from api_get_authorizer_list (facts §3.4, §3.8).
    | RecoverFromList
    /// The account cannot be served until the merchant acts: record the status, reason and instant,
    /// drop the cached token and log the event.
    | SetStatus of status: AuthorizerStatus * reason: string * at: DateTimeOffset
    /// A failure retrying may fix: back off and serve the still-usable token if there is one.
    | BackOff

let private needsReauthorizationAfterRecovery =
    "61023: refresh token invalid, also the one from api_get_authorizer_list"

let private needsReauthorizationNoOther =
    "61023: refresh token invalid and api_get_authorizer_list had no other"

let private revokedReason = "61003: the account no longer authorizes the platform"

/// The decision for a refresh that WeChat answered with an error of `kind`; `recovering` = the
/// refresh token in use came from the authorizer list after a first 61023.
let onAuthorizerRefreshFailure (kind: FailureKind) (recovering: bool) (now: DateTimeOffset) =
    match kind with
    | RefreshTokenRejected when not recovering -> RecoverFromList
    | RefreshTokenRejected -> SetStatus(NeedsReauthorization, needsReauthorizationAfterRecovery, now)
    | AuthorizationRevoked -> SetStatus(Revoked, revokedReason, now)
    | Transient
    | TokenRejected
    | TicketRejected
    | Permanent -> BackOff

/// After a 61023, what the authorizer list offers.
type RecoveryDecision =
    /// A different refresh token is listed: try it once.
    | RetryWith of AuthorizerRefreshToken
    /// Nothing better is listed: the merchant must authorize again.
    | GiveUp of status: AuthorizerStatus * reason: string * at: DateTimeOffset

let onRecoveryListed (refused: AuthorizerRefreshToken) (listed: AuthorizerRefreshToken option) (now: DateTimeOffset) =
    match listed with
    | Some recovered when recovered <> refused -> RetryWith recovered
    | _ -> GiveUp(NeedsReauthorization, needsReauthorizationNoOther, now)

/// What an authorization's exchange stores for the account's tokens: its own, unless the store got
/// a token meanwhile that lasts longer. An import from api_get_authorizer_list at a start can race a
/// merchant's authorization and refresh the account while api_query_auth is answering; that later
/// token stays, with the refresh token it came with, rather than being written over by an older one.
let tokensAfterExchange
    (exchanged: Expiring<'token> option, exchangedRefresh: 'refresh option)
    (stored: Expiring<'token> option, storedRefresh: 'refresh option)
    =
    match exchanged, stored with
    | Some mine, Some later when later.ExpiresAt > mine.ExpiresAt ->
        stored, storedRefresh |> Option.orElse exchangedRefresh
    | _ -> exchanged, exchangedRefresh |> Option.orElse storedRefresh

/// Spreading the refreshes of many accounts evenly over a token's life. Tokens fetched together
/// (an import, a mass authorization, a restart after an outage) would all fall due together two
/// hours later, and again two hours after that: bursts of calls to WeChat and of store writes. Paced,
/// the earliest-expiring tokens are refreshed at the rate that goes once through every account per
/// cycle (the token's life less the refresh margin), so after one cycle the refreshes are as even
/// as the clock and no token is refreshed more often than once a cycle.
module Pacing =
    /// A token's life at WeChat (facts §13: expires_in 7200 for authorizer tokens).
    let tokenLife = TimeSpan.FromHours 2.

    /// How many tokens a pass refreshes ahead of their due time, and the fraction carried to the next
    /// pass: `accounts / cycle` a second over the time since the previous pass, less the `dueNow`
    /// tokens the pass has just refreshed because they were due (so the two together keep the
    /// rate). That time counts for at most two intervals, so a paused process or a clock step does
    /// not turn into a burst.
    let budget (accounts: int) (cycle: TimeSpan) (interval: TimeSpan) (elapsed: TimeSpan) (carry: float) (dueNow: int) =
        if accounts <= 0 || cycle <= TimeSpan.Zero then
            0, 0.
        else
            let counted = elapsed |> max TimeSpan.Zero |> min (interval + interval)

            let exact =
                float accounts * counted.TotalSeconds / cycle.TotalSeconds + max 0. carry

            let whole = floor exact
            max 0 (int whole - max 0 dueNow), exact - whole

/// Properties of the token services' decisions (Decisions.fs), over generated timelines: ticket
/// pushes, WeChat's answers to refreshes (each failure kind), clock steps and restarts, played
/// through the same decisions the services call.
module WeChatFs.Tests.DecisionsTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Domain
open WeChatFs.Decisions

let private policy = TokenPolicy.defaults

/// WeChat's answer to one component token refresh.
type Answer =
    /// A token valid for 11 + n minutes (always longer than the refresh margin).
    | Issued of lifetime: byte
    | Refused of FailureKind

/// One thing that happens on the timeline.
type Step =
    | Wait of minutes: byte
    | TicketPush
    /// The process restarts: what it held in memory (the retry state) is gone; the store stays.
    | Restart
    /// Someone needs the component token now.
    | Request

type Model =
    {
        Now: DateTimeOffset
        Ticket: ReceivedTicket option
        Rejected: int64 option
        Token: Expiring<ComponentAccessToken> option
        Retry: RetryState
        Pushes: int
        /// Each call to WeChat: when, the stored token and the ticket offered at that moment.
        Calls: (DateTimeOffset * Expiring<ComponentAccessToken> option * ReceivedTicket) list
        Served: (DateTimeOffset * Expiring<ComponentAccessToken>) list
        Answered: int
    }

let private start =
    {
        Now = t0
        Ticket = None
        Rejected = None
        Token = None
        Retry = RetryState.clear
        Pushes = 0
        Calls = []
        Served = []
        Answered = 0
    }

/// The component token service's request path, as the service runs it, with WeChat's answers
/// taken in turn from `answers`.
let private request (answers: Answer[]) (m: Model) =
    let serve t m =
        { m with
            Served = (m.Now, t) :: m.Served
        }

    match decideComponent policy m.Now (usableTicket m.Ticket m.Rejected) m.Token with
    | UseToken t -> serve t m
    | WaitForTicket -> m
    | Refresh(ticket, fallback) ->
        match gateRefresh false m.Now m.Retry fallback with
        | ServeFallback t -> serve t m
        | Busy -> m
        | Proceed ->
            let called =
                { m with
                    Calls = (m.Now, m.Token, ticket) :: m.Calls
                    Answered = m.Answered + 1
                }

            let orFallback m =
                match fallback with
                | Some t -> serve t m
                | None -> m

            match answers[m.Answered % answers.Length] with
            | Issued lifetime ->
                let token =
                    Expiring.issued m.Now ((11 + int lifetime) * 60) (ComponentAccessToken $"c{m.Answered}")

                serve
                    token
                    { called with
                        Token = Some token
                        Retry = RetryState.clear
                    }
            | Refused TicketRejected ->
                orFallback
                    { called with
                        Rejected = Some(ticketMarker ticket)
                    }
            | Refused _ ->
                orFallback
                    { called with
                        Retry = RetryState.failed Backoff.componentToken m.Now m.Retry
                    }

let private answersOf (answers: Answer list) =
    if answers.IsEmpty then
        [| Issued 100uy |]
    else
        Array.ofList answers

/// One step of the timeline.
let private stepOne (answers: Answer[]) (m: Model) step =
    match step with
    | Wait minutes ->
        { m with
            Now = m.Now.AddMinutes(float minutes)
        }
    | TicketPush ->
        let fresh =
            m.Token
            |> Option.exists (fun t -> not (Expiring.isDue policy.RefreshMargin m.Now t))

        { m with
            Ticket =
                Some
                    {
                        Ticket = VerifyTicket $"t{m.Pushes}"
                        ReceivedAt = m.Now.AddMilliseconds(float m.Pushes)
                    }
            Pushes = m.Pushes + 1
            // A new ticket ends the wait after a failure, unless a good token is held (OnTicketStored).
            Retry =
                if fresh then
                    m.Retry
                else
                    { m.Retry with
                        NotBefore = DateTimeOffset.MinValue
                    }
        }
    | Restart -> { m with Retry = RetryState.clear }
    | Request -> request answers m

let private play (answers: Answer list) (steps: Step list) =
    List.fold (stepOne (answersOf answers)) start steps

/// Every step holds `ok before after step`.
let private everyStep (answers: Answer list) (steps: Step list) ok =
    let answers = answersOf answers

    let rec go m steps =
        match steps with
        | [] -> true
        | step :: rest ->
            let next = stepOne answers m step
            ok m next step && go next rest

    go start steps

type private Recovery =
    | Recovered of AuthorizerRefreshToken
    | Ended of AuthorizerStatus
    | BackedOff

let tests =
    testList
        "Decisions"
        [
            // Two timelines worked by hand, so the properties below are known to see calls at all.
            test "a ticket brings a refresh; the token is served until due, then refreshed once" {
                let m =
                    play [ Issued 100uy ] [ TicketPush; Request; Wait 50uy; Request; Wait 60uy; Request; Request ]

                Expect.equal m.Calls.Length 2 "one refresh at the start, one when due (111 min token, 10 min margin)"
                Expect.equal m.Served.Length 4 "every request served"
            }

            test "after a transient failure the next request waits out the backoff" {
                let m =
                    play [ Refused Transient; Issued 100uy ] [ TicketPush; Request; Request; Wait 1uy; Request ]

                Expect.equal m.Calls.Length 2 "the second request is inside the 2 s backoff; the third is not"
                Expect.equal m.Retry RetryState.clear "a success clears the retry state"
            }

            testProp "never an expired token served" (fun (answers: Answer list, steps: Step list) ->
                (play answers steps).Served
                |> List.forall (fun (at, t) -> Expiring.isUsable at t))

            testProp "never two refreshes inside one due time" (fun (answers: Answer list, steps: Step list) ->
                (play answers steps).Calls
                |> List.forall (fun (at, stored, _) ->
                    stored |> Option.forall (fun t -> Expiring.isDue policy.RefreshMargin at t)))

            testProp "a ticket WeChat refused is never offered again" (fun (answers: Answer list, steps: Step list) ->
                everyStep answers steps (fun before after _ ->
                    match after.Calls with
                    | (_, _, offered) :: _ when after.Calls.Length > before.Calls.Length ->
                        before.Rejected <> Some(ticketMarker offered)
                    | _ -> true))

            testProp
                "after a failure no refresh comes before its backoff, unless a ticket arrives or the process restarts"
                (fun (answers: Answer list, steps: Step list) ->
                    everyStep answers steps (fun before after _ ->
                        after.Calls.Length = before.Calls.Length || before.Now >= before.Retry.NotBefore))

            testProp "replaying the same inputs gives the same state" (fun (answers: Answer list, steps: Step list) ->
                play answers steps = play answers steps)

            testProp
                "a forced refresh always goes ahead; otherwise the backoff is waited out"
                (fun (now: DateTimeOffset, failures: byte, at: DateTimeOffset, fallback: int option) ->
                    let retry =
                        { RetryState.clear with
                            Failures = int failures
                        }
                        |> RetryState.failed Backoff.authorizerToken at

                    gateRefresh true now retry fallback = Proceed
                    && (gateRefresh false now retry fallback = Proceed) = (now >= retry.NotBefore)
                    && (now >= retry.NotBefore
                        || gateRefresh false now retry fallback =
                            (match fallback with
                             | Some f -> ServeFallback f
                             | None -> Busy)))

            testProp
                "a 61023 ends in recovery through the authorizer list or in needs_reauthorization"
                (fun (stored: byte, listed: byte option, good: byte, now: DateTimeOffset) ->
                    let token (b: byte) = AuthorizerRefreshToken $"r{b}"
                    // WeChat accepts only `good`; every other refresh token gets 61023.
                    let answer r =
                        if r = token good then None else Some RefreshTokenRejected

                    let rec run r recovering calls =
                        match answer r with
                        | None -> Recovered r, calls
                        | Some kind ->
                            match onAuthorizerRefreshFailure kind recovering now with
                            | RecoverFromList ->
                                match onRecoveryListed r (listed |> Option.map token) now with
                                | RetryWith next -> run next true (calls + 1)
                                | GiveUp(status, _, _) -> Ended status, calls
                            | SetStatus(status, _, _) -> Ended status, calls
                            | BackOff -> BackedOff, calls

                    let outcome, calls = run (token stored) false 1
                    let recoverable = stored = good || listed = Some good

                    calls <= 2
                    && (match outcome with
                        | Recovered _ -> recoverable
                        | Ended NeedsReauthorization -> not recoverable
                        | _ -> false))

            testProp
                "61003 revokes; other failures back off and never change the status"
                (fun (kind: FailureKind, recovering: bool, now: DateTimeOffset) ->
                    match kind, onAuthorizerRefreshFailure kind recovering now with
                    | AuthorizationRevoked, SetStatus(Revoked, reason, at) -> reason.StartsWith "61003" && at = now
                    | RefreshTokenRejected, RecoverFromList -> not recovering
                    | RefreshTokenRejected, SetStatus(NeedsReauthorization, _, at) -> recovering && at = now
                    | (Transient | TokenRejected | TicketRejected | Permanent), BackOff -> true
                    | _ -> false)

            // Stated apart from the code's match: what an exchange may and may not do to an
            // account's tokens, whatever the two sides hold.
            testProp
                "an exchange loses no refresh token, keeps no token that expires sooner, and keeps a refresh token with its token"
                (fun
                    (mine: int16 option, stored: int16 option, exchangedRefresh: char option, storedRefresh: char option) ->
                    let t0 = DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero)
                    // A token's value is its lifetime: equal tokens expire together.
                    let token (s: int16) = Expiring.issued t0 (int s) (int s)
                    let mine, stored = Option.map token mine, Option.map token stored

                    let kept, refresh =
                        tokensAfterExchange (mine, exchangedRefresh) (stored, storedRefresh)

                    let expiresNoSooner (than: Expiring<int> option) =
                        match kept, than with
                        | Some k, Some t -> k.ExpiresAt >= t.ExpiresAt
                        | _ -> true

                    let keptStored = kept.IsSome && kept = stored && kept <> mine

                    // A refresh token at hand is never dropped: losing it means the merchant
                    // authorizes again.
                    refresh.IsSome = (exchangedRefresh.IsSome || storedRefresh.IsSome)
                    // One of the two tokens, and none only when the exchange brought none.
                    && (kept = mine || kept = stored)
                    && kept.IsNone = mine.IsNone
                    && expiresNoSooner mine
                    && (mine.IsNone || expiresNoSooner stored)
                    // The token kept comes with its own refresh token when it has one.
                    && (if keptStored then
                            storedRefresh.IsNone || refresh = storedRefresh
                        else
                            exchangedRefresh.IsNone || refresh = exchangedRefresh))

            testCase "an authorization racing an import keeps the import's later token and its refresh token"
            <| fun () ->
                let t0 = DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero)
                // api_query_auth answered at t0; the import refreshed the account 30 s later.
                let exchanged = Some(Expiring.issued t0 7200 "token-from-exchange")

                let imported =
                    Some(Expiring.issued (t0 + TimeSpan.FromSeconds 30.) 7200 "token-from-import")

                let kept, refresh =
                    tokensAfterExchange (exchanged, Some "refresh-1") (imported, Some "refresh-2")

                Expect.equal kept imported "the later token stays"
                Expect.equal refresh (Some "refresh-2") "with the refresh token it came with"

                let kept, refresh =
                    tokensAfterExchange (imported, Some "refresh-2") (exchanged, None)

                Expect.equal kept imported "an older stored token is written over"
                Expect.equal refresh (Some "refresh-2") "by the exchange's own refresh token"

            testProp
                "a refused ticket is set aside until a different one arrives"
                (fun (ticket: ReceivedTicket, other: ReceivedTicket) ->
                    usableTicket (Some ticket) (Some(ticketMarker ticket)) = None
                    && usableTicket (Some ticket) None = Some ticket
                    && (other.ReceivedAt = ticket.ReceivedAt
                        || usableTicket (Some other) (Some(ticketMarker ticket)) = Some other))
        ]

/// Properties of the token and ticket decisions, over generated clocks, tickets and tokens.
module WeChatFs.Tests.DomainTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open FsCheck
open FsCheck.FSharp
open WeChatFs.Domain

let private policy = TokenPolicy.defaults

let tests =
    testList
        "Domain"
        [
            testProp
                "a token is used only while usable and not yet due"
                ((fun (now: DateTimeOffset, ticket: ReceivedTicket option, token: Expiring<ComponentAccessToken> option) ->
                    match decideComponent policy now ticket token with
                    | UseToken t -> Expiring.isUsable now t
                    | _ -> true))

            testProp
                "a refresh always uses a ticket younger than its lifetime and keeps only a usable fallback"
                ((fun (now: DateTimeOffset, ticket: ReceivedTicket option, token: Expiring<ComponentAccessToken> option) ->
                    match decideComponent policy now ticket token with
                    | Refresh(t, fallback) ->
                        Some t = ticket
                        && now - t.ReceivedAt < policy.TicketLifetime
                        && fallback |> Option.forall (Expiring.isUsable now)
                        && token
                           |> Option.forall (fun k ->
                               Expiring.isDue policy.RefreshMargin now k || not (Expiring.isUsable now k))
                    | _ -> true))

            testProp
                "waiting for a ticket happens only with no usable token and no fresh ticket"
                ((fun (now: DateTimeOffset, ticket: ReceivedTicket option, token: Expiring<ComponentAccessToken> option) ->
                    let waits = decideComponent policy now ticket token = WaitForTicket
                    let usable = token |> Option.exists (Expiring.isUsable now)

                    let fresh =
                        ticket |> Option.exists (fun t -> now - t.ReceivedAt < policy.TicketLifetime)

                    waits = (not usable && not fresh)))

            testCase "a fresh token is never refreshed"
            <| fun () ->
                let token =
                    {
                        Token = ComponentAccessToken "tok"
                        ExpiresAt = t0.AddHours 2.
                    }

                let ticket =
                    Some
                        {
                            Ticket = VerifyTicket "t"
                            ReceivedAt = t0
                        }

                Expect.equal
                    (decideComponent policy (t0.AddMinutes 100.) ticket (Some token))
                    (UseToken token)
                    "decideComponent policy (t0.AddMinutes 100.) ticket (Some token)"

                Expect.equal
                    (decideComponent policy (t0.AddMinutes 111.) ticket (Some token))
                    (Refresh(ticket.Value, Some token))
                    "decideComponent policy (t0.AddMinutes 111.) ticket (Some token)"

            testProp
                "folding ticket pushes in any order keeps the newest"
                ((fun (ps: ReceivedTicket list, seed: int) ->
                    let shuffled = ps |> List.sortBy (fun p -> hash (p.Ticket, seed))

                    let fold xs =
                        xs |> List.fold (fun acc p -> Some(newerTicket acc p)) None

                    let newest xs =
                        fold xs |> Option.map (fun t -> t.ReceivedAt)

                    newest ps = newest shuffled
                    && newest ps =
                        (if ps.IsEmpty then
                             None
                         else
                             Some(ps |> List.map (fun p -> p.ReceivedAt) |> List.max))))

            testCase "ticket pushes are asked for when none younger than 12 hours is stored"
            <| fun () ->
                Expect.isTrue (needsTicketPushStart policy t0 None) "needsTicketPushStart policy t0 None"

                Expect.isTrue
                    (needsTicketPushStart
                        policy
                        t0
                        (Some
                            {
                                Ticket = VerifyTicket "t"
                                ReceivedAt = t0.AddHours -12.
                            }))
                    "needsTicketPushStart policy t0 (Some { Ticket = VerifyTicket 't' Re..."

                Expect.isFalse
                    (needsTicketPushStart
                        policy
                        t0
                        (Some
                            {
                                Ticket = VerifyTicket "t"
                                ReceivedAt = t0.AddHours -11.9
                            }))
                    "needsTicketPushStart policy t0 (Some { Ticket = VerifyTicket 't' Re..."

            testProp
                "only the current token is invalidated"
                (Prop.forAll
                    (Arb.fromGen (Gen.zip (Gen.elements [ "a"; "b" ]) (Gen.optionOf (Gen.elements [ "a"; "b" ]))))
                    (fun (failed, current) ->
                        let current = current |> Option.map (fun c -> { Token = c; ExpiresAt = t0 })
                        shouldInvalidate failed current = (current |> Option.exists (fun c -> c.Token = failed))))

            testCase "expiring tokens are due inside the margin and unusable at expiry"
            <| fun () ->
                let t = Expiring.issued t0 7200 "x"
                Expect.equal t.ExpiresAt (t0.AddHours 2.) "t.ExpiresAt"

                Expect.isFalse
                    (Expiring.isDue policy.RefreshMargin (t0.AddMinutes 109.) t)
                    "Expiring.isDue policy.RefreshMargin (t0.AddMinutes 109.) t"

                Expect.isTrue
                    (Expiring.isDue policy.RefreshMargin (t0.AddMinutes 110.) t)
                    "Expiring.isDue policy.RefreshMargin (t0.AddMinutes 110.) t"

                Expect.isTrue (Expiring.isUsable (t0.AddMinutes 119.) t) "Expiring.isUsable (t0.AddMinutes 119.) t"
                Expect.isFalse (Expiring.isUsable (t0.AddMinutes 120.) t) "Expiring.isUsable (t0.AddMinutes 120.) t"

            testProp
                "revoked accounts and accounts without any credential are never refreshed"
                ((fun (now: DateTimeOffset, a: Authorizer) ->
                    match decideAuthorizer policy.RefreshMargin now a with
                    | RefreshAuthorizer(r, _) -> a.Status = Authorized && a.RefreshToken = Some r
                    | UseAuthorizerToken t -> a.Status = Authorized && Expiring.isUsable now t
                    | Unavailable(status, _) ->
                        a.Status <> Authorized
                        || (a.RefreshToken.IsNone
                            && not (a.AccessToken |> Option.exists (Expiring.isUsable now)))
                           && status = NeedsReauthorization))

            testProp
                "the preload keeps exactly the tokens the account's decision serves without a refresh"
                ((fun (now: DateTimeOffset, a: Authorizer) ->
                    let served =
                        match decideAuthorizer policy.RefreshMargin now a with
                        | UseAuthorizerToken t when not (Expiring.isDue policy.RefreshMargin now t) -> Some t
                        | _ -> None

                    preloadableToken policy.RefreshMargin now a.Status a.AccessToken = served))

            testProp
                "a backoff starts at its first delay, doubles, and never passes its cap"
                (fun (n: int, first: int, cap: int) ->
                    let b =
                        {
                            First = TimeSpan.FromMilliseconds(float (1 + abs first % 10_000))
                            Cap = TimeSpan.FromMilliseconds(float (1 + abs cap % 1_000_000))
                        }

                    let n = 1 + abs n % 60
                    let d = Backoff.delay b

                    Backoff.delay b 0 = TimeSpan.Zero
                    && d 1 = min b.First b.Cap
                    && d (n + 1) <= b.Cap
                    && (d (n + 1) = b.Cap || d (n + 1) = d n + d n))

            testCase "errcodes are classified as the facts say"
            <| fun () ->
                for code in [ 40001; 40014; 42001 ] do
                    Expect.equal (classifyErrcode code) TokenRejected "classifyErrcode code"

                Expect.equal (classifyErrcode 61005) TicketRejected "classifyErrcode 61005"
                Expect.equal (classifyErrcode 61006) TicketRejected "classifyErrcode 61006"
                Expect.equal (classifyErrcode -1) Transient "classifyErrcode -1"
                Expect.equal (classifyErrcode 61023) RefreshTokenRejected "classifyErrcode 61023"
                Expect.equal (classifyErrcode 61003) AuthorizationRevoked "classifyErrcode 61003"
                Expect.equal (classifyErrcode 45009) Permanent "classifyErrcode 45009"

        ]

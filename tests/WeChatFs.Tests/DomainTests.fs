/// Properties of the token and ticket decisions, over generated clocks, tickets and tokens.
module WeChatFs.Tests.DomainTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open WeChatFs.Domain

let private t0 = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)
let private policy = TokenPolicy.defaults

let private minutes =
    Gen.choose (-2000, 2000) |> Gen.map (fun m -> t0.AddMinutes(float m))

let private ticketGen =
    Gen.optionOf (
        Gen.map
            (fun at ->
                {
                    Ticket = VerifyTicket $"t{at:HHmm}"
                    ReceivedAt = at
                })
            minutes
    )

let private tokenGen =
    Gen.optionOf (
        Gen.map
            (fun at ->
                {
                    Token = ComponentAccessToken "tok"
                    ExpiresAt = at
                })
            minutes
    )

let private cases = Gen.zip3 minutes ticketGen tokenGen |> Arb.fromGen

let private check prop =
    Check.One(Config.QuickThrowOnFailure.WithMaxTest 500, prop)

[<Fact>]
let ``a token is used only while usable and not yet due`` () =
    Prop.forAll cases (fun (now, ticket, token) ->
        match decideComponent policy now ticket token with
        | UseToken t -> Expiring.isUsable now t
        | _ -> true)
    |> check

[<Fact>]
let ``a refresh always uses a ticket younger than its lifetime and keeps only a usable fallback`` () =
    Prop.forAll cases (fun (now, ticket, token) ->
        match decideComponent policy now ticket token with
        | Refresh(t, fallback) ->
            Some t = ticket
            && now - t.ReceivedAt < policy.TicketLifetime
            && fallback |> Option.forall (Expiring.isUsable now)
            && token
               |> Option.forall (fun k -> Expiring.isDue policy.RefreshMargin now k || not (Expiring.isUsable now k))
        | _ -> true)
    |> check

[<Fact>]
let ``waiting for a ticket happens only with no usable token and no fresh ticket`` () =
    Prop.forAll cases (fun (now, ticket, token) ->
        let waits = decideComponent policy now ticket token = WaitForTicket
        let usable = token |> Option.exists (Expiring.isUsable now)

        let fresh =
            ticket |> Option.exists (fun t -> now - t.ReceivedAt < policy.TicketLifetime)

        waits = (not usable && not fresh))
    |> check

[<Fact>]
let ``a fresh token is never refreshed`` () =
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

    Assert.Equal(UseToken token, decideComponent policy (t0.AddMinutes 100.) ticket (Some token))
    Assert.Equal(Refresh(ticket.Value, Some token), decideComponent policy (t0.AddMinutes 111.) ticket (Some token))

[<Fact>]
let ``folding ticket pushes in any order keeps the newest`` () =
    let pushes =
        Gen.listOf (
            Gen.map
                (fun at ->
                    {
                        Ticket = VerifyTicket $"{at:o}"
                        ReceivedAt = at
                    })
                minutes
        )

    Prop.forAll (Arb.fromGen (Gen.zip pushes (Gen.choose (0, 1000)))) (fun (ps, seed) ->
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
                 Some(ps |> List.map (fun p -> p.ReceivedAt) |> List.max)))
    |> check

[<Fact>]
let ``ticket pushes are asked for when none younger than 12 hours is stored`` () =
    Assert.True(needsTicketPushStart policy t0 None)

    Assert.True(
        needsTicketPushStart
            policy
            t0
            (Some
                {
                    Ticket = VerifyTicket "t"
                    ReceivedAt = t0.AddHours -12.
                })
    )

    Assert.False(
        needsTicketPushStart
            policy
            t0
            (Some
                {
                    Ticket = VerifyTicket "t"
                    ReceivedAt = t0.AddHours -11.9
                })
    )

[<Fact>]
let ``only the current token is invalidated`` () =
    Prop.forAll
        (Arb.fromGen (Gen.zip (Gen.elements [ "a"; "b" ]) (Gen.optionOf (Gen.elements [ "a"; "b" ]))))
        (fun (failed, current) ->
            let current = current |> Option.map (fun c -> { Token = c; ExpiresAt = t0 })
            shouldInvalidate failed current = (current |> Option.exists (fun c -> c.Token = failed)))
    |> check

[<Fact>]
let ``expiring tokens are due inside the margin and unusable at expiry`` () =
    let t = Expiring.issued t0 7200 "x"
    Assert.Equal(t0.AddHours 2., t.ExpiresAt)
    Assert.False(Expiring.isDue policy.RefreshMargin (t0.AddMinutes 109.) t)
    Assert.True(Expiring.isDue policy.RefreshMargin (t0.AddMinutes 110.) t)
    Assert.True(Expiring.isUsable (t0.AddMinutes 119.) t)
    Assert.False(Expiring.isUsable (t0.AddMinutes 120.) t)

let private authorizerGen =
    gen {
        let! status = Gen.elements [ Authorized; Revoked; NeedsReauthorization ]
        let! refresh = Gen.optionOf (Gen.constant (AuthorizerRefreshToken "r"))

        let! token =
            Gen.optionOf (
                Gen.map
                    (fun at ->
                        {
                            Token = AuthorizerAccessToken "a"
                            ExpiresAt = at
                        })
                    minutes
            )

        return
            {
                AppId = AuthorizerAppId "wx1"
                Tenant = None
                Status = status
                StatusReason = None
                FuncIds = []
                Profile = None
                RefreshToken = refresh
                AccessToken = token
                AuthorizedAt = t0
                UpdatedAt = t0
            }
    }

[<Fact>]
let ``revoked accounts and accounts without any credential are never refreshed`` () =
    Prop.forAll (Arb.fromGen (Gen.zip minutes authorizerGen)) (fun (now, a) ->
        match decideAuthorizer policy.RefreshMargin now a with
        | RefreshAuthorizer(r, _) -> a.Status = Authorized && a.RefreshToken = Some r
        | UseAuthorizerToken t -> a.Status = Authorized && Expiring.isUsable now t
        | Unavailable(status, _) ->
            a.Status <> Authorized
            || (a.RefreshToken.IsNone
                && not (a.AccessToken |> Option.exists (Expiring.isUsable now)))
               && status = NeedsReauthorization)
    |> check

[<Fact>]
let ``errcodes are classified as the facts say`` () =
    for code in [ 40001; 40014; 42001 ] do
        Assert.Equal(TokenRejected, classifyErrcode code)

    Assert.Equal(TicketRejected, classifyErrcode 61005)
    Assert.Equal(TicketRejected, classifyErrcode 61006)
    Assert.Equal(Transient, classifyErrcode -1)
    Assert.Equal(RefreshTokenRejected, classifyErrcode 61023)
    Assert.Equal(AuthorizationRevoked, classifyErrcode 61003)
    Assert.Equal(Permanent, classifyErrcode 45009)

/// Decisions.Pacing: the budget's arithmetic as properties, and the refresh scheduler played over
/// three token lives for many accounts (the due rule with its jitter, plus pacing, as the refresher
/// runs them): refreshes are even from minute to minute, none is late, and none comes more often
/// than once a cycle.
module WeChatFs.Tests.PacingTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Decisions

let private margin = TimeSpan.FromMinutes 10.
let private maxJitter = TimeSpan.FromMinutes 2.
let private interval = TimeSpan.FromSeconds 30.
let private cycle = Pacing.tokenLife - margin - maxJitter

/// Every refresh (pass time, account) of `accounts` tokens whose first expiries are `expiries`,
/// over three token lives of passes. Per pass: what the due rule finds due, then the paced budget
/// of the earliest-expiring ones, as AuthorizerRefresher does.
let private play (expiries: DateTimeOffset[]) (jitters: TimeSpan[]) (start: DateTimeOffset) =
    let expiry = Array.copy expiries
    let refreshes = ResizeArray<DateTimeOffset * int>()
    let mutable late = 0
    let mutable carry = 0.
    let mutable now = start

    while now < start + Pacing.tokenLife * 3. do
        let mutable dueNow = 0

        for i in 0 .. expiry.Length - 1 do
            if expiry[i] <= now then
                late <- late + 1

            if expiry[i] - margin - jitters[i] <= now then
                expiry[i] <- now + Pacing.tokenLife
                refreshes.Add((now, i))
                dueNow <- dueNow + 1

        let count, rest = Pacing.budget expiry.Length cycle interval interval carry dueNow
        carry <- rest

        for i in
            Array.init expiry.Length id
            |> Array.sortBy (fun i -> expiry[i])
            |> Array.truncate count do
            expiry[i] <- now + Pacing.tokenLife
            refreshes.Add((now, i))

        now <- now + interval

    refreshes, late

/// `evenFrom` after the start, no minute has more than 1.2 times the mean of the refreshes from then on.
let private scenario
    (name: string)
    (accounts: int)
    (evenFrom: TimeSpan)
    (firstExpiry: Random -> DateTimeOffset -> DateTimeOffset)
    =
    testCase name
    <| fun () ->
        let random = Random 7
        let start = DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero)
        let expiries = Array.init accounts (fun _ -> firstExpiry random start)

        let jitters =
            Array.init accounts (fun _ -> TimeSpan.FromSeconds(float (random.Next(int maxJitter.TotalSeconds))))

        let refreshes, late = play expiries jitters start
        Expect.equal late 0 "no token expires before it is refreshed"

        let counted =
            refreshes |> Seq.filter (fun (at, _) -> at >= start + evenFrom) |> Array.ofSeq

        let perMinute =
            counted
            |> Seq.countBy (fun (at, _) -> (at - start).TotalMinutes |> int)
            |> Seq.map snd
            |> Array.ofSeq

        let minutes = (Pacing.tokenLife * 3. - evenFrom).TotalMinutes
        let mean = float counted.Length / minutes
        let busiest = Array.max perMinute
        Expect.isLessThanOrEqual (float busiest) (1.2 * mean) $"busiest minute {busiest} against a mean of {mean:F1}"

        // No account is refreshed twice within a cycle, less a few passes: the first cycle takes
        // some tokens early, and tokens of one pass may swap places with the next pass's.
        let tooSoon =
            refreshes
            |> Seq.groupBy snd
            |> Seq.sumBy (fun (_, times) ->
                times
                |> Seq.map fst
                |> Seq.sort
                |> Seq.pairwise
                |> Seq.filter (fun (a, b) -> b - a < cycle - TimeSpan.FromMinutes 5.)
                |> Seq.length)

        Expect.equal tooSoon 0 "refreshed at most once a cycle"

let tests =
    testList
        "Pacing"
        [
            testProp
                "the budget hands out the accounts per cycle over the time counted, carrying the fraction"
                (fun (accounts: uint16, passes: byte, elapsedSeconds: uint16) ->
                    let accounts = int accounts
                    let elapsed = TimeSpan.FromSeconds(float elapsedSeconds)
                    let counted = min elapsed (interval + interval)
                    let mutable carry = 0.
                    let mutable total = 0

                    for _ in 1 .. int passes do
                        let count, rest = Pacing.budget accounts cycle interval elapsed carry 0
                        total <- total + count
                        carry <- rest

                    let exact =
                        float accounts * float passes * counted.TotalSeconds / cycle.TotalSeconds

                    carry >= 0.
                    && carry < 1.
                    && abs (float total + carry - exact) < 1e-6 * max 1. exact)

            testProp "no accounts or no cycle: nothing to pace" (fun (elapsedSeconds: uint16, carry: float) ->
                let elapsed = TimeSpan.FromSeconds(float elapsedSeconds)

                Pacing.budget 0 cycle interval elapsed carry 0 = (0, 0.)
                && Pacing.budget 10 TimeSpan.Zero interval elapsed carry 0 = (0, 0.))

            testProp
                "what the pass refreshed as due counts against the budget, which never goes below zero"
                (fun (accounts: uint16, elapsedSeconds: byte, dueNow: byte) ->
                    let elapsed = TimeSpan.FromSeconds(float elapsedSeconds)
                    let free, carry = Pacing.budget (int accounts) cycle interval elapsed 0. 0

                    let paced, carry' =
                        Pacing.budget (int accounts) cycle interval elapsed 0. (int dueNow)

                    paced = max 0 (free - int dueNow) && carry' = carry)

            // Tokens issued in the minute before (an import, every first token fetched at once).
            scenario
                "1,000 tokens fetched at once (an import) are spread from the first cycle"
                1000
                TimeSpan.Zero
                (fun r start -> start + Pacing.tokenLife - TimeSpan.FromSeconds(float (r.Next 60)))

            // Issued in two bursts, just now and an hour ago: the earlier wave falls due before the
            // pace reaches all of it (never late comes first), so the spread is even from the second
            // token life on.
            scenario
                "5,000 tokens in two waves an hour apart are spread after one token life"
                5000
                Pacing.tokenLife
                (fun r start ->
                    start + Pacing.tokenLife
                    - (if r.Next 2 = 0 then
                           TimeSpan.Zero
                       else
                           TimeSpan.FromHours 1.)
                    - TimeSpan.FromSeconds(float (r.Next 300)))

            scenario
                "2,000 tokens spread at random over their life are evened out after one token life"
                2000
                Pacing.tokenLife
                (fun r start ->
                    start
                    + TimeSpan.FromSeconds(
                        float (r.Next(int margin.TotalSeconds + 60, int Pacing.tokenLife.TotalSeconds))
                    ))
        ]

module WeChatFs.Tests.RedPackStateTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open FsCheck
open FsCheck.FSharp
open WeChatFs.RedPacks
open WeChatFs.RedPackState

let private policy =
    {
        ResolveRetryBase = TimeSpan.FromSeconds 1.
        ResolveRetryMax = TimeSpan.FromMinutes 5.
        ReconcileInterval = TimeSpan.FromMinutes 10.
        StaleAfter = TimeSpan.FromSeconds 30.
    }

let private t0 = DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero)

let private inputGen =
    Gen.oneof
        [
            Gen.constant SendStarted
            Gen.elements
                [
                    Accepted "L1"
                    Refused("NOTENOUGH", "balance")
                    Refused("CA_ERROR", "cert")
                    Unknown "SYSTEMERROR"
                    Unknown "timed out"
                ]
            |> Gen.map SendAnswered
            Gen.elements
                [
                    Found("SENDING", "D1", "")
                    Found("SENT", "D1", "")
                    Found("RECEIVED", "D1", "")
                    Found("RFUND_ING", "D1", "")
                    Found("REFUND", "D1", "")
                    Found("FAILED", "D1", "risk")
                    Found("SOMETHING", "D1", "")
                    NotFound
                    QueryUnknown "SYSTEMERROR"
                ]
            |> Gen.map QueryAnswered
        ]

/// A run from a fresh packet: every step's packet and effects, the clock moving a second per input.
let private run (inputs: Input list) =
    inputs
    |> List.indexed
    |> List.scan (fun (p, _) (i, input) -> step policy (t0.AddSeconds(float i)) p input) (created policy t0, [])
    |> List.tail

let private runs = Arb.fromGen (Gen.listOf inputGen)

let private check (property: Input list -> bool) =
    Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), Prop.forAll runs property)


let tests =
    testList
        "RedPackState"
        [
            testCase "once WeChat Pay took a packet it is never sent again"
            <| fun () ->
                check (fun inputs ->
                    let steps = run inputs

                    steps
                    |> List.pairwise
                    |> List.forall (fun ((before, _), (_, effects)) ->
                        not (Status.isAccepted before.Status && List.contains CallSend effects)))

            testCase "a taken packet never goes back to created, sending or undecided"
            <| fun () ->
                check (fun inputs ->
                    let statuses = run inputs |> List.map (fun (p, _) -> p.Status)

                    statuses
                    |> List.pairwise
                    |> List.forall (fun (a, b) ->
                        not (
                            Status.isAccepted a
                            && (match b with
                                | Created
                                | Sending
                                | Undecided _ -> true
                                | _ -> false)
                        )))

            testCase "final states absorb every input and have nothing left to check"
            <| fun () ->
                check (fun inputs ->
                    let steps = run inputs

                    steps
                    |> List.pairwise
                    |> List.forall (fun ((a, _), (b, effects)) ->
                        not (Status.isFinal a.Status) || (a = b && effects.IsEmpty))
                    && steps
                       |> List.forall (fun (p, _) -> Status.isFinal p.Status = p.NextCheckAt.IsNone))

            testCase "each webhook event is told at most once, and sent before received or refunded"
            <| fun () ->
                check (fun inputs ->
                    let events =
                        run inputs
                        |> List.collect snd
                        |> List.choose (function
                            | Notify k -> Some k
                            | CallSend -> None)

                    let index k = events |> List.tryFindIndex ((=) k)

                    List.length events = List.length (List.distinct events)
                    && [ "redpack.received"; "redpack.refunded" ]
                       |> List.forall (fun k ->
                           match index k with
                           | Some i -> index "redpack.sent" |> Option.exists (fun s -> s < i)
                           | None -> true))

            testCase "undecided packets are checked again with a growing wait"
            <| fun () ->
                check (fun inputs ->
                    run inputs
                    |> List.forall (fun (p, _) ->
                        match p.Status with
                        | Undecided _ -> p.NextCheckAt.IsSome && p.Attempts >= 1
                        | _ -> true))

                let waits = [ 1..8 ] |> List.map (fun attempts -> backoff policy attempts)

                Expect.equal waits.Head (TimeSpan.FromSeconds 1.) "waits.Head"

                Expect.isTrue
                    (waits |> List.pairwise |> List.forall (fun (a, b) -> b >= a))
                    "waits |> List.pairwise |> List.forall (fun (a, b) -> b >= a)"

                Expect.equal (backoff policy 40) (TimeSpan.FromMinutes 5.) "backoff policy 40"

            testCase "SYSTEMERROR, then gethbinfo does not know it: sent again, and the answer settles it"
            <| fun () ->
                let steps =
                    run
                        [
                            SendStarted
                            SendAnswered(Unknown "SYSTEMERROR")
                            QueryAnswered NotFound
                            SendAnswered(Accepted "L9")
                            QueryAnswered(Found("RECEIVED", "L9", ""))
                        ]

                let statuses = steps |> List.map (fun (p, _) -> Status.name p.Status)
                Expect.equal statuses ([ "sending"; "undecided"; "sending"; "sent"; "received" ]) "statuses"
                Expect.equal (snd steps[2]) ([ CallSend ]) "snd steps[2]"
                Expect.equal (snd steps[3]) ([ Notify "redpack.sent" ]) "snd steps[3]"
                Expect.equal (snd steps[4]) ([ Notify "redpack.received" ]) "snd steps[4]"

            testCase "a crash while sending is resolved by gethbinfo without sending again"
            <| fun () ->
                let steps =
                    run
                        [
                            SendStarted
                            QueryAnswered(Found("SENT", "D7", ""))
                            QueryAnswered(Found("REFUND", "D7", ""))
                        ]

                Expect.equal ((fst steps[1]).Status) (Sent "D7") "(fst steps[1]).Status"
                Expect.equal (snd steps[1]) ([ Notify "redpack.sent" ]) "snd steps[1]"
                Expect.equal ((fst steps[2]).Status) (Refunded "D7") "(fst steps[2]).Status"
                Expect.equal (snd steps[2]) ([ Notify "redpack.refunded" ]) "snd steps[2]"

        ]

/// The deployment target's state machine: total, never repeating what WeChat already did, retrying
/// only what may succeed, and ext_json's placeholders.
module WeChatFs.Tests.MiniProgramsTests

open System
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open WeChatFs.Tests.Helpers
open FsCheck
open FsCheck.FSharp
open WeChatFs.MiniPrograms
open WeChatFs.ExtJson

let private t0 = DateTimeOffset(2026, 11, 30, 8, 0, 0, TimeSpan.Zero)

let private policy = Policy.defaults

let private start: Target =
    {
        AppId = WeChatFs.Domain.AuthorizerAppId "wxtarget"
        State = Pending
        Attempts = 0
        LastErrcode = None
        AuditId = None
        NextAt = Some t0
        UpdatedAt = t0
    }

let private steps = Gen.elements [ Commit; SubmitAudit; AuditStatus; Release ]

let private errcodes =
    Gen.elements
        [
            None
            Some -1
            Some 40001
            Some 45009
            Some 61039
            Some 85085
            Some 85009
            Some 85014
            Some 86002
            Some 61003
        ]

let private verdicts =
    Gen.oneof
        [
            Gen.constant Approved
            Gen.constant (Rejected("bad", "m1|m2"))
            Gen.constant (Delayed "wait")
            Gen.constant StillAuditing
            Gen.constant Withdrawn
        ]

let private inputs =
    Gen.frequency
        [
            4, Gen.constant CommitDone
            3, Gen.choose (1, 1000) |> Gen.map (int64 >> Submitted)
            2, verdicts |> Gen.map Verdict
            1,
            Gen.oneof
                [
                    Gen.constant None
                    Gen.zip (Gen.choose (1, 9)) verdicts |> Gen.map (fun (i, v) -> Some(int64 i, v))
                ]
            |> Gen.map LatestAudit
            3, Gen.constant ReleaseDone
            4, Gen.zip steps errcodes |> Gen.map (fun (s, c) -> CallFailed(s, c, "why"))
            1, Gen.constant Unauthorized
            1, Gen.constant QuotaExhausted
            1, Gen.constant Cancel
            1, Gen.constant RetryFailed
        ]

/// A timeline: each input some seconds after the last.
let private timeline = Gen.listOf (Gen.zip (Gen.choose (0, 4000)) inputs)

let private plans =
    Gen.zip3 (Gen.elements [ true; false ]) (Gen.elements [ Auto; Manual; NoRelease ]) (Gen.elements [ true; false ])
    |> Gen.map (fun (a, r, q) ->
        {
            Audit = a
            Release = r
            ReleaseRequested = q
        })

let private run (inputs: (int * Input) list) =
    inputs
    |> List.scan
        (fun (now: DateTimeOffset, t) (seconds, input) ->
            let now = now.AddSeconds(float seconds)
            now, evolve policy now t input)
        (t0, start)


let tests =
    testList
        "MiniPrograms"
        [
            testCase "evolve and next answer every state and input"
            <| fun () ->
                Prop.forAll (Arb.fromGen (Gen.zip plans timeline)) (fun (plan, inputs) ->
                    run inputs
                    |> List.forall (fun (now, t) ->
                        match next plan now t with
                        | Call _
                        | Wait
                        | Done -> true))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), p)

            testCase "once committed, a target is never sent to commit again unless an operator retries a failed commit"
            <| fun () ->
                Prop.forAll (Arb.fromGen (Gen.zip plans timeline)) (fun (plan, inputs) ->
                    let states = run inputs

                    let committedAt = states |> List.tryFindIndex (fun (_, t) -> t.State = Committed)

                    match committedAt with
                    | None -> true
                    | Some i ->
                        let after = states |> List.skip i

                        let retried =
                            inputs |> List.skip i |> List.exists (fun (_, input) -> input = RetryFailed)

                        retried
                        || after
                           |> List.forall (fun (now, t) -> next plan now t <> Call Commit && t.State <> Committing))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), p)

            testCase "a submitted audit is never submitted again while its verdict is open"
            <| fun () ->
                Prop.forAll (Arb.fromGen (Gen.zip plans timeline)) (fun (plan, inputs) ->
                    run inputs
                    |> List.forall (fun (now, t) ->
                        match t.State with
                        | Auditing
                        | AuditDelayed _ -> next plan now t <> Call SubmitAudit
                        | _ -> true))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), p)

            testCase "final states stay final, except failed under retry-failed"
            <| fun () ->
                Prop.forAll (Arb.fromGen timeline) (fun inputs ->
                    run inputs
                    |> List.pairwise
                    |> List.forall (fun ((_, a), (_, b)) ->
                        match a.State with
                        | Released
                        | AuditRejected _
                        | Skipped _
                        | Cancelled -> b = a
                        | Failed _ ->
                            b = a
                            || b.State = Pending
                            || b.State = Committed
                            || b.State = Auditing
                            || b.State = AuditPassed
                        | _ -> true))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), p)

            testCase "permanent errors fail at once, transient ones are retried later a bounded number of times"
            <| fun () ->
                let gen = Gen.zip steps (Gen.choose (1, 12))

                Prop.forAll (Arb.fromGen gen) (fun (step, n) ->
                    let from =
                        match step with
                        | Commit -> Committing
                        | SubmitAudit -> Submitting
                        | AuditStatus -> Auditing
                        | Release -> Releasing

                    let permanent =
                        evolve policy t0 { start with State = from } (CallFailed(step, Some 85014, "no template"))

                    let transient =
                        [ 1..n ]
                        |> List.fold
                            (fun t _ -> evolve policy t0 t (CallFailed(step, Some -1, "busy")))
                            { start with State = from }

                    let permanentFails =
                        match permanent.State with
                        | Failed(s, Some 85014, _) -> s = step
                        | _ -> false

                    let transientOk =
                        if n >= policy.MaxAttempts then
                            match transient.State with
                            | Failed(_, Some -1, _) -> true
                            | _ -> false
                        else
                            transient.NextAt |> Option.exists (fun at -> at > t0)
                            && not (isFinal transient.State)

                    permanentFails && transientOk)
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

            testCase "45009 waits for midnight in China, 61039 for the scan, 61003 skips the account"
            <| fun () ->
                let committed = { start with State = Submitting }

                let quota =
                    evolve policy t0 committed (CallFailed(SubmitAudit, Some 45009, "quota"))
                // 08:00 UTC is 16:00 in China: the quota resets in 8 hours.
                Expect.equal quota.NextAt (Some(t0.AddHours 8.)) "quota.NextAt"
                Expect.equal quota.State Committed "quota.State"
                let scan = evolve policy t0 committed (CallFailed(SubmitAudit, Some 61039, "scan"))
                Expect.equal scan.NextAt (Some(t0 + policy.ScanRetryDelay)) "scan.NextAt"

                let revoked =
                    evolve policy t0 committed (CallFailed(SubmitAudit, Some 61003, "gone"))

                Expect.equal revoked.State (Skipped "unauthorized") "revoked.State"

                let busy =
                    evolve policy t0 committed (CallFailed(SubmitAudit, Some 85009, "in progress"))

                match busy.State with
                | Failed(SubmitAudit, Some 85009, _) -> ()
                | other -> failtest $"85009 must be reported, got {other}"

            testCase "a verdict that races the submit answer is kept"
            <| fun () ->
                let submitting = { start with State = Submitting }
                let passed = evolve policy t0 submitting (Verdict Approved)
                Expect.equal passed.State AuditPassed "passed.State"
                let answered = evolve policy t0 passed (Submitted 77L)
                Expect.equal answered.State AuditPassed "answered.State"
                Expect.equal answered.AuditId (Some 77L) "answered.AuditId"

            testCase "ext_json placeholders are replaced in every string and the result is one JSON string"
            <| fun () ->
                let gen =
                    Gen.zip
                        (Gen.elements [ "wx1"; "wxabc"; "wx\"q" ])
                        (Gen.elements [ None; Some "shop-1"; Some "t{{appid}}" ])

                Prop.forAll (Arb.fromGen gen) (fun (appid, tenant) ->
                    let ext =
                        JsonNode.Parse
                            """{"extAppid":"{{appid}}","ext":{"t":"{{tenant}}","n":3,"l":["{{appid}}-x",true]}}"""

                    let rendered = renderExtJson ext appid tenant
                    let root = JsonDocument.Parse(rendered).RootElement

                    root.GetProperty("extAppid").GetString() = appid
                    && root.GetProperty("ext").GetProperty("t").GetString() = defaultArg tenant ""
                    && root.GetProperty("ext").GetProperty("n").GetInt32() = 3
                    && (root.GetProperty("ext").GetProperty("l")[0]).GetString() = appid + "-x")
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(100), p)

        ]

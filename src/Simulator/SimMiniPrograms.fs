/// Mini-program code management as the simulated WeChat serves it (facts §9): the template library,
/// commit (ext_json must be a JSON-encoded string), submit_audit with its errors and a configurable
/// verdict pushed to the message URL as weapp_audit_* events, audit status, release, revert and its
/// history, queryquota and modify_domain; plus `/sim/miniprograms...` controls for tests.
module WeChatFs.Simulator.SimMiniPrograms

open System
open System.Collections.Generic
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimApi

type Audit =
    {
        AuditId: int64
        mutable Status: int
        mutable Reason: string
        mutable Screenshot: string
        SubmitTime: int64
        UserVersion: string
        UserDesc: string
        mutable Released: bool
    }

type Code =
    {
        TemplateId: int64
        ExtJson: string
        UserVersion: string
        UserDesc: string
        CommitTime: int64
    }

/// What one mini program has: its code, its audits, its releases, its domains, and call counts.
type Program =
    {
        mutable Code: Code option
        mutable ScanReadyAt: DateTimeOffset
        Audits: List<Audit>
        Releases: List<Code * int64>
        Domains: Dictionary<string, string list>
        Calls: Dictionary<string, int>
    }

/// How the simulated reviewers answer: `approve`, `reject`, `delay_then_approve`; `push = false`
/// leaves the verdict to get_auditstatus alone.
type Verdict =
    {
        Kind: string
        Reason: string
        DelayMs: int
        Push: bool
    }

let defaultVerdict =
    {
        Kind = "approve"
        Reason = ""
        DelayMs = 50
        Push = true
    }

type CodeState(sim: SimState) =
    let sync = obj ()
    let programs = Dictionary<string, Program>()
    let drafts = [ 1L .. 3L ]
    let templates = Dictionary<int64, int64 * int * string * string * int64>()
    let verdicts = Dictionary<string, Verdict>()
    let mutable fallback = defaultVerdict
    let mutable quotaRest = 100_000
    let mutable quotaLimit = 100_000
    let mutable scanDelay = TimeSpan.Zero
    let mutable nextTemplate = 100L
    let mutable nextAudit = 4_000_000L

    let mutable latency = 0
    let mutable running = 0
    let mutable mostRunning = 0

    member _.Lock f = lock sync f

    /// Every code-management call of a mini program takes this long (to catch deployments midway).
    member _.Latency
        with get () = latency
        and set v = latency <- v

    /// Around each call: how many run at once, and the most that ever did.
    member _.Enter() =
        lock sync (fun () ->
            running <- running + 1
            mostRunning <- max mostRunning running)

    member _.Leave() =
        lock sync (fun () -> running <- running - 1)

    member _.MostRunning = lock sync (fun () -> mostRunning)

    member _.ResetMostRunning() =
        lock sync (fun () -> mostRunning <- running)

    member _.Program(appid: string) =
        lock sync (fun () ->
            match programs.TryGetValue appid with
            | true, p -> p
            | _ ->
                let p =
                    {
                        Code = None
                        ScanReadyAt = DateTimeOffset.MinValue
                        Audits = List()
                        Releases = List()
                        Domains = Dictionary()
                        Calls = Dictionary()
                    }

                programs[appid] <- p
                p)

    member this.Count(appid: string, api: string) =
        let p = this.Program appid

        lock sync (fun () ->
            match p.Calls.TryGetValue api with
            | true, n -> p.Calls[api] <- n + 1
            | _ -> p.Calls[api] <- 1)

    member _.Programs() =
        lock sync (fun () -> programs |> Seq.map (fun kv -> kv.Key, kv.Value) |> List.ofSeq)

    member _.Drafts = drafts
    member _.Templates = templates

    member _.AddTemplate(draft: int64, kind: int, now: int64) =
        lock sync (fun () ->
            nextTemplate <- nextTemplate + 1L
            templates[nextTemplate] <- (draft, kind, $"1.0.{draft}", $"draft {draft}", now)
            nextTemplate)

    member _.NextAuditId() =
        lock sync (fun () ->
            nextAudit <- nextAudit + 1L
            nextAudit)

    member _.VerdictFor(appid: string) =
        lock sync (fun () ->
            match verdicts.TryGetValue appid with
            | true, v -> v
            | _ -> fallback)

    member _.SetVerdict(appid: string option, v: Verdict) =
        lock sync (fun () ->
            match appid with
            | Some a -> verdicts[a] <- v
            | None -> fallback <- v)

    member _.Quota = lock sync (fun () -> quotaRest, quotaLimit)

    member _.SetQuota(rest, limit) =
        lock sync (fun () ->
            quotaRest <- rest
            quotaLimit <- limit)

    /// One submission: false when none is left (85085).
    member _.TakeQuota() =
        lock sync (fun () ->
            if quotaRest <= 0 then
                false
            else
                quotaRest <- quotaRest - 1
                true)

    member _.ScanDelay
        with get () = scanDelay
        and set v = scanDelay <- v

    member _.Sim = sim

let private errmsg =
    dict
        [
            85009, "an audit is already in progress"
            85012, "invalid audit id"
            85014, "template not exist"
            85019, "no audited version"
            85020, "status not allowed"
            85023, "item list count invalid"
            85048, "ext json parse failed"
            85058, "no valid audit id"
            85064, "draft or template not found"
            85085, "submit audit reach limit"
            85086, "must commit code first"
            61039, "code scan not finished"
            87012, "can not revert"
            44002, "empty post data"
        ]

/// Code-management errors with their own errmsg (SimApi's table has the platform-wide ones).
let fail (ctx: HttpContext) (code: int) =
    match errmsg.TryGetValue code with
    | true, text ->
        writeJson
            ctx
            200
            {|
                errcode = code
                errmsg = $"{text} rid: {Guid.NewGuid().ToString().Substring(0, 23)}"
            |}
    | _ -> writeError ctx code

let private push (codes: CodeState) (appid: string) (event: string) (fields: (string * string) list) =
    task {
        match codes.Sim.Authorization appid with
        | Some a ->
            let now = codes.Sim.Now().ToUnixTimeSeconds()

            let xml =
                SimMessages.messageXml a.Account.UserName "oSYSTEM_OPENID" now "event" (("Event", event) :: fields)

            let! _ = SimMessages.send codes.Sim appid xml 3
            ()
        | None -> ()
    }

/// The reviewers at work: the verdict after its delay, pushed as WeChat pushes it (facts §9.7).
let review (codes: CodeState) (appid: string) (audit: Audit) =
    let v = codes.VerdictFor appid

    Task.Run(fun () ->
        task {
            try
                do! Task.Delay(max 0 v.DelayMs)

                let now () =
                    string (codes.Sim.Now().ToUnixTimeSeconds())

                match v.Kind with
                | "reject" ->
                    codes.Lock(fun () ->
                        audit.Status <- 1
                        audit.Reason <- v.Reason
                        audit.Screenshot <- "sim_media_1|sim_media_2")

                    if v.Push then
                        do!
                            push
                                codes
                                appid
                                "weapp_audit_fail"
                                [
                                    "Reason", v.Reason
                                    "FailTime", now ()
                                    "ScreenShot", "sim_media_1|sim_media_2"
                                ]
                | "delay_then_approve" ->
                    codes.Lock(fun () ->
                        audit.Status <- 4
                        audit.Reason <- v.Reason)

                    if v.Push then
                        do! push codes appid "weapp_audit_delay" [ "Reason", v.Reason; "DelayTime", now () ]

                    do! Task.Delay(max 0 v.DelayMs)
                    codes.Lock(fun () -> audit.Status <- 0)

                    if v.Push then
                        do! push codes appid "weapp_audit_success" [ "SuccTime", now () ]
                | "none" -> ()
                | _ ->
                    codes.Lock(fun () -> audit.Status <- 0)

                    if v.Push then
                        do! push codes appid "weapp_audit_success" [ "SuccTime", now () ]
            with _ ->
                ()
        }
        :> Task)
    |> ignore

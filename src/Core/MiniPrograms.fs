/// The pure core of mini-program deployments (facts §9): each target's state machine, how WeChat's
/// errcodes bear on it, and the audit verdicts (ext_json's per-account placeholders are ExtJson's). Nothing here
/// reads a clock or does IO: callers pass `now`, the stored target and what happened.
module WeChatFs.MiniPrograms

open System
open System.Text.Json
open System.Text.Json.Nodes

/// A deployment's id, chosen by the gateway when the deployment is created.
type DeploymentId = DeploymentId of string

module DeploymentId =
    let value (DeploymentId v) = v

/// The WeChat call a target is at; failed(step, ...) names it.
type Step =
    | Commit
    | SubmitAudit
    | AuditStatus
    | Release

module Step =
    let toText =
        function
        | Commit -> "commit"
        | SubmitAudit -> "submit_audit"
        | AuditStatus -> "get_auditstatus"
        | Release -> "release"

    let ofText =
        function
        | "commit" -> Some Commit
        | "submit_audit" -> Some SubmitAudit
        | "get_auditstatus" -> Some AuditStatus
        | "release" -> Some Release
        | _ -> None

/// Where one mini program stands in a deployment. `Committing`, `Submitting` and `Releasing` are
/// written before the call is made, so after a restart the target says what may have happened.
type TargetState =
    | Pending
    | Committing
    | Committed
    /// submit_audit sent, its answer not yet stored: after a restart, the latest audit is asked
    /// for before anything is submitted again.
    | Submitting
    | Auditing
    | AuditDelayed of reason: string
    | AuditPassed
    | Releasing
    | Released
    | Failed of step: Step * errcode: int option * reason: string
    | AuditRejected of reason: string * screenshots: string
    | Skipped of reason: string
    | Cancelled

module TargetState =
    let name =
        function
        | Pending -> "pending"
        | Committing -> "committing"
        | Committed -> "committed"
        | Submitting -> "submitting"
        | Auditing -> "auditing"
        | AuditDelayed _ -> "audit_delayed"
        | AuditPassed -> "audit_passed"
        | Releasing -> "releasing"
        | Released -> "released"
        | Failed _ -> "failed"
        | AuditRejected _ -> "audit_rejected"
        | Skipped _ -> "skipped"
        | Cancelled -> "cancelled"

    let all =
        [
            "pending"
            "committing"
            "committed"
            "submitting"
            "auditing"
            "audit_delayed"
            "audit_passed"
            "releasing"
            "released"
            "failed"
            "audit_rejected"
            "skipped"
            "cancelled"
        ]

/// What to do after the audit passes (the deployment's `release`).
type ReleaseMode =
    | Auto
    | Manual
    | NoRelease

module ReleaseMode =
    let toText =
        function
        | Auto -> "auto"
        | Manual -> "manual"
        | NoRelease -> "none"

    let ofText =
        function
        | "auto" -> Some Auto
        | "manual" -> Some Manual
        | "none" -> Some NoRelease
        | _ -> None

/// What a deployment asks of every target.
type Plan =
    {
        /// false: stop after commit (`audit: null`).
        Audit: bool
        Release: ReleaseMode
        /// `POST /{id}/release` was called (for `manual`).
        ReleaseRequested: bool
    }

/// One target as stored.
type Target =
    {
        AppId: Domain.AuthorizerAppId
        State: TargetState
        /// Attempts at the current step; reset when a step succeeds.
        Attempts: int
        LastErrcode: int option
        AuditId: int64 option
        /// When the worker should next look at it; None = only an event or an operator moves it.
        NextAt: DateTimeOffset option
        UpdatedAt: DateTimeOffset
    }

type Policy =
    {
        /// Attempts of one step before a transient error becomes failed.
        MaxAttempts: int
        /// The first retry's delay after a transient error; doubled each time, at most an hour.
        RetryDelay: TimeSpan
        /// After 61039 (code scan not finished).
        ScanRetryDelay: TimeSpan
        /// get_auditstatus when no audit event came within this long.
        AuditPollInterval: TimeSpan
        /// After 85085, or while the submit quota is used up.
        QuotaRetryDelay: TimeSpan
    }

module Policy =
    let defaults =
        {
            MaxAttempts = 5
            RetryDelay = TimeSpan.FromSeconds 30.
            ScanRetryDelay = TimeSpan.FromMinutes 5.
            AuditPollInterval = TimeSpan.FromMinutes 30.
            QuotaRetryDelay = TimeSpan.FromHours 1.
        }

/// An audit's outcome, from an event (facts §9.7) or get_auditstatus (facts §9.5).
type Verdict =
    | Approved
    | Rejected of reason: string * screenshots: string
    | Delayed of reason: string
    | StillAuditing
    /// status 3: withdrawn, e.g. by hand in WeChat's console.
    | Withdrawn

/// get_auditstatus's status: 0 approved, 1 rejected, 2 auditing, 3 withdrawn, 4 delayed.
let verdictOfStatus (status: int) (reason: string) (screenshots: string) =
    match status with
    | 0 -> Approved
    | 1 -> Rejected(reason, screenshots)
    | 4 -> Delayed reason
    | 3 -> Withdrawn
    | _ -> StillAuditing

/// What happened to a target.
type Input =
    | CommitDone
    /// submit_audit answered with its auditid.
    | Submitted of auditId: int64
    /// After a restart in `Submitting`: the latest audit, if it was submitted at or after this
    /// target's own attempt began (so it is ours), else None.
    | LatestAudit of (int64 * Verdict) option
    | Verdict of Verdict
    | ReleaseDone
    /// WeChat refused the step (Some errcode), or could not be reached (None).
    | CallFailed of step: Step * errcode: int option * reason: string
    /// The account no longer authorizes the platform (revoked, or 61003).
    | Unauthorized
    /// Submitting must wait: the submit quota is used up.
    | QuotaExhausted
    | Cancel
    | RetryFailed

/// What the worker does with a target now.
type Action =
    | Call of Step
    /// Nothing until an event or an operator, or until `at` (the poll or retry time).
    | Wait
    | Done

let isFinal =
    function
    | Released
    | Failed _
    | AuditRejected _
    | Skipped _
    | Cancelled -> true
    | Committed
    | AuditPassed
    | Pending
    | Committing
    | Submitting
    | Auditing
    | AuditDelayed _
    | Releasing -> false

/// A target that nothing further happens to under this plan (committed with no audit, passed
/// with no release) counts as finished too.
let isSettled (plan: Plan) (state: TargetState) =
    isFinal state
    || (state = Committed && not plan.Audit)
    || (state = AuditPassed && plan.Release = NoRelease)

/// How an errcode bears on a step: retried soon, retried after a while, or the end of this target.
type ErrorKind =
    | RetrySoon
    | RetryAt of TimeSpan
    | NoRetry
    | Revoked

/// The next 00:00 in China (UTC+8), when WeChat's daily quotas reset (45009).
let nextQuotaReset (now: DateTimeOffset) =
    let china = now.ToOffset(TimeSpan.FromHours 8.)
    DateTimeOffset(china.Date.AddDays 1., TimeSpan.FromHours 8.)

let classify (policy: Policy) (now: DateTimeOffset) (step: Step) (errcode: int option) =
    match errcode with
    | None
    | Some -1 -> RetrySoon
    // The token used was refused: a fresh one is fetched, then the step is tried again.
    | Some 40001
    | Some 40014
    | Some 42001 -> RetrySoon
    | Some 45009 -> RetryAt(nextQuotaReset now - now)
    | Some 61039 -> RetryAt policy.ScanRetryDelay
    | Some 85085 when step = SubmitAudit -> RetryAt policy.QuotaRetryDelay
    | Some 61003 -> Revoked
    | Some _ -> NoRetry

let private backoff (policy: Policy) (attempts: int) =
    let factor = Math.Pow(2., float (min 10 (max 0 (attempts - 1))))
    TimeSpan.FromTicks(min (TimeSpan.FromHours 1.).Ticks (int64 (float policy.RetryDelay.Ticks * factor)))

/// The state a step starts from: where a failed or retried step goes back to.
let private before =
    function
    | Commit -> Pending
    | SubmitAudit -> Committed
    | AuditStatus -> Auditing
    | Release -> AuditPassed

let private moved (now: DateTimeOffset) (t: Target) state nextAt =
    { t with
        State = state
        Attempts = 0
        NextAt = nextAt
        UpdatedAt = now
    }

/// After an audit verdict, in whatever state the target was waiting in.
let private applyVerdict (policy: Policy) (now: DateTimeOffset) (t: Target) (v: Verdict) =
    match v with
    | Approved -> moved now t AuditPassed (Some now)
    | Rejected(reason, shots) -> moved now t (AuditRejected(reason, shots)) None
    | Delayed reason -> moved now t (AuditDelayed reason) (Some(now + policy.AuditPollInterval))
    | StillAuditing ->
        { t with
            NextAt = Some(now + policy.AuditPollInterval)
            UpdatedAt = now
        }
    | Withdrawn -> moved now t (Failed(AuditStatus, None, "the audit was withdrawn")) None

/// Total: every (state, input) pair has an answer. Final states absorb everything but
/// `RetryFailed` (failed only); an input that does not fit the state changes nothing.
let evolve (policy: Policy) (now: DateTimeOffset) (t: Target) (input: Input) : Target =
    match t.State, input with
    | (Released | AuditRejected _ | Skipped _ | Cancelled), _ -> t
    | Failed(step, _, _), RetryFailed -> moved now t (before step) (Some now)
    | Failed _, _ -> t
    | _, Cancel -> moved now t Cancelled None
    | _, Unauthorized -> moved now t (Skipped "unauthorized") None
    | _, RetryFailed -> t
    | (Pending | Committing), CommitDone -> moved now t Committed (Some now)
    | _, CommitDone -> t
    | (Committed | Submitting), Submitted id ->
        { moved now t Auditing (Some(now + policy.AuditPollInterval)) with
            AuditId = Some id
        }
    // The verdict may have come first (an event racing the answer): keep it, note the id.
    | (Auditing | AuditDelayed _ | AuditPassed | Releasing), Submitted id when t.AuditId.IsNone ->
        { t with AuditId = Some id }
    | _, Submitted _ -> t
    | Submitting, LatestAudit(Some(id, v)) -> applyVerdict policy now { t with AuditId = Some id } v
    | Submitting, LatestAudit None -> moved now t Committed (Some now)
    | _, LatestAudit _ -> t
    | (Submitting | Auditing | AuditDelayed _), Verdict v -> applyVerdict policy now t v
    | _, Verdict _ -> t
    | Releasing, ReleaseDone -> moved now t Released None
    | _, ReleaseDone -> t
    | (Committed | Submitting), QuotaExhausted ->
        { t with
            State = Committed
            NextAt = Some(now + policy.QuotaRetryDelay)
            UpdatedAt = now
        }
    | _, QuotaExhausted -> t
    // Only the step the target is at can fail; a late answer of another step changes nothing.
    | (Pending | Committing), CallFailed(Commit, _, _)
    | (Committed | Submitting), CallFailed(SubmitAudit, _, _)
    | (Submitting | Auditing | AuditDelayed _), CallFailed(AuditStatus, _, _)
    | (AuditPassed | Releasing), CallFailed(Release, _, _) ->
        let step, code, reason =
            match input with
            | CallFailed(s, c, r) -> s, c, r
            | _ -> Commit, None, ""

        let attempts = t.Attempts + 1

        let failed () =
            { t with
                State = Failed(step, code, reason)
                Attempts = attempts
                LastErrcode = code
                NextAt = None
                UpdatedAt = now
            }

        let retryAfter (delay: TimeSpan) =
            { t with
                State = before step
                Attempts = attempts
                LastErrcode = code
                NextAt = Some(now + delay)
                UpdatedAt = now
            }

        match classify policy now step code with
        | Revoked -> moved now { t with LastErrcode = code } (Skipped "unauthorized") None
        | NoRetry -> failed ()
        | RetrySoon when attempts >= policy.MaxAttempts -> failed ()
        | RetrySoon -> retryAfter (backoff policy attempts)
        // A quota or a scan is waited out, not counted against the step.
        | RetryAt delay ->
            { retryAfter delay with
                Attempts = t.Attempts
            }
    | _, CallFailed _ -> t

/// What the worker does with the target now (a state written before a call means: call again, or
/// for `Submitting`, look at the latest audit first).
let next (plan: Plan) (now: DateTimeOffset) (t: Target) : Action =
    let due = t.NextAt |> Option.exists (fun at -> at <= now)

    match t.State with
    | Released
    | Failed _
    | AuditRejected _
    | Skipped _
    | Cancelled -> Done
    | Committed when not plan.Audit -> Done
    | AuditPassed when plan.Release = NoRelease -> Done
    | _ when not due -> Wait
    | Pending
    | Committing -> Call Commit
    | Committed -> Call SubmitAudit
    | Submitting -> Call AuditStatus
    | Auditing
    | AuditDelayed _ -> Call AuditStatus
    | AuditPassed when plan.Release = Auto || plan.ReleaseRequested -> Call Release
    | AuditPassed -> Wait
    | Releasing -> Call Release

/// The state written just before the call `step` is made.
let inFlight (step: Step) (t: Target) =
    match step, t.State with
    | Commit, _ -> Committing
    | SubmitAudit, _ -> Submitting
    | Release, _ -> Releasing
    | AuditStatus, s -> s

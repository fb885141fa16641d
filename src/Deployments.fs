/// Deployments as durable jobs: creating one (its targets resolved once), the worker that moves
/// each target through MiniPrograms.evolve one WeChat call at a time, the audit events from the
/// message URL, and the operator's controls (pause, resume, cancel, retry-failed, release).
module WeChatFs.Deployments

open System
open System.Text.Json
open System.Text.Json.Nodes
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Store
open WeChatFs.MiniPrograms
open WeChatFs.DeploymentStore
open WeChatFs.CodeManagement

/// Permission set 18: development management, needed for every code-management call (facts §9).
let codeManagementFuncId = 18

type TargetSpec =
    | AllMiniPrograms
    | AppIds of string list
    | TenantTargets of string

type DeploymentRequest =
    {
        TemplateId: int64
        UserVersion: string
        UserDesc: string
        ExtJson: JsonNode
        Audit: string option
        Release: ReleaseMode
        Targets: TargetSpec
        TargetsJson: string
        MaxConcurrency: int
    }

let defaultMaxConcurrency = 4

/// The request body of `POST /api/miniprogram/deployments`; every problem is named.
let parseRequest (body: JsonNode) : Result<DeploymentRequest, string list> =
    match body with
    | :? JsonObject as o ->
        let errors = ResizeArray<string>()

        let str (name: string) =
            match o[name] with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String -> v.GetValue<string>()
            | _ -> null

        let templateId =
            match o["template_id"] with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.Number -> v.GetValue<int64>()
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String ->
                match Int64.TryParse(v.GetValue<string>()) with
                | true, n -> n
                | _ -> -1L
            | _ -> -1L

        if templateId < 0L then
            errors.Add "template_id: a template id from the library is required"

        let userVersion = str "user_version"

        if String.IsNullOrWhiteSpace userVersion || userVersion.Length > 64 then
            errors.Add "user_version: required, at most 64 characters"

        let userDesc = str "user_desc" |> Option.ofObj |> Option.defaultValue ""

        let extJson =
            match o["ext_json"] with
            | null -> JsonObject() :> JsonNode
            | :? JsonObject as e -> e :> JsonNode
            | _ ->
                errors.Add "ext_json: an object (it is sent to WeChat as a JSON-encoded string)"
                null

        let audit =
            match o["audit"] with
            | null -> None
            | :? JsonObject as a -> Some(a.ToJsonString())
            | _ ->
                errors.Add "audit: the submit_audit body (item_list, ...) or null"
                None

        let release =
            match str "release" with
            | null when audit.IsNone -> NoRelease
            | null -> Auto
            | r ->
                match ReleaseMode.ofText r with
                | Some m -> m
                | None ->
                    errors.Add "release: auto, manual or none"
                    NoRelease

        let targets =
            match o["targets"] with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String && v.GetValue<string>() = "all" ->
                AllMiniPrograms
            | :? JsonArray as a ->
                a
                |> Seq.choose (fun n ->
                    match n with
                    | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String -> Some(v.GetValue<string>())
                    | _ -> None)
                |> Seq.distinct
                |> List.ofSeq
                |> AppIds
            | :? JsonObject as t when (t["tenant"] :? JsonValue) -> TenantTargets(t["tenant"].GetValue<string>())
            | _ ->
                errors.Add "targets: \"all\", a list of appids, or {\"tenant\": \"...\"}"
                AppIds []

        let maxConcurrency =
            match o["max_concurrency"] with
            | null -> defaultMaxConcurrency
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.Number && v.GetValue<int>() >= 1 ->
                min 64 (v.GetValue<int>())
            | _ ->
                errors.Add "max_concurrency: a whole number from 1 to 64"
                defaultMaxConcurrency

        if release <> NoRelease && audit.IsNone then
            errors.Add "release: with audit null nothing can be released; use \"none\""

        if errors.Count > 0 then
            Error(List.ofSeq errors)
        else
            Ok
                {
                    TemplateId = templateId
                    UserVersion = userVersion
                    UserDesc = userDesc
                    ExtJson = extJson
                    Audit = audit
                    Release = release
                    Targets = targets
                    TargetsJson =
                        match o["targets"] with
                        | null -> "null"
                        | t -> t.ToJsonString()
                    MaxConcurrency = maxConcurrency
                }
    | _ -> Error [ "a JSON object is required" ]

/// A target may be deployed to: an authorized mini program with the code-management permission set.
let isDeployable (a: Authorizer) =
    a.Status = Authorized
    && (a.Profile |> Option.exists (fun p -> p.Kind = MiniProgram))
    && List.contains codeManagementFuncId a.FuncIds

let policyOf (o: MiniProgramOptions) : Policy =
    {
        MaxAttempts = o.MaxAttempts
        RetryDelay = o.RetryDelay
        ScanRetryDelay = o.ScanRetryDelay
        AuditPollInterval = o.AuditPollInterval
        QuotaRetryDelay = o.QuotaRetryDelay
    }

/// A plan's settled targets by state name (see MiniPrograms.isSettled).
let settledName (plan: Plan) (name: string) =
    match name with
    | "released"
    | "failed"
    | "audit_rejected"
    | "skipped"
    | "cancelled" -> true
    | "committed" -> not plan.Audit
    | "audit_passed" -> plan.Release = NoRelease
    | _ -> false

type DeploymentService
    (
        options: GatewayOptions,
        store: IStore,
        deployments: IDeploymentStore,
        code: CodeClient,
        clock: TimeProvider,
        logger: ILogger<DeploymentService>
    ) =
    let policy = policyOf options.MiniProgram
    let wake = new SemaphoreSlim(0, Int32.MaxValue)

    /// Writes `input`'s effect on the freshest row, again on a fresh read if someone wrote between.
    let rec apply (t: StoredTarget) (input: Input) (release: bool) (attempt: int) =
        task {
            let updated =
                { t with
                    Target = evolve policy (clock.GetUtcNow()) t.Target input
                }

            let! saved = deployments.Save(updated, t.Version, release)

            if saved then
                return Some { updated with Version = t.Version + 1 }
            elif attempt >= 20 then
                return None
            else
                match! deployments.GetTarget(t.DeploymentId, t.Target.AppId) with
                | None -> return None
                | Some fresh -> return! apply fresh input release (attempt + 1)
        }

    let tenantOf (a: Authorizer) = a.Tenant |> Option.map Ids.tenant

    let resolve (spec: TargetSpec) =
        task {
            match spec with
            | AppIds ids ->
                let found = ResizeArray()

                for id in ids do
                    let! a = store.GetAuthorizer(AuthorizerAppId id)

                    found.Add(
                        match a with
                        | Some a when a.Status = Authorized -> id, tenantOf a, true
                        | Some a -> id, tenantOf a, false
                        | None -> id, None, false
                    )

                return List.ofSeq found
            | AllMiniPrograms
            | TenantTargets _ ->
                let tenant =
                    match spec with
                    | TenantTargets t -> Some(TenantId t)
                    | _ -> None

                let found = ResizeArray()
                let mutable offset = 0
                let mutable more = true

                while more do
                    let! page =
                        store.ListAuthorizers
                            {
                                Tenant = tenant
                                Status = Some Authorized
                                Offset = offset
                                Limit = 500
                            }

                    for a in page.Items do
                        if isDeployable a then
                            found.Add(Ids.authorizerAppId a.AppId, tenantOf a, true)

                    offset <- offset + page.Items.Length
                    more <- not page.Items.IsEmpty && offset < page.Total

                return List.ofSeq found
        }

    member _.Store = deployments
    member _.Clock = clock
    member _.Policy = policy
    member _.Wake() = wake.Release() |> ignore
    member _.WaitForWork(timeout: TimeSpan, stopping: CancellationToken) = wake.WaitAsync(timeout, stopping)

    member this.Create(request: DeploymentRequest) =
        task {
            let now = clock.GetUtcNow()
            let id = DeploymentId(Guid.CreateVersion7().ToString("N"))
            let! resolved = resolve request.Targets

            let targets =
                resolved
                |> List.map (fun (appid, tenant, usable) ->
                    appid,
                    tenant,
                    {
                        AppId = appid
                        State = if usable then Pending else Skipped "unauthorized"
                        Attempts = 0
                        LastErrcode = None
                        AuditId = None
                        NextAt = if usable then Some now else None
                        UpdatedAt = now
                    })

            let deployment =
                {
                    Id = id
                    TemplateId = request.TemplateId
                    UserVersion = request.UserVersion
                    UserDesc = request.UserDesc
                    ExtJson = request.ExtJson.ToJsonString()
                    Audit = request.Audit
                    Release = request.Release
                    ReleaseRequested = false
                    MaxConcurrency = request.MaxConcurrency
                    Targets = request.TargetsJson
                    Status = Running
                    Note = None
                    QuotaRest = None
                    QuotaLimit = None
                    QuotaCheckedAt = None
                    CreatedAt = now
                    UpdatedAt = now
                }

            do! deployments.Create(deployment, targets)
            this.Wake()
            return deployment
        }

    /// Every target of the deployment in one of `states`, given `input`.
    member private this.ApplyAll(id: DeploymentId, states: string list, input: Input) =
        task {
            for state in states do
                let mutable more = true

                while more do
                    let! batch = deployments.Targets(id, Some state, 0, 500)
                    let mutable changed = 0

                    for t in batch do
                        match! apply t input false 0 with
                        | Some u when TargetState.name u.Target.State <> state -> changed <- changed + 1
                        | _ -> ()

                    // A batch that changed nothing (e.g. manual release of targets already moving) ends it.
                    more <- batch.Length = 500 && changed > 0

            this.Wake()
        }

    member _.Pause(id) =
        deployments.SetStatus(id, Paused, clock.GetUtcNow())

    member this.Resume(id) =
        task {
            do! deployments.SetStatus(id, Running, clock.GetUtcNow())
            this.Wake()
        }

    member this.Cancel(id) =
        task {
            do! deployments.SetStatus(id, DeploymentStatus.Cancelled, clock.GetUtcNow())

            let open' =
                TargetState.all
                |> List.filter (fun s -> s <> "released" && s <> "failed" && s <> "audit_rejected" && s <> "skipped")

            do! this.ApplyAll(id, open', Cancel)
        }

    member this.RetryFailed(id) =
        task {
            do! deployments.SetStatus(id, Running, clock.GetUtcNow())
            do! this.ApplyAll(id, [ "failed" ], RetryFailed)
        }

    /// `manual`: every audit_passed target is released (and those passing later too).
    member this.Release(id) =
        task {
            do! deployments.RequestRelease(id, clock.GetUtcNow())
            // Waiting passed targets have no time set; a Verdict that changes nothing gives them one.
            let! passed = deployments.Targets(id, Some "audit_passed", 0, Int32.MaxValue)

            for t in passed do
                let! _ =
                    deployments.Save(
                        { t with
                            Target =
                                { t.Target with
                                    NextAt = Some(clock.GetUtcNow())
                                }
                        },
                        t.Version,
                        false
                    )

                ()

            this.Wake()
        }

    /// weapp_audit_success / fail / delay on the mini program's message URL (facts §9.7), matched to
    /// the account's latest submission. Stored before WeChat hears `success`.
    member this.OnMessage(appid: AuthorizerAppId, m: Messages.Message) : Task =
        let verdict =
            match m.Body with
            | Messages.WeappAuditSuccess _ -> Some Approved
            | Messages.WeappAuditFail(reason, _, shots) -> Some(Rejected(reason, defaultArg shots ""))
            | Messages.WeappAuditDelay(reason, _) -> Some(Delayed reason)
            | _ -> None

        match verdict with
        | None -> Task.CompletedTask
        | Some v ->
            task {
                match! deployments.AuditInFlight(Ids.authorizerAppId appid) with
                | None ->
                    logger.LogInformation(
                        "audit event for {AppId} matches no deployment in flight",
                        Ids.authorizerAppId appid
                    )
                | Some t ->
                    let! _ = apply t (Verdict v) false 0
                    this.Wake()
            }

    /// One step of one claimed target: at most one WeChat call (plus queryquota before a submission).
    member this.Process(t: StoredTarget) =
        task {
            match! deployments.Get t.DeploymentId with
            | None -> ()
            | Some d when d.Status <> Running ->
                // Paused or cancelled after the claim: the claim ends, the target waits as it is.
                let! _ = deployments.Save(t, t.Version, true)
                ()
            | Some d ->
                let plan = Deployment.plan d
                let now = clock.GetUtcNow()
                let appid = AuthorizerAppId t.Target.AppId

                let failed step (e: CallError) =
                    if isUnauthorized e then
                        Unauthorized
                    else
                        CallFailed(step, errcodeOfCall e, describeCall e)

                match next plan now t.Target with
                | Done
                | Wait ->
                    let! _ =
                        deployments.Save(
                            { t with
                                Target = { t.Target with NextAt = None }
                            },
                            t.Version,
                            true
                        )

                    ()
                | Call step ->
                    // Written before the call: after a crash the target says what may have happened.
                    let flying =
                        { t with
                            Target =
                                { t.Target with
                                    State = inFlight step t.Target
                                    UpdatedAt = now
                                }
                        }

                    let! quotaLeft =
                        if step = SubmitAudit then
                            this.CheckQuota(d, appid)
                        else
                            Task.FromResult true

                    if not quotaLeft then
                        let! _ = apply t QuotaExhausted true 0
                        ()
                    else
                        let! savedFlying = deployments.Save(flying, t.Version, false)

                        if savedFlying then
                            let flying = { flying with Version = t.Version + 1 }

                            let! input =
                                task {
                                    match step, t.Target.State with
                                    | Commit, _ ->
                                        let ext = renderExtJson (JsonNode.Parse d.ExtJson) t.Target.AppId t.Tenant
                                        let! r = code.Commit(appid, d.TemplateId, ext, d.UserVersion, d.UserDesc)

                                        return
                                            match r with
                                            | Ok() -> CommitDone
                                            | Error e -> failed Commit e
                                    | SubmitAudit, _ ->
                                        let! r = code.SubmitAudit(appid, defaultArg d.Audit "{}")

                                        match r with
                                        | Ok id -> return Submitted id
                                        | Error e when errcodeOfCall e = Some 85085 ->
                                            // Say so on the deployment; no one submits until the quota is asked again.
                                            let note = "WeChat answered 85085 (submit quota reached): submitting waits"

                                            do! deployments.SetQuota(d.Id, Some 0, d.QuotaLimit, Some note, now)
                                            return failed SubmitAudit e
                                        | Error e -> return failed SubmitAudit e
                                    | AuditStatus, Submitting ->
                                        // After a restart: ours only if submitted since this attempt began.
                                        let! r = code.LatestAuditStatus appid
                                        let since = t.Target.UpdatedAt.ToUnixTimeSeconds() - 1L

                                        return
                                            match r with
                                            | Ok a when a.SubmittedAt |> Option.exists (fun s -> s >= since) ->
                                                LatestAudit(
                                                    a.AuditId
                                                    |> Option.map (fun id ->
                                                        id, verdictOfStatus a.Status a.Reason a.Screenshots)
                                                )
                                            | Ok _ -> LatestAudit None
                                            | Error e when isUnauthorized e -> Unauthorized
                                            | Error _ -> LatestAudit None
                                    | AuditStatus, _ ->
                                        let! r =
                                            match t.Target.AuditId with
                                            | Some id -> code.AuditStatus(appid, id)
                                            | None -> code.LatestAuditStatus appid

                                        return
                                            match r with
                                            | Ok a -> Verdict(verdictOfStatus a.Status a.Reason a.Screenshots)
                                            | Error e -> failed AuditStatus e
                                    | Release, _ ->
                                        let! r = code.Release appid

                                        return
                                            match r with
                                            | Ok() -> ReleaseDone
                                            | Error e -> failed Release e
                                }

                            let! _ = apply flying input true 0
                            ()
        }

    /// Before submitting: the submit quota from wxa/queryquota (when the server offers it), asked at
    /// most every QuotaCheckInterval per deployment; none left means wait rather than burn 85085s.
    member private _.CheckQuota(d: Deployment, appid: AuthorizerAppId) =
        task {
            let now = clock.GetUtcNow()

            let fresh =
                d.QuotaCheckedAt
                |> Option.exists (fun at -> now - at < options.MiniProgram.QuotaCheckInterval)

            let usedUp (rest: int) (limit: int option) =
                Some
                    $"submit quota used up ({rest} of {defaultArg limit 0} left): submitting waits until wxa/queryquota reports more"

            if fresh then
                let! reserved = deployments.TakeQuota d.Id

                if not reserved && d.Note.IsNone then
                    do! deployments.SetQuota(d.Id, Some 0, d.QuotaLimit, usedUp 0 d.QuotaLimit, d.QuotaCheckedAt.Value)

                return reserved
            else
                match! code.QueryQuota appid with
                | Ok(Some rest, limit) ->
                    let note = if rest > 0 then None else usedUp rest limit

                    do! deployments.SetQuota(d.Id, Some rest, limit, note, now)
                    return! deployments.TakeQuota d.Id
                | _ ->
                    // No queryquota on this server (or it failed): submit, and let 85085 say so.
                    do! deployments.SetQuota(d.Id, None, None, d.Note, now)
                    return true
        }

    /// Running deployments whose targets are all settled become completed.
    member _.CompleteFinished() =
        task {
            let! running = deployments.RunningIds()

            for id in running do
                match! deployments.Get id with
                | Some d ->
                    let! counts = deployments.Counts id
                    let plan = Deployment.plan d

                    if counts |> List.forall (fun (state, _) -> settledName plan state) then
                        do! deployments.SetStatus(id, Completed, clock.GetUtcNow())
                | None -> ()
        }

/// Each instance claims due targets (never more than a deployment's max_concurrency at once, across
/// instances) and works them; a crashed instance's claims run out after ClaimLease.
type DeploymentWorker(service: DeploymentService, options: GatewayOptions, logger: ILogger<DeploymentWorker>) =
    inherit BackgroundService()

    /// The most targets one instance works on at once, whatever the deployments allow.
    let capacity = 64

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            let inFlight = ref 0
            let mutable lastCompletion = DateTimeOffset.MinValue
            let o = options.MiniProgram

            while not stopping.IsCancellationRequested do
                let mutable claimedAny = false

                try
                    let free = capacity - Volatile.Read &inFlight.contents

                    if free > 0 then
                        let now = service.Clock.GetUtcNow()
                        let! claimed = service.Store.Claim(options.InstanceId, now, now + o.ClaimLease, free)

                        claimedAny <- not claimed.IsEmpty

                        for t in claimed do
                            Interlocked.Increment &inFlight.contents |> ignore

                            Task.Run(fun () ->
                                task {
                                    try
                                        try
                                            do! service.Process t
                                        with ex ->
                                            logger.LogError(ex, "deployment step for {AppId} failed", t.Target.AppId)
                                    finally
                                        Interlocked.Decrement &inFlight.contents |> ignore
                                        service.Wake()
                                }
                                :> Task)
                            |> ignore

                    if not claimedAny && DateTimeOffset.UtcNow - lastCompletion > o.WorkerInterval then
                        lastCompletion <- DateTimeOffset.UtcNow
                        do! service.CompleteFinished()
                with ex ->
                    logger.LogError(ex, "deployment worker pass failed")

                if not claimedAny then
                    try
                        let! _ = service.WaitForWork(o.WorkerInterval, stopping)
                        ()
                    with :? OperationCanceledException ->
                        ()

            // Stopping: let the calls in flight finish and be recorded, so nothing WeChat did is lost.
            let deadline = DateTime.UtcNow.AddSeconds 10.

            while Volatile.Read &inFlight.contents > 0 && DateTime.UtcNow < deadline do
                do! Task.Delay 20
        }

/// Deployments as durable jobs: creating one (its targets resolved once), moving each target
/// through MiniPrograms.evolve one WeChat call at a time, the audit events from the message URL,
/// and the operator's controls (pause, resume, cancel, retry-failed, release).
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
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.MiniPrograms
open WeChatFs.ExtJson
open WeChatFs.DeploymentRecords
open WeChatFs.DeploymentStore
open WeChatFs.CodeManagement
open WeChatFs.DeploymentRequests
open WeChatFs.SubmitQuota

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
    let quota = SubmitQuota(options.MiniProgram, deployments, code, clock)

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

    let resolve spec = resolveTargets store spec

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
                    AuthorizerAppId appid,
                    tenant |> Option.map TenantId,
                    {
                        AppId = AuthorizerAppId appid
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
                match! deployments.AuditInFlight appid with
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
                let appid = t.Target.AppId

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
                            quota.Reserve(d, appid)
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
                                        let ext =
                                            renderExtJson
                                                (JsonNode.Parse d.ExtJson)
                                                (Ids.authorizerAppId t.Target.AppId)
                                                (t.Tenant |> Option.map Ids.tenant)

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

                        // Answered (or not sent at all): WeChat's own count covers it from now on.
                        if step = SubmitAudit then
                            quota.Ended d.Id
        }

    /// Before submitting: the submit quota from wxa/queryquota (when the server offers it), asked at
    /// most every QuotaCheckInterval per deployment; none left means wait rather than burn 85085s.
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

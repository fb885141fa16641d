/// Deployments and their targets in the store (migration 6), on the store's own connections, for
/// SQLite and PostgreSQL alike. Targets are claimed by one worker at a time (at most the
/// deployment's max_concurrency at once, across instances) and written with a version check, so an
/// audit event and a worker never overwrite each other.
module WeChatFs.DeploymentStore

open System
open System.Data.Common
open System.Threading.Tasks
open WeChatFs.MiniPrograms
open WeChatFs.SqlAccess
open WeChatFs.DeploymentRecords

let private stateColumns (s: TargetState) =
    // step, errcode, reason, screenshots
    match s with
    | Failed(step, code, reason) -> Some(Step.toText step), code, Some reason, None
    | AuditRejected(reason, shots) -> None, None, Some reason, Some shots
    | AuditDelayed reason
    | Skipped reason -> None, None, Some reason, None
    | _ -> None, None, None, None

let private stateOf (name: string) (step: string option) (code: int option) (reason: string option) shots =
    let reason = defaultArg reason ""

    match name with
    | "pending" -> Pending
    | "committing" -> Committing
    | "committed" -> Committed
    | "submitting" -> Submitting
    | "auditing" -> Auditing
    | "audit_delayed" -> AuditDelayed reason
    | "audit_passed" -> AuditPassed
    | "releasing" -> Releasing
    | "released" -> Released
    | "audit_rejected" -> AuditRejected(reason, defaultArg shots "")
    | "skipped" -> Skipped reason
    | "cancelled" -> TargetState.Cancelled
    | _ -> Failed(step |> Option.bind Step.ofText |> Option.defaultValue Commit, code, reason)

let private optInt (r: DbDataReader) i = int64Of r i |> Option.map int

let private targetColumns =
    "deployment_id, appid, tenant, state, step, errcode, reason, screenshots, attempts, audit_id, next_at, version, created_at, updated_at, last_errcode"

let private readTarget (r: DbDataReader) =
    let code = optInt r 5

    {
        DeploymentId = DeploymentId(r.GetString 0)
        Tenant = text r 2 |> Option.map Domain.TenantId
        Target =
            {
                AppId = Domain.AuthorizerAppId(r.GetString 1)
                State = stateOf (r.GetString 3) (text r 4) code (text r 6) (text r 7)
                Attempts = Convert.ToInt32(r.GetValue 8)
                LastErrcode = optInt r 14
                AuditId = int64Of r 9
                NextAt = int64Of r 10 |> Option.map ofMs
                UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 13))
            }
        Version = Convert.ToInt32(r.GetValue 11)
        CreatedAt = ofMs (Convert.ToInt64(r.GetValue 12))
    }

let private deploymentColumns =
    "id, template_id, user_version, user_desc, ext_json, audit, release_mode, release_requested, max_concurrency, targets, status, note, quota_rest, quota_limit, quota_checked_at, created_at, updated_at"

let private readDeployment (r: DbDataReader) =
    {
        Id = DeploymentId(r.GetString 0)
        TemplateId = Convert.ToInt64(r.GetValue 1)
        UserVersion = r.GetString 2
        UserDesc = r.GetString 3
        ExtJson = r.GetString 4
        Audit = text r 5
        Release = ReleaseMode.ofText (r.GetString 6) |> Option.defaultValue Auto
        ReleaseRequested = Convert.ToInt32(r.GetValue 7) <> 0
        MaxConcurrency = Convert.ToInt32(r.GetValue 8)
        Targets = r.GetString 9
        Status = DeploymentStatus.ofText (r.GetString 10)
        Note = text r 11
        QuotaRest = optInt r 12
        QuotaLimit = optInt r 13
        QuotaCheckedAt = int64Of r 14 |> Option.map ofMs
        CreatedAt = ofMs (Convert.ToInt64(r.GetValue 15))
        UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 16))
    }

let private opt (v: 'a option) = v |> Option.map box |> Option.toObj

let private targetParams (id: DeploymentId) (appid: Domain.AuthorizerAppId) (tenant: string option) (t: Target) =
    let step, code, reason, shots = stateColumns t.State

    [
        "@d", box (DeploymentId.value id)
        "@a", box (Domain.Ids.authorizerAppId appid)
        "@tenant", opt tenant
        "@state", box (TargetState.name t.State)
        "@step", opt step
        "@code", opt code
        "@reason", opt reason
        "@shots", opt shots
        "@attempts", box t.Attempts
        "@audit", opt t.AuditId
        "@next", opt (t.NextAt |> Option.map ms)
        "@updated", box (ms t.UpdatedAt)
        "@last", opt t.LastErrcode
    ]

type internal SqlDeploymentStore(access: ISqlAccess) =
    let dialect = access.Dialect
    let run work = access.Run work

    let inTransaction (work: DbConnection -> DbTransaction -> Task<'a>) =
        run (fun conn ->
            task {
                use! tx = conn.BeginTransactionAsync()
                let! result = work conn tx
                do! tx.CommitAsync()
                return result
            })

    let lockRow =
        if dialect.Engine = Settings.Postgres then
            " FOR UPDATE"
        else
            ""

    interface IDeploymentStore with
        member _.Create(d, targets) =
            inTransaction (fun conn tx ->
                task {
                    let! _ =
                        exec
                            conn
                            tx
                            $"INSERT INTO deployments ({deploymentColumns}) VALUES (@id, @tpl, @uv, @ud, @ext, @audit, @rel, 0, @max, @targets, @status, NULL, NULL, NULL, NULL, @now, @now)"
                            [
                                "@id", box (DeploymentId.value d.Id)
                                "@tpl", box d.TemplateId
                                "@uv", box d.UserVersion
                                "@ud", box d.UserDesc
                                "@ext", box d.ExtJson
                                "@audit", opt d.Audit
                                "@rel", box (ReleaseMode.toText d.Release)
                                "@max", box d.MaxConcurrency
                                "@targets", box d.Targets
                                "@status", box (DeploymentStatus.toText d.Status)
                                "@now", box (ms d.CreatedAt)
                            ]

                    for appid, tenant, t in targets do
                        let! _ =
                            exec
                                conn
                                tx
                                "INSERT INTO deployment_targets (deployment_id, appid, tenant, state, step, errcode, reason, screenshots, attempts, audit_id, next_at, claimed_by, claimed_until, version, created_at, updated_at, last_errcode) VALUES (@d, @a, @tenant, @state, @step, @code, @reason, @shots, @attempts, @audit, @next, NULL, NULL, 0, @updated, @updated, @last)"
                                (targetParams d.Id appid (tenant |> Option.map Domain.Ids.tenant) t)

                        ()
                })
            :> Task

        member _.Get id =
            run (fun conn ->
                tryOne
                    conn
                    null
                    $"SELECT {deploymentColumns} FROM deployments WHERE id = @id"
                    [ "@id", box (DeploymentId.value id) ]
                    readDeployment)

        member _.List(offset, limit) =
            page
                access
                "deployments"
                deploymentColumns
                ("", [])
                "created_at DESC, id DESC"
                (offset, limit)
                readDeployment

        member _.SetStatus(id, status, now) =
            run (fun conn ->
                exec
                    conn
                    null
                    "UPDATE deployments SET status = @s, updated_at = @now WHERE id = @id"
                    [
                        "@s", box (DeploymentStatus.toText status)
                        "@now", box (ms now)
                        "@id", box (DeploymentId.value id)
                    ])
            :> Task

        member _.RequestRelease(id, now) =
            run (fun conn ->
                exec
                    conn
                    null
                    "UPDATE deployments SET release_requested = 1, updated_at = @now WHERE id = @id"
                    [ "@now", box (ms now); "@id", box (DeploymentId.value id) ])
            :> Task

        member _.SetQuota(id, rest, limit, note, now) =
            run (fun conn ->
                exec
                    conn
                    null
                    "UPDATE deployments SET quota_rest = @r, quota_limit = @l, quota_checked_at = @now, note = @note WHERE id = @id"
                    [
                        "@r", opt rest
                        "@l", opt limit
                        "@now", box (ms now)
                        "@note", opt note
                        "@id", box (DeploymentId.value id)
                    ])
            :> Task

        member _.TakeQuota id =
            run (fun conn ->
                task {
                    let! n =
                        exec
                            conn
                            null
                            "UPDATE deployments SET quota_rest = quota_rest - 1 WHERE id = @id AND (quota_rest IS NULL OR quota_rest > 0)"
                            [ "@id", box (DeploymentId.value id) ]

                    return n > 0
                })

        member _.Counts id =
            run (fun conn ->
                query
                    conn
                    null
                    "SELECT state, COUNT(*) FROM deployment_targets WHERE deployment_id = @d GROUP BY state"
                    [ "@d", box (DeploymentId.value id) ]
                    (fun r -> r.GetString 0, Convert.ToInt32(r.GetValue 1)))

        member _.Targets(id, state, offset, limit) =
            run (fun conn ->
                let filter, ps =
                    match state with
                    | Some s -> " AND state = @s", [ "@s", box s ]
                    | None -> "", []

                query
                    conn
                    null
                    $"SELECT {targetColumns} FROM deployment_targets WHERE deployment_id = @d{filter} ORDER BY appid LIMIT @l OFFSET @o"
                    ([
                        "@d", box (DeploymentId.value id)
                        "@l", box (int64 limit)
                        "@o", box (int64 offset)
                     ]
                     @ ps)
                    readTarget)

        member _.GetTarget(id, appid) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    $"SELECT {targetColumns} FROM deployment_targets WHERE deployment_id = @d AND appid = @a"
                    [
                        "@d", box (DeploymentId.value id)
                        "@a", box (Domain.Ids.authorizerAppId appid)
                    ]
                    readTarget)

        member _.ChangedSince(id, since, limit) =
            run (fun conn ->
                query
                    conn
                    null
                    $"SELECT {targetColumns} FROM deployment_targets WHERE deployment_id = @d AND updated_at > @since ORDER BY updated_at LIMIT @l"
                    [
                        "@d", box (DeploymentId.value id)
                        "@since", box (ms since)
                        "@l", box (int64 limit)
                    ]
                    readTarget)

        member _.Claim(holder, now, until, max) =
            run (fun conn ->
                task {
                    let! running =
                        query
                            conn
                            null
                            "SELECT id FROM deployments WHERE status = 'running' ORDER BY created_at"
                            []
                            (fun r -> r.GetString 0)

                    let claimed = ResizeArray<StoredTarget>()

                    for id in running do
                        if claimed.Count < max then
                            use! tx = conn.BeginTransactionAsync()
                            // The deployment's row is the lock under which its live claims are counted.
                            let! cap =
                                scalar
                                    conn
                                    tx
                                    $"SELECT max_concurrency FROM deployments WHERE id = @d AND status = 'running'{lockRow}"
                                    [ "@d", box id ]

                            match cap with
                            | null -> ()
                            | :? DBNull -> ()
                            | cap ->
                                let! live =
                                    scalar
                                        conn
                                        tx
                                        "SELECT COUNT(*) FROM deployment_targets WHERE deployment_id = @d AND claimed_until > @now"
                                        [ "@d", box id; "@now", box (ms now) ]

                                let room = min (Convert.ToInt32 cap - Convert.ToInt32 live) (max - claimed.Count)

                                if room > 0 then
                                    let! due =
                                        query
                                            conn
                                            tx
                                            $"SELECT {targetColumns} FROM deployment_targets WHERE deployment_id = @d AND next_at <= @now AND (claimed_until IS NULL OR claimed_until <= @now) ORDER BY next_at LIMIT @room"
                                            [ "@d", box id; "@now", box (ms now); "@room", box (int64 room) ]
                                            readTarget

                                    for t in due do
                                        let! _ =
                                            exec
                                                conn
                                                tx
                                                "UPDATE deployment_targets SET claimed_by = @h, claimed_until = @until WHERE deployment_id = @d AND appid = @a"
                                                [
                                                    "@h", box holder
                                                    "@until", box (ms until)
                                                    "@d", box id
                                                    "@a", box (Domain.Ids.authorizerAppId t.Target.AppId)
                                                ]

                                        claimed.Add t

                            do! tx.CommitAsync()

                    return List.ofSeq claimed
                })

        member _.Save(t, expected, release) =
            run (fun conn ->
                task {
                    let claim =
                        if release then
                            ", claimed_by = NULL, claimed_until = NULL"
                        else
                            ""

                    let! n =
                        exec
                            conn
                            null
                            $"UPDATE deployment_targets SET state = @state, step = @step, errcode = @code, reason = @reason, screenshots = @shots, attempts = @attempts, audit_id = @audit, next_at = @next, updated_at = @updated, last_errcode = @last, version = version + 1{claim} WHERE deployment_id = @d AND appid = @a AND version = @v"
                            (targetParams
                                t.DeploymentId
                                t.Target.AppId
                                (t.Tenant |> Option.map Domain.Ids.tenant)
                                t.Target
                             @ [ "@v", box expected ])

                    return n = 1
                })

        member _.AuditInFlight appid =
            run (fun conn ->
                tryOne
                    conn
                    null
                    $"SELECT {targetColumns} FROM deployment_targets WHERE appid = @a AND state IN ('submitting', 'auditing', 'audit_delayed') ORDER BY updated_at DESC LIMIT 1"
                    [ "@a", box (Domain.Ids.authorizerAppId appid) ]
                    readTarget)

        member _.RunningIds() =
            run (fun conn ->
                query conn null "SELECT id FROM deployments WHERE status = 'running'" [] (fun r ->
                    DeploymentId(r.GetString 0)))

/// The deployment store on the same connections as `store` (which must come from SqlStore.openStore).
let ofStore (store: Store.IStore) : IDeploymentStore =
    match box store with
    | :? ISqlAccess as access -> SqlDeploymentStore(access)
    | _ -> raise (ArgumentException "deployments need the SQL store")

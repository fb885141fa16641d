/// The store over ADO.NET, once, for SQLite (embedded default) and PostgreSQL (many instances).
/// The engines differ only in a few words of SQL (the Dialect) and in how connections are had:
/// SQLite is single-writer, so one connection serves every call in turn; PostgreSQL pools.
module WeChatFs.SqlStore

open System
open System.Collections.Generic
open System.Data.Common
open System.IO
open System.Security.Cryptography
open System.Text
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Microsoft.Data.Sqlite
open Npgsql
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.StoreConnections

type Dialect =
    {
        Name: string
        /// An auto-numbered primary key column.
        Identity: string
        /// Row locks that concurrent claimers skip instead of waiting on (PostgreSQL only).
        SkipLocked: string
    }

let sqlite =
    {
        Name = "sqlite"
        Identity = "INTEGER PRIMARY KEY AUTOINCREMENT"
        SkipLocked = ""
    }

let postgres =
    {
        Name = "postgres"
        Identity = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        SkipLocked = " FOR UPDATE SKIP LOCKED"
    }

/// Versioned schema: append a migration, never edit one that has shipped.
let migrations (d: Dialect) =
    [
        1,
        [
            "CREATE TABLE tickets (component_appid TEXT PRIMARY KEY, ticket TEXT NOT NULL, received_at BIGINT NOT NULL)"
            "CREATE TABLE component_tokens (component_appid TEXT PRIMARY KEY, token TEXT NOT NULL, token_hash TEXT NOT NULL, expires_at BIGINT NOT NULL)"
            "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at BIGINT NOT NULL)"
            "CREATE TABLE authorizers (appid TEXT PRIMARY KEY, tenant TEXT, status TEXT NOT NULL, status_reason TEXT, func_ids TEXT NOT NULL, profile TEXT, refresh_token TEXT, access_token TEXT, access_token_hash TEXT, access_expires_at BIGINT, authorized_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE INDEX authorizers_tenant ON authorizers (tenant)"
            "CREATE INDEX authorizers_due ON authorizers (status, access_expires_at)"
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, secret INTEGER NOT NULL)"
            $"CREATE TABLE events (id {d.Identity}, kind TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL, at BIGINT NOT NULL)"
            "CREATE INDEX events_kind ON events (kind)"
            "CREATE TABLE inbox (id TEXT PRIMARY KEY, authorizer_appid TEXT NOT NULL, dedupe_key TEXT NOT NULL, tenant TEXT, kind TEXT NOT NULL, received_at BIGINT NOT NULL, payload TEXT NOT NULL, raw_xml TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at BIGINT, last_error TEXT, delivered_at BIGINT, claimed_by TEXT, claimed_until BIGINT)"
            "CREATE UNIQUE INDEX inbox_dedupe ON inbox (authorizer_appid, dedupe_key)"
            "CREATE INDEX inbox_due ON inbox (status, next_attempt_at)"
        ]
        // The webhook payload already carries the raw XML; storing it twice only doubled the bytes
        // written per push.
        2, [ "ALTER TABLE inbox DROP COLUMN raw_xml" ]
        // The event log is purged by age; without this the purge would read the whole log.
        3, [ "CREATE INDEX events_at ON events (at)" ]
        // Web pages on behalf of accounts (OAuthStore.fs): funcKey routes, followers, wxTkId hashes,
        // used OAuth codes, jsapi_tickets and domain verification files.
        5,
        [
            "CREATE TABLE oauth_func_keys (func_key TEXT PRIMARY KEY, target_url TEXT NOT NULL, scope TEXT NOT NULL, description TEXT, tenant TEXT, source TEXT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE TABLE oauth_followers (authorizer_appid TEXT NOT NULL, openid TEXT NOT NULL, unionid TEXT, scope TEXT NOT NULL, profile TEXT, refresh_token TEXT, refresh_expires_at BIGINT, first_seen_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (authorizer_appid, openid))"
            "CREATE TABLE oauth_tracking_tokens (token_hash TEXT PRIMARY KEY, authorizer_appid TEXT NOT NULL, openid TEXT NOT NULL, unionid TEXT, tenant TEXT, func_key TEXT NOT NULL, scope TEXT NOT NULL, nickname TEXT, headimgurl TEXT, expires_at BIGINT NOT NULL)"
            "CREATE INDEX oauth_tracking_tokens_expiry ON oauth_tracking_tokens (expires_at)"
            "CREATE TABLE oauth_codes (code_hash TEXT PRIMARY KEY, used_at BIGINT NOT NULL)"
            "CREATE INDEX oauth_codes_used ON oauth_codes (used_at)"
            "CREATE TABLE jsapi_tickets (authorizer_appid TEXT PRIMARY KEY, ticket TEXT NOT NULL, expires_at BIGINT NOT NULL)"
            "CREATE TABLE verification_files (name TEXT PRIMARY KEY, content TEXT NOT NULL, updated_at BIGINT NOT NULL)"
        ]
        // Mini-program deployments (DeploymentStore.fs): a deployment, and one row per target that
        // the workers claim; next_at is NULL while a target waits for an event or an operator.
        6,
        [
            "CREATE TABLE deployments (id TEXT PRIMARY KEY, template_id BIGINT NOT NULL, user_version TEXT NOT NULL, user_desc TEXT NOT NULL, ext_json TEXT NOT NULL, audit TEXT, release_mode TEXT NOT NULL, release_requested INTEGER NOT NULL, max_concurrency INTEGER NOT NULL, targets TEXT NOT NULL, status TEXT NOT NULL, note TEXT, quota_rest INTEGER, quota_limit INTEGER, quota_checked_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE INDEX deployments_status ON deployments (status)"
            "CREATE TABLE deployment_targets (deployment_id TEXT NOT NULL, appid TEXT NOT NULL, tenant TEXT, state TEXT NOT NULL, step TEXT, errcode INTEGER, reason TEXT, screenshots TEXT, attempts INTEGER NOT NULL, last_errcode INTEGER, audit_id BIGINT, next_at BIGINT, claimed_by TEXT, claimed_until BIGINT, version INTEGER NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (deployment_id, appid))"
            "CREATE INDEX deployment_targets_due ON deployment_targets (deployment_id, next_at)"
            "CREATE INDEX deployment_targets_appid ON deployment_targets (appid, state)"
            // Live claims are counted on every claim: without this, a scan of the whole deployment.
            "CREATE INDEX deployment_targets_claims ON deployment_targets (deployment_id, claimed_until)"
        ]
        // Cash red packets: merchants (API key and private key sealed) and every packet, stored
        // before WeChat Pay is asked; one row per Idempotency-Key and per mch_billno.
        7,
        [
            "CREATE TABLE merchants (mch_id TEXT PRIMARY KEY, tenant TEXT, send_name TEXT NOT NULL, bound_appids TEXT NOT NULL, api_key TEXT NOT NULL, certificate_pem TEXT NOT NULL, private_key TEXT NOT NULL, cert_subject TEXT NOT NULL, cert_not_after BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE TABLE redpacks (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, request_hash TEXT NOT NULL, mch_id TEXT NOT NULL, mch_billno TEXT NOT NULL, authorizer_appid TEXT NOT NULL, tenant TEXT, openid TEXT NOT NULL, amount_fen BIGINT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL, send_listid TEXT, err_code TEXT, err_code_des TEXT, hb_status TEXT, attempts INTEGER NOT NULL, version INTEGER NOT NULL, next_check_at BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"
            "CREATE UNIQUE INDEX redpacks_key ON redpacks (idempotency_key)"
            "CREATE UNIQUE INDEX redpacks_billno ON redpacks (mch_billno)"
            "CREATE INDEX redpacks_due ON redpacks (status, next_check_at)"
            "CREATE INDEX redpacks_stale ON redpacks (status, updated_at)"
            "CREATE INDEX redpacks_mch ON redpacks (mch_id, created_at)"
        ]
    ]

// ---- small ADO.NET helpers ---------------------------------------------------------------------

let ms (t: DateTimeOffset) = t.ToUnixTimeMilliseconds()

let ofMs (v: int64) =
    DateTimeOffset.FromUnixTimeMilliseconds v

let dbValue (v: obj) =
    if isNull v then box DBNull.Value else v

let command (conn: DbConnection) (tx: DbTransaction) (sql: string) (ps: (string * obj) list) =
    let c = conn.CreateCommand()
    c.CommandText <- sql
    c.Transaction <- tx

    for name, value in ps do
        let p = c.CreateParameter()
        p.ParameterName <- name
        p.Value <- dbValue value
        c.Parameters.Add p |> ignore

    c

let exec conn tx sql ps =
    task {
        use c = command conn tx sql ps
        return! c.ExecuteNonQueryAsync()
    }

let query conn tx sql ps (read: DbDataReader -> 'a) =
    task {
        use c = command conn tx sql ps
        use! r = c.ExecuteReaderAsync()
        let items = ResizeArray<'a>()

        while! r.ReadAsync() do
            items.Add(read r)

        return List.ofSeq items
    }

/// The first row, if any: for lookups by key.
let tryOne conn tx sql ps (read: DbDataReader -> 'a) =
    task {
        let! rows = query conn tx sql ps read
        return List.tryHead rows
    }

let scalar conn tx sql ps =
    task {
        use c = command conn tx sql ps
        let! v = c.ExecuteScalarAsync()
        return v
    }

let text (r: DbDataReader) (i: int) =
    if r.IsDBNull i then None else Some(r.GetString i)

let int64Of (r: DbDataReader) (i: int) =
    if r.IsDBNull i then
        None
    else
        Some(Convert.ToInt64(r.GetValue i))

let private hashOf (value: string) =
    SHA256.HashData(Encoding.UTF8.GetBytes value) |> Convert.ToHexStringLower

let internal optionalMs (t: DateTimeOffset option) =
    t |> Option.map (fun t -> box (ms t)) |> Option.toObj

// ---- profile as JSON (no secrets in it) --------------------------------------------------------

let private profileJson (p: AuthorizerProfile) =
    JsonSerializer.Serialize
        {|
            nick_name = p.NickName
            head_img = p.HeadImg
            user_name = p.UserName
            principal_name = p.PrincipalName
            service_type = p.ServiceTypeId
            verify_type = p.VerifyTypeId
            kind = AuthorizerKind.toText p.Kind
        |}

let private readProfile (json: string) =
    use doc = JsonDocument.Parse json
    let r = doc.RootElement
    let s (n: string) = r.GetProperty(n).GetString()

    {
        NickName = s "nick_name"
        HeadImg = s "head_img"
        UserName = s "user_name"
        PrincipalName = s "principal_name"
        ServiceTypeId = r.GetProperty("service_type").GetInt32()
        VerifyTypeId = r.GetProperty("verify_type").GetInt32()
        Kind = AuthorizerKind.ofText (s "kind")
    }

module private Task =
    /// Runs `work`, returning the exception it raised (if any) instead of raising it, so cleanup that
    /// must await can run before it is raised again.
    let run (work: 'a -> Task<unit>) (arg: 'a) =
        task {
            try
                do! work arg
                return None
            with ex ->
                return Some ex
        }

/// What the stores of later features that share the database (OAuthStore, RedPackStore, DeploymentStore) build on: the same
/// connections, dialect and sealer as the store itself.
type ISqlAccess =
    abstract Dialect: Dialect
    abstract Run: (DbConnection -> Task<'a>) -> Task<'a>
    abstract Sealer: Secrets.Sealer

type private SqlStore(dialect: Dialect, connections: Connections, sealer: Secrets.Sealer) =
    let run work = connections.Run work

    let transaction (work: DbConnection -> DbTransaction -> Task<'a>) (conn: DbConnection) =
        task {
            use! tx = conn.BeginTransactionAsync()
            let! result = work conn tx
            do! tx.CommitAsync()
            return result
        }

    let inTransaction work = run (transaction work)

    let unseal (what: string) (value: string) =
        match sealer.Unseal value with
        | Ok plain -> plain
        // Never the value itself in the message: only what it was and the likely cause.
        | Error _ ->
            raise (
                InvalidOperationException(
                    $"a sealed {what} in the store cannot be opened: WeChatFs:Secrets:MasterKey does not match the key it was sealed with"
                )
            )

    let authorizerColumns =
        "appid, tenant, status, status_reason, func_ids, profile, refresh_token, access_token, access_expires_at, authorized_at, updated_at"

    let readAuthorizer (r: DbDataReader) =
        {
            AppId = AuthorizerAppId(r.GetString 0)
            Tenant = text r 1 |> Option.map TenantId
            Status =
                AuthorizerStatus.ofText (r.GetString 2)
                |> Option.defaultValue NeedsReauthorization
            StatusReason = text r 3
            FuncIds =
                (r.GetString 4).Split(',', StringSplitOptions.RemoveEmptyEntries)
                |> Array.choose (fun s ->
                    match Int32.TryParse s with
                    | true, n -> Some n
                    | _ -> None)
                |> List.ofArray
            Profile = text r 5 |> Option.map readProfile
            RefreshToken = text r 6 |> Option.map (unseal "refresh token" >> AuthorizerRefreshToken)
            AccessToken =
                match text r 7, int64Of r 8 with
                | Some t, Some exp ->
                    Some
                        {
                            Token = AuthorizerAccessToken(unseal "access token" t)
                            ExpiresAt = ofMs exp
                        }
                | _ -> None
            AuthorizedAt = ofMs (r.GetInt64 9)
            UpdatedAt = ofMs (r.GetInt64 10)
        }

    /// Upsert (`replace`) or insert-if-absent; the number of rows written.
    let writeAuthorizer (a: Authorizer) (replace: bool) =
        let conflict =
            if replace then
                "DO UPDATE SET tenant = excluded.tenant, status = excluded.status, status_reason = excluded.status_reason, func_ids = excluded.func_ids, profile = excluded.profile, refresh_token = excluded.refresh_token, access_token = excluded.access_token, access_expires_at = excluded.access_expires_at, authorized_at = excluded.authorized_at, updated_at = excluded.updated_at, access_token_hash = excluded.access_token_hash"
            else
                "DO NOTHING"

        let access = a.AccessToken |> Option.map (fun t -> Ids.authorizerToken t.Token)

        run (fun conn ->
            exec
                conn
                null
                $"INSERT INTO authorizers ({authorizerColumns}, access_token_hash) VALUES (@appid, @tenant, @status, @reason, @funcs, @profile, @refresh, @access, @exp, @authorized, @updated, @hash) ON CONFLICT (appid) {conflict}"
                [
                    "@appid", box (Ids.authorizerAppId a.AppId)
                    "@tenant", a.Tenant |> Option.map (Ids.tenant >> box) |> Option.toObj
                    "@status", box (AuthorizerStatus.toText a.Status)
                    "@reason", a.StatusReason |> Option.map box |> Option.toObj
                    "@funcs", box (a.FuncIds |> List.map string |> String.concat ",")
                    "@profile", a.Profile |> Option.map (profileJson >> box) |> Option.toObj
                    "@refresh",
                    a.RefreshToken
                    |> Option.map (Ids.refreshToken >> sealer.Seal >> box)
                    |> Option.toObj
                    "@access", access |> Option.map (sealer.Seal >> box) |> Option.toObj
                    "@exp", a.AccessToken |> Option.map (fun t -> t.ExpiresAt) |> optionalMs
                    "@authorized", box (ms a.AuthorizedAt)
                    "@updated", box (ms a.UpdatedAt)
                    "@hash", access |> Option.map (hashOf >> box) |> Option.toObj
                ])

    let deliveryColumns =
        "id, authorizer_appid, tenant, kind, received_at, payload, status, attempts, next_attempt_at, last_error, delivered_at"

    let readDelivery (r: DbDataReader) =
        {
            Id = r.GetString 0
            AuthorizerAppId = r.GetString 1
            Tenant = text r 2
            Kind = r.GetString 3
            ReceivedAt = ofMs (r.GetInt64 4)
            Payload = r.GetString 5
            Status = DeliveryStatus.ofText (r.GetString 6) |> Option.defaultValue Pending
            Attempts = Convert.ToInt32(r.GetValue 7)
            NextAttemptAt = int64Of r 8 |> Option.map ofMs
            LastError = text r 9
            DeliveredAt = int64Of r 10 |> Option.map ofMs
        }

    let migrateWith (conn: DbConnection) =
        task {
            let! _ =
                exec conn null "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)" []

            let! current = scalar conn null "SELECT MAX(version) FROM schema_version" []

            let current =
                match current with
                | null -> 0
                | :? DBNull -> 0
                | v -> Convert.ToInt32 v

            for version, statements in migrations dialect do
                if version > current then
                    use! tx = conn.BeginTransactionAsync()

                    for sql in statements do
                        let! _ = exec conn tx sql []
                        ()

                    let! _ =
                        exec conn tx "INSERT INTO schema_version (version) VALUES (@v)" [ "@v", box version ]

                    do! tx.CommitAsync()
        }

    interface ISqlAccess with
        member _.Dialect = dialect
        member _.Run work = connections.Run work
        member _.Sealer = sealer

    interface IStore with
        member _.Provider = dialect.Name

        member _.Migrate() =
            run (fun conn ->
                task {
                    if dialect.Name = "postgres" then
                        // Instances starting together migrate one after the other.
                        let! _ = exec conn null "SELECT pg_advisory_lock(7031145)" []
                        let! failure = Task.run migrateWith conn
                        let! _ = exec conn null "SELECT pg_advisory_unlock(7031145)" []

                        failure
                        |> Option.iter (fun ex -> Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex).Throw())
                    else
                        do! migrateWith conn
                })
            :> Task

        member _.Ping() =
            task {
                try
                    let! _ = run (fun conn -> scalar conn null "SELECT 1" [])
                    return Ok()
                with ex ->
                    return Error ex.Message
            }

        member _.Dispose() = connections.Dispose()

        // ---- component ----

        member _.SaveTicket(ComponentAppId appid, t) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO tickets (component_appid, ticket, received_at) VALUES (@a, @t, @at) ON CONFLICT (component_appid) DO UPDATE SET ticket = excluded.ticket, received_at = excluded.received_at WHERE tickets.received_at <= excluded.received_at"
                    [
                        "@a", box appid
                        "@t", box (sealer.Seal(Ids.ticket t.Ticket))
                        "@at", box (ms t.ReceivedAt)
                    ])
            :> Task

        member _.LatestTicket(ComponentAppId appid) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    "SELECT ticket, received_at FROM tickets WHERE component_appid = @a"
                    [ "@a", box appid ]
                    (fun r ->
                        {
                            Ticket = VerifyTicket(unseal "ticket" (r.GetString 0))
                            ReceivedAt = ofMs (r.GetInt64 1)
                        }))

        member _.SaveComponentToken(ComponentAppId appid, t) =
            let value = Ids.componentToken t.Token

            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO component_tokens (component_appid, token, token_hash, expires_at) VALUES (@a, @t, @h, @e) ON CONFLICT (component_appid) DO UPDATE SET token = excluded.token, token_hash = excluded.token_hash, expires_at = excluded.expires_at"
                    [
                        "@a", box appid
                        "@t", box (sealer.Seal value)
                        "@h", box (hashOf value)
                        "@e", box (ms t.ExpiresAt)
                    ])
            :> Task

        member _.ComponentToken(ComponentAppId appid) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    "SELECT token, expires_at FROM component_tokens WHERE component_appid = @a"
                    [ "@a", box appid ]
                    (fun r ->
                        {
                            Token = ComponentAccessToken(unseal "component token" (r.GetString 0))
                            ExpiresAt = ofMs (r.GetInt64 1)
                        }))

        member _.InvalidateComponentToken(ComponentAppId appid, ComponentAccessToken failed) =
            task {
                let! n =
                    run (fun conn ->
                        exec
                            conn
                            null
                            "DELETE FROM component_tokens WHERE component_appid = @a AND token_hash = @h"
                            [ "@a", box appid; "@h", box (hashOf failed) ])

                return n > 0
            }

        // ---- leases ----

        member _.TryAcquireLease(name, holder, now, until) =
            task {
                let! n =
                    run (fun conn ->
                        exec
                            conn
                            null
                            "INSERT INTO leases (name, holder, expires_at) VALUES (@n, @h, @u) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE leases.expires_at <= @now OR leases.holder = excluded.holder"
                            [ "@n", box name; "@h", box holder; "@u", box (ms until); "@now", box (ms now) ])

                return n > 0
            }

        member _.ReleaseLease(name, holder) =
            run (fun conn ->
                exec
                    conn
                    null
                    "DELETE FROM leases WHERE name = @n AND holder = @h"
                    [ "@n", box name; "@h", box holder ])
            :> Task

        // ---- authorizers ----

        member _.GetAuthorizer(AuthorizerAppId appid) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    $"SELECT {authorizerColumns} FROM authorizers WHERE appid = @a"
                    [ "@a", box appid ]
                    readAuthorizer)

        member _.SaveAuthorizer(a) = writeAuthorizer a true :> Task

        member _.AddAuthorizerIfAbsent(a) =
            task {
                let! n = writeAuthorizer a false
                return n > 0
            }

        member _.ListAuthorizers(q) =
            task {
                let filters =
                    [
                        q.Tenant
                        |> Option.map (fun t -> "tenant = @tenant", ("@tenant", box (Ids.tenant t)))
                        q.Status
                        |> Option.map (fun s -> "status = @status", ("@status", box (AuthorizerStatus.toText s)))
                    ]
                    |> List.choose id

                let where =
                    if filters.IsEmpty then
                        ""
                    else
                        " WHERE " + (filters |> List.map fst |> String.concat " AND ")

                let ps = filters |> List.map snd

                return!
                    run (fun conn ->
                        task {
                            let! total = scalar conn null $"SELECT COUNT(*) FROM authorizers{where}" ps

                            let! items =
                                query
                                    conn
                                    null
                                    $"SELECT {authorizerColumns} FROM authorizers{where} ORDER BY appid LIMIT @limit OFFSET @offset"
                                    (ps @ [ "@limit", box (int64 q.Limit); "@offset", box (int64 q.Offset) ])
                                    readAuthorizer

                            return
                                {
                                    Items = items
                                    Total = Convert.ToInt32 total
                                }
                        })
            }

        member _.SaveAuthorizerTokens(AuthorizerAppId appid, access, refresh, now) =
            let value = Ids.authorizerToken access.Token

            run (fun conn ->
                exec
                    conn
                    null
                    "UPDATE authorizers SET access_token = @access, access_token_hash = @hash, access_expires_at = @exp, refresh_token = @refresh, updated_at = @now WHERE appid = @a"
                    [
                        "@access", box (sealer.Seal value)
                        "@hash", box (hashOf value)
                        "@exp", box (ms access.ExpiresAt)
                        "@refresh", box (sealer.Seal(Ids.refreshToken refresh))
                        "@now", box (ms now)
                        "@a", box appid
                    ])
            :> Task

        member _.InvalidateAuthorizerToken(AuthorizerAppId appid, AuthorizerAccessToken failed) =
            task {
                let! n =
                    run (fun conn ->
                        exec
                            conn
                            null
                            "UPDATE authorizers SET access_token = NULL, access_token_hash = NULL, access_expires_at = NULL WHERE appid = @a AND access_token_hash = @h"
                            [ "@a", box appid; "@h", box (hashOf failed) ])

                return n > 0
            }

        member _.SetAuthorizerStatus(AuthorizerAppId appid, status, reason, now) =
            let clearRefresh =
                match status with
                | Revoked -> ", refresh_token = NULL"
                | Authorized
                | NeedsReauthorization -> ""

            let clearAccess =
                match status with
                | Revoked
                | NeedsReauthorization -> ", access_token = NULL, access_token_hash = NULL, access_expires_at = NULL"
                | Authorized -> ""

            run (fun conn ->
                exec
                    conn
                    null
                    $"UPDATE authorizers SET status = @s, status_reason = @r, updated_at = @now{clearAccess}{clearRefresh} WHERE appid = @a"
                    [
                        "@s", box (AuthorizerStatus.toText status)
                        "@r", reason |> Option.map box |> Option.toObj
                        "@now", box (ms now)
                        "@a", box appid
                    ])
            :> Task

        member _.DueAuthorizers(before, limit) =
            run (fun conn ->
                query
                    conn
                    null
                    "SELECT appid FROM authorizers WHERE status = 'authorized' AND refresh_token IS NOT NULL AND (access_expires_at IS NULL OR access_expires_at < @before) ORDER BY COALESCE(access_expires_at, 0), appid LIMIT @limit"
                    [ "@before", box (ms before); "@limit", box (int64 limit) ]
                    (fun r -> AuthorizerAppId(r.GetString 0)))

        member _.CountAuthorizers() =
            task {
                let! n = run (fun conn -> scalar conn null "SELECT COUNT(*) FROM authorizers" [])
                return Convert.ToInt32 n
            }

        // ---- values and events ----

        member _.PutValue(key, value, secret) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO kv (key, value, secret) VALUES (@k, @v, @s) ON CONFLICT (key) DO UPDATE SET value = excluded.value, secret = excluded.secret"
                    [
                        "@k", box key
                        "@v", box (if secret then sealer.Seal value else value)
                        "@s", box (if secret then 1L else 0L)
                    ])
            :> Task

        member _.GetValue(key) =
            run (fun conn ->
                tryOne conn null "SELECT value, secret FROM kv WHERE key = @k" [ "@k", box key ] (fun r ->
                    let v = r.GetString 0

                    if Convert.ToInt64(r.GetValue 1) = 1L then
                        unseal "value" v
                    else
                        v))

        member _.AppendEvent(e) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO events (kind, subject, detail, at) VALUES (@k, @s, @d, @at)"
                    [
                        "@k", box e.Kind
                        "@s", box e.Subject
                        "@d", box e.Detail
                        "@at", box (ms e.At)
                    ])
            :> Task

        member _.RecentEvents(kind, limit) =
            let where, ps =
                match kind with
                | Some k -> " WHERE kind = @k", [ "@k", box k ]
                | None -> "", []

            run (fun conn ->
                query
                    conn
                    null
                    $"SELECT kind, subject, detail, at FROM events{where} ORDER BY id DESC LIMIT @limit"
                    (ps @ [ "@limit", box (int64 limit) ])
                    (fun r ->
                        {
                            Kind = r.GetString 0
                            Subject = r.GetString 1
                            Detail = r.GetString 2
                            At = ofMs (r.GetInt64 3)
                        }))

        member _.PurgeEvents(before, max) =
            run (fun conn ->
                exec
                    conn
                    null
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < @before ORDER BY at LIMIT @max)"
                    [ "@before", box (ms before); "@max", box (int64 max) ])

        // ---- inbox and deliveries ----

        // The inbox's batches sync outside the connection (RunThenSync): the next batch writes
        // while this one waits for the disk, and still nobody is answered before it is durable.
        member _.AppendInbox(feed) =
            connections.RunThenSync(
                transaction (fun conn tx ->
                    task {
                        // One prepared statement, bound again for each item: binding stays cheap
                        // however large the batch, and the whole batch is one commit.
                        use insert = conn.CreateCommand()
                        insert.Transaction <- tx

                        insert.CommandText <-
                            "INSERT INTO inbox (id, authorizer_appid, dedupe_key, tenant, kind, received_at, payload, status, attempts, next_attempt_at, claimed_by, claimed_until) VALUES (@id, @a, @k, @t, @kind, @at, @p, 'pending', 0, @at, @by, @until) ON CONFLICT (authorizer_appid, dedupe_key) DO NOTHING"

                        let parameter name =
                            let p = insert.CreateParameter()
                            p.ParameterName <- name
                            insert.Parameters.Add p |> ignore
                            p

                        let pId, pA, pK, pT, pKind =
                            parameter "@id", parameter "@a", parameter "@k", parameter "@t", parameter "@kind"

                        let pAt, pP, pBy, pUntil =
                            parameter "@at", parameter "@p", parameter "@by", parameter "@until"

                        // What each key is stored under, as far as this batch knows: a retry within
                        // the batch points at the first of them.
                        let storedAs = Dictionary<string * string, string>()
                        let outcomes = ResizeArray<AppendOutcome>()

                        let append (item: InboxItem) =
                            task {
                                let key = (item.AuthorizerAppId, item.DedupeKey)

                                match storedAs.TryGetValue key with
                                | true, id -> outcomes.Add(Duplicate id)
                                | _ ->
                                    pId.Value <- item.Id
                                    pA.Value <- item.AuthorizerAppId
                                    pK.Value <- item.DedupeKey
                                    pT.Value <- dbValue (item.Tenant |> Option.map box |> Option.toObj)
                                    pKind.Value <- item.Kind
                                    pAt.Value <- ms item.ReceivedAt
                                    pP.Value <- item.Payload
                                    pBy.Value <- dbValue (item.ClaimedBy |> Option.map box |> Option.toObj)
                                    pUntil.Value <- dbValue (optionalMs item.ClaimedUntil)
                                    let! n = insert.ExecuteNonQueryAsync()

                                    if n > 0 then
                                        storedAs[key] <- item.Id
                                        outcomes.Add(Stored item.Id)
                                    else
                                        // A retry of something stored earlier: find what it was stored under.
                                        let! existing =
                                            scalar
                                                conn
                                                tx
                                                "SELECT id FROM inbox WHERE authorizer_appid = @a AND dedupe_key = @k"
                                                [ "@a", box item.AuthorizerAppId; "@k", box item.DedupeKey ]

                                        storedAs[key] <- string existing
                                        outcomes.Add(Duplicate(string existing))
                            }

                        let mutable next = feed.First

                        while not next.IsEmpty do
                            for item in next do
                                do! append item

                            next <- feed.More()

                        return List.ofSeq outcomes
                    })
            )

        member _.ClaimDeliveries(holder, now, until, max) =
            run (fun conn ->
                query
                    conn
                    null
                    $"UPDATE inbox SET claimed_by = @h, claimed_until = @u WHERE id IN (SELECT id FROM inbox WHERE status = 'pending' AND next_attempt_at <= @now AND (claimed_until IS NULL OR claimed_until <= @now) ORDER BY received_at, id LIMIT @max{dialect.SkipLocked}) RETURNING {deliveryColumns}"
                    [
                        "@h", box holder
                        "@u", box (ms until)
                        "@now", box (ms now)
                        "@max", box (int64 max)
                    ]
                    readDelivery)
            |> fun t ->
                task {
                    let! rows = t
                    return rows |> List.sortBy (fun d -> d.ReceivedAt, d.Id)
                }

        member _.MarkDelivered(id, at, holder) =
            run (fun conn ->
                exec
                    conn
                    null
                    "UPDATE inbox SET status = 'delivered', delivered_at = @at, attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = @id AND (claimed_by IS NULL OR claimed_by = @holder)"
                    [ "@at", box (ms at); "@id", box id; "@holder", box holder ])
            :> Task

        member _.MarkFailed(id, error, retryAt, holder) =
            let status =
                match retryAt with
                | Some _ -> "pending"
                | None -> "dead"

            run (fun conn ->
                exec
                    conn
                    null
                    // Only a pending delivery: if this attempt's claim ran out and another instance
                    // delivered meanwhile, a late failure must not put it back in line.
                    "UPDATE inbox SET status = @s, attempts = attempts + 1, last_error = @e, next_attempt_at = @next, claimed_by = NULL, claimed_until = NULL WHERE id = @id AND status = 'pending' AND (claimed_by IS NULL OR claimed_by = @holder)"
                    [
                        "@s", box status
                        "@e", box error
                        "@next", optionalMs retryAt
                        "@id", box id
                        "@holder", box holder
                    ])
            :> Task

        member _.GetDelivery(id) =
            run (fun conn ->
                tryOne conn null $"SELECT {deliveryColumns} FROM inbox WHERE id = @id" [ "@id", box id ] readDelivery)

        member _.ListDeliveries(status, offset, limit) =
            let where, ps =
                match status with
                | Some s -> " WHERE status = @s", [ "@s", box (DeliveryStatus.toText s) ]
                | None -> "", []

            run (fun conn ->
                task {
                    let! total = scalar conn null $"SELECT COUNT(*) FROM inbox{where}" ps

                    let! items =
                        query
                            conn
                            null
                            $"SELECT {deliveryColumns} FROM inbox{where} ORDER BY received_at DESC, id DESC LIMIT @limit OFFSET @offset"
                            (ps @ [ "@limit", box (int64 limit); "@offset", box (int64 offset) ])
                            readDelivery

                    return
                        {
                            Items = items
                            Total = Convert.ToInt32 total
                        }
                })

        member _.ReleaseClaims(holder) =
            run (fun conn ->
                exec
                    conn
                    null
                    "UPDATE inbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = @h AND status = 'pending'"
                    [ "@h", box holder ])

        member _.RetryDelivery(id, now) =
            task {
                let! n =
                    run (fun conn ->
                        exec
                            conn
                            null
                            "UPDATE inbox SET status = 'pending', next_attempt_at = @now, claimed_by = NULL, claimed_until = NULL WHERE id = @id AND status IN ('dead', 'pending')"
                            [ "@now", box (ms now); "@id", box id ])

                return n > 0
            }

        // In inbox_due's order (status, next_attempt_at): the scan stops after `max` rows instead of
        // sorting every delivered row, which on SQLite would hold the one connection meanwhile.
        member _.PurgeDelivered(before, max) =
            run (fun conn ->
                exec
                    conn
                    null
                    "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE status = 'delivered' AND delivered_at < @before ORDER BY next_attempt_at LIMIT @max)"
                    [ "@before", box (ms before); "@max", box (int64 max) ])

/// Opens the store for `provider` ("sqlite" or "postgres"); call Migrate before use.
let openStore (provider: string) (connectionString: string) (sealer: Secrets.Sealer) : IStore =
    match provider with
    | "sqlite" ->
        let builder = SqliteConnectionStringBuilder connectionString

        match Path.GetDirectoryName builder.DataSource with
        | null
        | "" -> ()
        | dir -> Directory.CreateDirectory dir |> ignore

        new SqlStore(sqlite, SqliteConnections(connectionString), sealer)
    | "postgres" -> new SqlStore(postgres, PostgresConnections(connectionString), sealer)
    | other -> raise (ArgumentException $"unknown store provider '{other}'; use sqlite or postgres")

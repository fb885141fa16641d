/// The store over ADO.NET, once, for SQLite (embedded default) and PostgreSQL (many instances): the
/// IStore contract on the shared connections. The engines differ only in a few words of SQL (SqlSchema)
/// and in how connections are had: SQLite is single-writer, so one connection serves every call in
/// turn; PostgreSQL pools. The component, lease and value rows live in ComponentRows, the authorizers
/// in AuthorizerRows; the inbox, deliveries and events are here.
module WeChatFs.SqlStore

open System
open System.Collections.Generic
open System.Data.Common
open System.IO
open System.Threading
open System.Threading.Tasks
open Microsoft.Data.Sqlite
open Npgsql
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.StoreConnections
open WeChatFs.SqlSchema
open WeChatFs.SqlAccess


type private SqlStore(dialect: Dialect, connections: Connections, sealer: Secrets.Sealer) =
    let access =
        { new ISqlAccess with
            member _.Dialect = dialect
            member _.Run work = connections.Run work
            member _.Sealer = sealer
        }

    let run work = connections.Run work

    let transaction (work: DbConnection -> DbTransaction -> Task<'a>) (conn: DbConnection) =
        task {
            use! tx = conn.BeginTransactionAsync()
            let! result = work conn tx
            do! tx.CommitAsync()
            return result
        }

    let inTransaction work = run (transaction work)

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
                    return Error(StoreUnreachable ex.Message)
            }

        member _.Dispose() = connections.Dispose()

        // ---- component ----

        member _.SaveTicket(appid, t) = ComponentRows.saveTicket access appid t
        member _.LatestTicket(appid) = ComponentRows.latestTicket access appid

        member _.SaveComponentToken(appid, t) =
            ComponentRows.saveComponentToken access appid t

        member _.ComponentToken(appid) =
            ComponentRows.componentToken access appid

        member _.InvalidateComponentToken(appid, failed) =
            ComponentRows.invalidateComponentToken access appid failed

        // ---- leases ----

        member _.TryAcquireLease(name, holder, now, until) =
            ComponentRows.tryAcquireLease access name holder now until

        member _.ReleaseLease(name, holder) =
            ComponentRows.releaseLease access name holder

        // ---- authorizers ----

        member _.GetAuthorizer(appid) = AuthorizerRows.get access appid

        member _.SaveAuthorizer(a) =
            AuthorizerRows.write access a true :> Task

        member _.AddAuthorizerIfAbsent(a) =
            task {
                let! n = AuthorizerRows.write access a false
                return n > 0
            }

        member _.ListAuthorizers(q) = AuthorizerRows.list access q

        member _.SaveAuthorizerTokens(appid, token, refresh, now) =
            AuthorizerRows.saveTokens access appid token refresh now

        member _.InvalidateAuthorizerToken(appid, failed) =
            AuthorizerRows.invalidateToken access appid failed

        member _.SetAuthorizerStatus(appid, status, reason, now) =
            AuthorizerRows.setStatus access appid status reason now

        member _.DueAuthorizers(before, limit) = AuthorizerRows.due access before limit
        member _.CountAuthorizers() = AuthorizerRows.count access

        // ---- values and events ----

        member _.PutValue(key, value, secret) =
            ComponentRows.putValue access key value secret

        member _.GetValue(key) = ComponentRows.getValue access key

        // ---- typed domain state ----

        member _.RememberPreAuthTenant(code, tenant) =
            ComponentRows.rememberPreAuthTenant access code tenant

        member _.PreAuthTenant(code) = ComponentRows.preAuthTenant access code

        member _.RecordExchangedCode(code, appid) =
            ComponentRows.recordExchangedCode access code appid

        member _.ExchangedCode(code) = ComponentRows.exchangedCode access code

        member _.SaveLatestCode(appid, code) =
            ComponentRows.saveLatestCode access appid code

        member _.LatestCode(appid) = ComponentRows.latestCode access appid

        member _.SaveRejectedTicket(marker) =
            ComponentRows.saveRejectedTicket access marker

        member _.RejectedTicket() = ComponentRows.rejectedTicket access

        member _.SaveComponentError(errcode, message, at) =
            ComponentRows.saveComponentError access errcode message at

        member _.ComponentError() = ComponentRows.componentError access

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

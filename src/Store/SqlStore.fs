/// The store over ADO.NET, once, for SQLite (embedded default) and PostgreSQL (many instances): the
/// IStore contract on the shared connections. The engines differ only in a few words of SQL (SqlSchema)
/// and in how connections are had: SQLite is single-writer, so one connection serves every call in
/// turn; PostgreSQL pools. The component, lease and value rows live in ComponentRows, the authorizers
/// in AuthorizerRows, the inbox and deliveries in InboxRows; the events are here.
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
        member _.Provider = Settings.StorageProvider.name dialect.Engine

        member _.Migrate() =
            run (fun conn ->
                task {
                    if dialect.Engine = Settings.Postgres then
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
        member _.AuthorizerTokensAfter(after, count) = AuthorizerRows.after access after count

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

        member _.ClaimStateUse(state, code, now, until) =
            ComponentRows.claimStateUse access state code now until

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
            connections.RunThenSync(transaction (InboxRows.appendBatch dialect feed))

        member _.IndexInbox(items, firstAttempts) =
            connections.RunThenSync(
                transaction (InboxRows.appendBatchWith dialect firstAttempts (GroupCommit.Feed.ofList items))
            )

        member _.ClaimDeliveries(holder, now, until, max) =
            InboxRows.claim access holder now until max

        member _.MarkDelivered(id, at, holder) =
            InboxRows.markDelivered access id at holder

        member _.MarkFailed(id, error, retryAt, holder) =
            InboxRows.markFailed access id error retryAt holder

        member _.RecordAttempts(attempts) =
            connections.RunThenSync(transaction (InboxRows.recordAttempts attempts)) :> Task

        member _.GetDelivery(id) = InboxRows.get access id

        member _.ListDeliveries(status, offset, limit) =
            InboxRows.list access status offset limit

        member _.ListDeliveriesBefore(status, before, limit) =
            InboxRows.listBefore access status before limit

        member _.ListDeliveriesAfter(status, after, limit) =
            InboxRows.listAfter access status after limit

        member _.FoldDeliveryCounts() = InboxRows.foldCounts access

        member _.VacuumInbox(after, stopping) = InboxRows.vacuum access after stopping

        member _.ReleaseClaims(holder) = InboxRows.releaseClaims access holder

        member _.RetryDelivery(id, now) = InboxRows.retry access id now

        member _.PurgeDelivered(before, max) =
            InboxRows.purgeDelivered access before max

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

/// The inbox table: every push stored once under (authorizer_appid, dedupe_key), in group-commit
/// batches; and the deliveries read from it: claimed, marked delivered or failed, listed, retried
/// and purged.
module WeChatFs.InboxRows

open System
open System.Collections.Generic
open System.Data.Common
open System.Threading
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.SqlAccess

let private deliveryColumns =
    "id, authorizer_appid, tenant, kind, received_at, payload, status, attempts, next_attempt_at, last_error, delivered_at"

let private readDelivery (r: DbDataReader) =
    let id = r.GetString 0
    let appid = AuthorizerAppId(r.GetString 1)
    let tenant = text r 2 |> Option.map TenantId
    let kind = r.GetString 3
    let received = ofMs (r.GetInt64 4)
    let stored = r.GetString 5

    {
        Id = id
        AuthorizerAppId = appid
        Tenant = tenant
        Kind = kind
        ReceivedAt = received
        // The intake log stores a message without a webhook waiting as its XML; a webhook body is a
        // JSON object, '{' first. The body is made here, for the rows that are read.
        Payload =
            if stored.StartsWith '{' then
                stored
            else
                Messages.webhookPayloadOfXml id kind appid tenant received stored
        Status = DeliveryStatus.ofText (r.GetString 6) |> Option.defaultValue Pending
        Attempts = Convert.ToInt32(r.GetValue 7)
        NextAttemptAt = int64Of r 8 |> Option.map ofMs
        LastError = text r 9
        DeliveredAt = int64Of r 10 |> Option.map ofMs
    }

let private keyOf (item: InboxItem) =
    Ids.authorizerAppId item.AuthorizerAppId, item.DedupeKey

/// PostgreSQL: a chunk's rows, each under a key new to the batch, in one statement (the columns as
/// arrays), and the ids stored earlier under the keys that were not new in one more: a statement per
/// row cost a round trip to the server each, and at thousands of pushes a second the round trips,
/// not the rows, were the cost. What each key is stored under, for every key of the chunk.
let private insertChunk (conn: DbConnection) (tx: DbTransaction) (items: InboxItem list) =
    task {
        let column f = items |> List.map f |> Array.ofList

        let appids = column (keyOf >> fst)
        let keys = column (keyOf >> snd)

        let! stored =
            query
                conn
                tx
                "INSERT INTO inbox (id, authorizer_appid, dedupe_key, tenant, kind, received_at, payload, status, attempts, next_attempt_at, claimed_by, claimed_until) SELECT r.id, r.a, r.k, r.t, r.kind, r.at, r.p, 'pending', 0, r.at, r.by, r.until FROM unnest(@id, @a, @k, @t, @kind, @at, @p, @by, @until) AS r(id, a, k, t, kind, at, p, by, until) ON CONFLICT (authorizer_appid, dedupe_key) DO NOTHING RETURNING id"
                [
                    "@id", box (column _.Id)
                    "@a", box appids
                    "@k", box keys
                    "@t", box (column (fun i -> i.Tenant |> Option.map Ids.tenant |> Option.toObj))
                    "@kind", box (column _.Kind)
                    "@at", box (column (fun i -> ms i.ReceivedAt))
                    "@p", box (column _.Payload)
                    "@by", box (column (fun i -> Option.toObj i.ClaimedBy))
                    "@until", box (column (fun i -> i.ClaimedUntil |> Option.map ms |> Option.toNullable))
                ]
                (fun r -> r.GetString 0)

        let storedIds = HashSet<string>(stored)
        let resolved = Dictionary<string * string, string>()

        for item in items do
            if storedIds.Contains item.Id then
                resolved[keyOf item] <- item.Id

        // Retries of pushes stored by an earlier batch (or by another instance meanwhile).
        if resolved.Count < items.Length then
            let! earlier =
                query
                    conn
                    tx
                    "SELECT i.authorizer_appid, i.dedupe_key, i.id FROM inbox i JOIN unnest(@a, @k) AS r(a, k) ON i.authorizer_appid = r.a AND i.dedupe_key = r.k"
                    [ "@a", box appids; "@k", box keys ]
                    (fun r -> (r.GetString 0, r.GetString 1), r.GetString 2)

            for key, id in earlier do
                resolved.TryAdd(key, id) |> ignore

        return resolved
    }

/// One attempt's outcome, as a statement within `tx`.
let private recordAttempt (conn: DbConnection) (tx: DbTransaction) (attempt: AttemptRecord) =
    match attempt with
    | DeliveredAt(id, at, holder) ->
        exec
            conn
            tx
            "UPDATE inbox SET status = 'delivered', delivered_at = @at, attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = @id AND (claimed_by IS NULL OR claimed_by = @holder)"
            [ "@at", box (ms at); "@id", box id; "@holder", box holder ]
    | FailedAt(id, error, retryAt, holder) ->
        let status =
            match retryAt with
            | Some _ -> "pending"
            | None -> "dead"

        exec
            conn
            tx
            // Only a pending delivery: if this attempt's claim ran out and another instance
            // delivered meanwhile, a late failure must not put it back in line.
            "UPDATE inbox SET status = @s, attempts = attempts + 1, last_error = @e, next_attempt_at = @next, claimed_by = NULL, claimed_until = NULL WHERE id = @id AND status = 'pending' AND (claimed_by IS NULL OR claimed_by = @holder)"
            [
                "@s", box status
                "@e", box error
                "@next", optionalMs retryAt
                "@id", box id
                "@holder", box holder
            ]

/// The state a row starts in: pending, claimed for its first attempt by the receiving instance; or,
/// when that attempt was made before the row is written (rows from the intake log), as its outcome
/// left it: what recordAttempt sets, without writing the row twice.
let private startingState (item: InboxItem) (first: AttemptRecord option) =
    let at = box (ms item.ReceivedAt)

    match first with
    | None ->
        "pending", 0, at, null, null, item.ClaimedBy |> Option.map box |> Option.toObj, optionalMs item.ClaimedUntil
    | Some(DeliveredAt(_, delivered, _)) -> "delivered", 1, at, null, box (ms delivered), null, null
    | Some(FailedAt(_, error, Some next, _)) -> "pending", 1, box (ms next), box error, null, null, null
    | Some(FailedAt(_, error, None, _)) -> "dead", 1, null, box error, null, null, null

/// One value bound by position: text as UTF-16 (SQLite encodes it), integers, or NULL.
let private bindValue (stmt: SQLitePCL.sqlite3_stmt) (index: int) (value: obj) =
    match value with
    | null -> SQLitePCL.raw.sqlite3_bind_null (stmt, index)
    | :? string as s -> SQLitePCL.raw.sqlite3_bind_text16 (stmt, index, s.AsSpan())
    | :? int64 as n -> SQLitePCL.raw.sqlite3_bind_int64 (stmt, index, n)
    | :? int as n -> SQLitePCL.raw.sqlite3_bind_int64 (stmt, index, int64 n)
    | other -> invalidArg "value" $"no SQLite binding for {other.GetType()}"
    |> ignore

/// SQLite runs in the process, where a statement costs no round trip: one prepared statement, bound
/// again for each row, through SQLite's own API and by position. Through Microsoft.Data.Sqlite every
/// execution looked up each of the 14 parameters by name and made a data reader and a task, about
/// a fifth of a row's cost in the inbox writer. Whether the row was stored (not a known key).
let private rowInserter (conn: DbConnection) =
    let db = (conn :?> Microsoft.Data.Sqlite.SqliteConnection).Handle

    let fail (rc: int) =
        raise (Microsoft.Data.Sqlite.SqliteException(SQLitePCL.raw.sqlite3_errmsg(db).utf8_to_string(), rc))

    let mutable stmt = null

    let rc =
        SQLitePCL.raw.sqlite3_prepare_v2 (
            db,
            "INSERT INTO inbox (id, authorizer_appid, dedupe_key, tenant, kind, received_at, payload, status, attempts, next_attempt_at, last_error, delivered_at, claimed_by, claimed_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT (authorizer_appid, dedupe_key) DO NOTHING",
            &stmt
        )

    if rc <> SQLitePCL.raw.SQLITE_OK then
        fail rc

    let insertRow (item: InboxItem) (first: AttemptRecord option) =
        let appid, key = keyOf item

        let status, attempts, next, error, delivered, claimedBy, claimedUntil =
            startingState item first

        bindValue stmt 1 item.Id
        bindValue stmt 2 appid
        bindValue stmt 3 key
        bindValue stmt 4 (item.Tenant |> Option.map Ids.tenant |> Option.toObj)
        bindValue stmt 5 item.Kind
        bindValue stmt 6 (ms item.ReceivedAt)
        bindValue stmt 7 item.Payload
        bindValue stmt 8 status
        bindValue stmt 9 attempts
        bindValue stmt 10 next
        bindValue stmt 11 error
        bindValue stmt 12 delivered
        bindValue stmt 13 claimedBy
        bindValue stmt 14 claimedUntil
        let rc = SQLitePCL.raw.sqlite3_step stmt
        SQLitePCL.raw.sqlite3_reset stmt |> ignore

        if rc <> SQLitePCL.raw.SQLITE_DONE then
            fail rc

        Task.FromResult(SQLitePCL.raw.sqlite3_changes db > 0)

    { new IDisposable with
        member _.Dispose() =
            SQLitePCL.raw.sqlite3_finalize stmt |> ignore
    },
    insertRow

/// One batch in one transaction: the feed's items, taking more while it gives them; one outcome per
/// item, in order. The caller commits and syncs.
/// `firstAttempts`: outcomes of attempts already made for some of the items, by id, written with
/// their rows.
let appendBatchWith
    (dialect: SqlSchema.Dialect)
    (firstAttempts: IReadOnlyDictionary<string, AttemptRecord>)
    (feed: GroupCommit.Feed<InboxItem>)
    (conn: DbConnection)
    (tx: DbTransaction)
    =
    task {
        let firstOf (item: InboxItem) =
            match firstAttempts.TryGetValue item.Id with
            | true, a -> Some a
            | _ -> None

        // What each key is stored under, as far as this batch knows: a retry within
        // the batch points at the first of them.
        let storedAs = Dictionary<string * string, string>()
        let outcomes = ResizeArray<AppendOutcome>()

        let settle (item: InboxItem) (id: string) =
            storedAs[keyOf item] <- id
            outcomes.Add(if id = item.Id then Stored id else Duplicate id)

        let known (item: InboxItem) =
            match storedAs.TryGetValue(keyOf item) with
            | true, id ->
                outcomes.Add(Duplicate id)
                true
            | _ -> false

        let mutable next = feed.First

        if dialect.Engine = Settings.Postgres then
            while not next.IsEmpty do
                let fresh =
                    next
                    |> List.filter (fun i -> not (storedAs.ContainsKey(keyOf i)))
                    |> List.distinctBy keyOf

                let! resolved =
                    if fresh.IsEmpty then
                        Task.FromResult(Dictionary())
                    else
                        insertChunk conn tx fresh

                for item in next do
                    if not (known item) then
                        let id = resolved[keyOf item]
                        settle item id

                        // PostgreSQL's rows start pending; an outcome at hand follows as an update.
                        match firstOf item with
                        | Some a when id = item.Id ->
                            let! _ = recordAttempt conn tx a
                            ()
                        | _ -> ()

                // Each take is a statement sent to the server and back: once the batch before is
                // durable, this one commits without one more, and the next batch writes what came.
                next <- feed.MoreUntilDue()
        else
            let insert, insertRow = rowInserter conn
            use _ = insert

            while not next.IsEmpty do
                for item in next do
                    if not (known item) then
                        let! stored = insertRow item (firstOf item)

                        if stored then
                            settle item item.Id
                        else
                            // A retry of something stored earlier: find what it was stored under.
                            let appid, key = keyOf item

                            let! existing =
                                scalar
                                    conn
                                    tx
                                    "SELECT id FROM inbox WHERE authorizer_appid = @a AND dedupe_key = @k"
                                    [ "@a", box appid; "@k", box key ]

                            settle item (string existing)

                next <- feed.More()

        return List.ofSeq outcomes
    }

/// A group-commit batch: every row starts pending.
let appendBatch dialect feed conn tx =
    appendBatchWith dialect (Dictionary<string, AttemptRecord>()) feed conn tx

/// Claims up to `max` due deliveries for `holder` until `until`, oldest first.
let claim (access: ISqlAccess) (holder: string) (now: DateTimeOffset) (until: DateTimeOffset) (max: int) =
    access.Run(fun conn ->
        query
            conn
            null
            $"UPDATE inbox SET claimed_by = @h, claimed_until = @u WHERE id IN (SELECT id FROM inbox WHERE status = 'pending' AND next_attempt_at <= @now AND (claimed_until IS NULL OR claimed_until <= @now) ORDER BY received_at, id LIMIT @max{access.Dialect.SkipLocked}) RETURNING {deliveryColumns}"
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

let markDelivered (access: ISqlAccess) (id: string) (at: DateTimeOffset) (holder: string) =
    access.Run(fun conn -> recordAttempt conn null (DeliveredAt(id, at, holder))) :> Task

let markFailed (access: ISqlAccess) (id: string) (error: string) (retryAt: DateTimeOffset option) (holder: string) =
    access.Run(fun conn -> recordAttempt conn null (FailedAt(id, error, retryAt, holder))) :> Task

/// Many attempts' outcomes in one transaction, in order; the caller commits and syncs.
let recordAttempts (attempts: AttemptRecord list) (conn: DbConnection) (tx: DbTransaction) =
    task {
        for a in attempts do
            let! _ = recordAttempt conn tx a
            ()
    }

let get (access: ISqlAccess) (id: string) =
    access.Run(fun conn ->
        tryOne conn null $"SELECT {deliveryColumns} FROM inbox WHERE id = @id" [ "@id", box id ] readDelivery)

/// The list's status condition, joined by `word` (WHERE, AND) to what comes before; nothing without one.
let private statusFilter (word: string) (status: DeliveryStatus option) =
    match status with
    | Some s -> $" {word} status = @s", [ "@s", box (DeliveryStatus.toText s) ]
    | None -> "", []

/// How many deliveries the list holds: PostgreSQL sums its recorded count changes (migration 10),
/// SQLite counts the list's index.
let private count (access: ISqlAccess) (conn: DbConnection) (status: DeliveryStatus option) =
    task {
        let where, ps = statusFilter "WHERE" status

        let! n =
            match access.Dialect.Engine with
            | Settings.Postgres -> scalar conn null $"SELECT COALESCE(SUM(n), 0) FROM inbox_counts{where}" ps
            | Settings.Sqlite -> scalar conn null $"SELECT COUNT(*) FROM inbox{where}" ps

        return Convert.ToInt32 n
    }

let list (access: ISqlAccess) (status: DeliveryStatus option) (offset: int) (limit: int) =
    let where, ps = statusFilter "WHERE" status

    access.Run(fun conn ->
        task {
            let! total = count access conn status
            // A deep page skips its offset in the list's index, reading ids only, and fetches the
            // rows of the page alone; a page in the older half is counted from the oldest end, so
            // the last page costs what the first does (at a million messages, a page from the
            // newest end skipped a million rows and took a tenth of a second).
            let direction, skip, take =
                let fromOldest = max 0 (total - offset - limit)

                if fromOldest < offset then
                    "ASC", fromOldest, max 0 (total - offset - fromOldest)
                else
                    "DESC", offset, limit

            let! items =
                query
                    conn
                    null
                    $"SELECT {deliveryColumns} FROM inbox WHERE id IN (SELECT id FROM inbox{where} ORDER BY received_at {direction}, id {direction} LIMIT @limit OFFSET @offset) ORDER BY received_at DESC, id DESC"
                    (ps @ [ "@limit", box (int64 take); "@offset", box (int64 skip) ])
                    readDelivery

            return { Items = items; Total = total }
        })

/// The list's order is (received_at, id) descending, and both indexes of the list end in those two
/// columns: a page by cursor starts at the cursor's place in the index. `older`: the items after
/// the cursor in that order; otherwise the `limit` newer ones nearest to it, read the other way
/// along the index and handed back newest first, as every page is.
let private listFrom
    (older: bool)
    (access: ISqlAccess)
    (status: DeliveryStatus option)
    (cursor: Paging.Cursor)
    (limit: int)
    =
    let also, ps = statusFilter "AND" status
    let compare, order = if older then "<", "DESC" else ">", "ASC"

    access.Run(fun conn ->
        task {
            let! total = count access conn status

            let! items =
                query
                    conn
                    null
                    $"SELECT {deliveryColumns} FROM inbox WHERE (received_at, id) {compare} (@at, @id){also} ORDER BY received_at {order}, id {order} LIMIT @limit"
                    (ps @ [ "@at", box cursor.At; "@id", box cursor.Id; "@limit", box (int64 limit) ])
                    readDelivery

            return
                {
                    Items = if older then items else List.rev items
                    Total = total
                }
        })

let listBefore access status (before: Paging.Cursor) limit =
    listFrom true access status before limit

let listAfter access status (after: Paging.Cursor) limit =
    listFrom false access status after limit

/// PostgreSQL: the count changes recorded so far become one row per status. Under a lock taken
/// only if free, so instances folding at the same moment do not wait for one another; rows added
/// meanwhile are left for the next fold (the delete sees only what was committed when it began).
let foldCounts (access: ISqlAccess) =
    match access.Dialect.Engine with
    | Settings.Sqlite -> Task.CompletedTask
    | Settings.Postgres ->
        access.Run(fun conn ->
            task {
                use! tx = conn.BeginTransactionAsync()
                let! free = scalar conn tx "SELECT pg_try_advisory_xact_lock(7031146)" []

                if free :?> bool then
                    let! _ =
                        exec
                            conn
                            tx
                            "WITH folded AS (DELETE FROM inbox_counts RETURNING status, n) INSERT INTO inbox_counts (status, n) SELECT status, SUM(n) FROM folded GROUP BY status HAVING SUM(n) <> 0"
                            []

                    ()

                do! tx.CommitAsync()
            })
        :> Task

/// PostgreSQL: vacuums the inbox once at least `after` of its rows were written or changed since it
/// was last vacuumed, by anyone, as the server's statistics count them (a few seconds behind);
/// true when it did. The list skips a deep page's offset in its index alone only where the
/// visibility map marks the rows visible to all, and autovacuum looks at a database at most once a
/// minute: at a million messages seeded in 34 s, a page in the middle of the list read the table for
/// every row it skipped, 343 ms. SKIP_LOCKED: while autovacuum or another instance is at it, this
/// one leaves it. Where the gateway's role does not own the table, PostgreSQL skips it with a
/// warning. SQLite: nothing (its list reads its index in the process).
let vacuum (access: ISqlAccess) (after: int64) (stopping: CancellationToken) =
    match access.Dialect.Engine with
    | Settings.Sqlite -> Task.FromResult false
    | Settings.Postgres ->
        access.Run(fun conn ->
            task {
                let! changed =
                    scalar
                        conn
                        null
                        "SELECT COALESCE((SELECT n_ins_since_vacuum + n_dead_tup FROM pg_stat_user_tables WHERE relid = to_regclass('inbox')), 0)"
                        []

                if Convert.ToInt64 changed >= after then
                    // Paced as this server paces autovacuum (-1: as it paces every vacuum), since it
                    // runs while pushes come in: PostgreSQL does not pace a VACUUM command unless told,
                    // and unpaced, the kit's PostgreSQL pushes ran at 0.90 of the rate without it.
                    let asAutovacuum setting =
                        $"set_config('vacuum_{setting}', CASE current_setting('autovacuum_vacuum_{setting}') WHEN '-1' THEN current_setting('vacuum_{setting}') ELSE current_setting('autovacuum_vacuum_{setting}') END, false)"

                    let! _ =
                        exec conn null ("SELECT " + asAutovacuum "cost_delay" + ", " + asAutovacuum "cost_limit") []

                    let! failure =
                        Task.run
                            (fun () ->
                                task {
                                    use c = command conn null "VACUUM (SKIP_LOCKED) inbox" []
                                    // After a bulk load it may take a while; stopping the gateway cancels it.
                                    c.CommandTimeout <- 0
                                    let! _ = c.ExecuteNonQueryAsync stopping
                                    ()
                                })
                            ()

                    let! _ = exec conn null "RESET vacuum_cost_delay; RESET vacuum_cost_limit" []

                    failure
                    |> Option.iter (fun ex -> Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex).Throw())

                    return true
                else
                    return false
            })

let releaseClaims (access: ISqlAccess) (holder: string) =
    access.Run(fun conn ->
        exec
            conn
            null
            "UPDATE inbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = @h AND status = 'pending'"
            [ "@h", box holder ])

let retry (access: ISqlAccess) (id: string) (now: DateTimeOffset) =
    task {
        let! n =
            access.Run(fun conn ->
                exec
                    conn
                    null
                    "UPDATE inbox SET status = 'pending', next_attempt_at = @now, claimed_by = NULL, claimed_until = NULL WHERE id = @id AND status IN ('dead', 'pending')"
                    [ "@now", box (ms now); "@id", box id ])

        return n > 0
    }

/// In inbox_due's order (status, next_attempt_at): the scan stops after `max` rows instead of
/// sorting every delivered row, which on SQLite would hold the one connection meanwhile.
let purgeDelivered (access: ISqlAccess) (before: DateTimeOffset) (max: int) =
    access.Run(fun conn ->
        exec
            conn
            null
            "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE status = 'delivered' AND delivered_at < @before ORDER BY next_attempt_at LIMIT @max)"
            [ "@before", box (ms before); "@max", box (int64 max) ])

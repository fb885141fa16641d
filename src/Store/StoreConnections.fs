/// How the store gets a connection: SQLite one call at a time on a shared connection, PostgreSQL from
/// the pool. SQLite's write-ahead log can also be synced apart from the commit, so a batch of the
/// inbox waits for its fsync without holding the connection (see `RunThenSync`).
module WeChatFs.StoreConnections

open System
open System.Data.Common
open System.IO
open System.Threading
open System.Threading.Tasks
open Microsoft.Data.Sqlite
open Npgsql

type internal Connections =
    abstract Run: (DbConnection -> Task<'a>) -> Task<'a>

    /// Like Run, and resolves only once what `work` committed is durable. SQLite commits without
    /// its own fsync and syncs the log after releasing the connection, so the next caller can
    /// write while this one waits for the disk; one fsync then serves every commit made before it.
    /// With SQLite the task completes on the log's sync thread, so what a caller does right after
    /// it must be brief and must not block (group commit only hands each writer its result).
    abstract RunThenSync: (DbConnection -> Task<'a>) -> Task<'a>

    abstract Dispose: unit -> unit

/// fsync of SQLite's write-ahead log, shared: each fsync answers every request made before it began.
/// The log only grows or is rewritten in place while the store holds its connection open, so one
/// handle serves for the store's lifetime.
type internal LogSync(walPath: string) =
    // A kernel event, not a spinning one: spinning would take a core from the requests.
    let signal = new AutoResetEvent(false)
    let sync = obj ()
    let mutable waiting: TaskCompletionSource = null
    let mutable stopped = false

    let log =
        lazy (new FileStream(walPath, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite ||| FileShare.Delete))

    let take () =
        lock sync (fun () ->
            let w = waiting
            waiting <- null
            w)

    let loop () =
        while not (Volatile.Read &stopped) do
            signal.WaitOne() |> ignore

            match take () with
            | null -> ()
            | requests ->
                try
                    // fdatasync (fsync elsewhere); nothing is buffered in the stream itself.
                    FileSync.syncData log.Value

                    requests.TrySetResult() |> ignore
                with ex ->
                    requests.TrySetException ex |> ignore

        match take () with
        | null -> ()
        | requests -> requests.TrySetException(ObjectDisposedException "LogSync") |> ignore

    // A thread of its own: fsync blocks, and a thread-pool thread blocked on it would hold up requests.
    let thread = Thread(loop, IsBackground = true, Name = "wechatfs-log-sync")
    do thread.Start()

    /// Resolves once an fsync that began after this call has finished.
    member _.Sync() : Task =
        lock sync (fun () ->
            if isNull waiting then
                // Continuations run on the sync thread itself. Under load the thread pool is busy
                // with requests, and a hop through its queue would delay the news that a batch is
                // durable, which is what lets the next batch commit. What runs here is short:
                // group commit answers its writers, whose own continuations go to the pool.
                waiting <- TaskCompletionSource()
                signal.Set() |> ignore

            waiting.Task)

    member _.Dispose() =
        Volatile.Write(&stopped, true)
        signal.Set() |> ignore

        if Thread.CurrentThread <> thread then
            thread.Join()

        if log.IsValueCreated then
            log.Value.Dispose()

        signal.Dispose()

type internal SqliteConnections(connectionString: string) =
    let gate = new SemaphoreSlim(1, 1)
    let conn = new SqliteConnection(connectionString)

    let pragma (text: string) =
        use c = conn.CreateCommand()
        c.CommandText <- text
        c.ExecuteScalar()

    let log =
        conn.Open()
        let mode = string (pragma "PRAGMA journal_mode=WAL")
        // Durable before acknowledged: every commit reaches the disk (RunThenSync syncs the log itself).
        pragma "PRAGMA synchronous=FULL" |> ignore
        pragma "PRAGMA busy_timeout=5000" |> ignore
        // In-memory databases (and file systems without WAL) keep the plain FULL commit.
        if mode = "wal" && not (String.IsNullOrEmpty conn.DataSource) then
            Some(new LogSync(conn.DataSource + "-wal"))
        else
            None

    // Prepared once rather than parsed for every batch: a batch switches the commit's own fsync off
    // and back on.
    let synchronous (level: string) =
        let c = conn.CreateCommand()
        c.CommandText <- $"PRAGMA synchronous={level}"
        c

    let syncNormal, syncFull = synchronous "NORMAL", synchronous "FULL"

    let run (work: DbConnection -> Task<'a>) =
        task {
            do! gate.WaitAsync()

            try
                return! work (conn :> DbConnection)
            finally
                gate.Release() |> ignore
        }

    interface Connections with
        member _.Run(work) = run work

        member _.RunThenSync(work) =
            match log with
            | None -> run work
            | Some log ->
                task {
                    let! result =
                        run (fun c ->
                            task {
                                syncNormal.ExecuteNonQuery() |> ignore

                                try
                                    return! work c
                                finally
                                    syncFull.ExecuteNonQuery() |> ignore
                            })

                    do! log.Sync()
                    return result
                }

        member _.Dispose() =
            log |> Option.iter (fun l -> l.Dispose())
            syncNormal.Dispose()
            syncFull.Dispose()
            conn.Dispose()
            gate.Dispose()

/// The connection string with Npgsql's automatic preparation on, unless it names its own `Max Auto
/// Prepare` (0 turns it off, e.g. behind a pooler in transaction mode that cannot keep prepared
/// statements). The store runs a few statements over and over (the inbox's batch insert above all);
/// prepared, the server no longer parses and plans them each time: in batches of 25 pushes, timed
/// apart, the server's processor time per push fell from 45–57 µs to 37–41.
let postgresConnectionString (connectionString: string) =
    let b = NpgsqlConnectionStringBuilder connectionString

    if b.Keys |> Seq.cast<string> |> Seq.contains "Max Auto Prepare" then
        connectionString
    else
        b.MaxAutoPrepare <- 64
        b.ConnectionString

type internal PostgresConnections(connectionString: string) =
    let source = NpgsqlDataSource.Create(postgresConnectionString connectionString)

    let run (work: DbConnection -> Task<'a>) =
        task {
            use! conn = source.OpenConnectionAsync()
            return! work (conn :> DbConnection)
        }

    interface Connections with
        member _.Run(work) = run work
        // PostgreSQL's commit is durable when it returns, and concurrent commits share its WAL flush.
        member _.RunThenSync(work) = run work
        member _.Dispose() = source.Dispose()

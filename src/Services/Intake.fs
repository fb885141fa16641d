/// The embedded store's fast intake: a push is checked against the recent pushes in memory (WeChat's
/// retries), appended to the intake log and acknowledged once the log is durable; a background loop
/// writes the log's records to the inbox table in large transactions. The inbox's unique key stays
/// the last word on duplicates: a retry that memory no longer knows is still stored once.
module WeChatFs.Intake

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.IO
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open WeChatFs.Store
open WeChatFs.IntakeLog

/// What a record's row stores as its payload: the webhook body, or a message's decrypted XML, which
/// the inbox turns into the webhook body when the row is read (InboxRows): the JSON, which repeats
/// the message's text, is made only for rows that are read, and the row is half the size.
let payloadOf (e: Entry) =
    match e.Body with
    | Payload json -> json
    | Xml plain -> plain

/// How long and how many pushes memory keeps for answering retries at once. WeChat retries within
/// seconds; past the window (or the count, under a flood) the inbox's unique key still holds.
type Window = { Age: TimeSpan; Count: int }

/// How long the inbox writer lets records gather for one transaction. With a webhook, 50 ms: the
/// first attempts' outcomes (the webhook answers within milliseconds) go in with their rows instead
/// of as updates after. Without one there is nothing to fold, and 10 ms: every record waiting in
/// memory outlives the youngest generation's collections, and a shorter wait keeps the collector from
/// going deeper (in a kit A/B, p99 9.0–10.1 ms against 12.5–15.8 at 50 ms; the rate within the
/// rounds' spread, median ratio 0.96).
let indexGather (webhook: bool) =
    TimeSpan.FromMilliseconds(if webhook then 50. else 10.)

/// `onSync`: how long each sync of the log took (the gateway's metrics).
type IntakeService
    (
        store: IStore,
        folder: string,
        window: Window,
        syncGather: TimeSpan,
        gather: TimeSpan,
        clock: TimeProvider,
        logger: ILogger,
        ?onSync: TimeSpan -> unit
    ) =
    let recent = RecentPushes.Window(window.Count)
    let toIndex = ConcurrentQueue<Entry>()

    // Tracked records (those a webhook may deliver) not yet in the inbox.
    let notIndexed = ConcurrentDictionary<string, unit>()

    // Delivery outcomes, applied once their records are in the inbox, many per transaction.
    let attempts = ConcurrentQueue<AttemptRecord>()

    let work = new SemaphoreSlim(0)
    let stop = new CancellationTokenSource()

    let log =
        Directory.CreateDirectory folder |> ignore

        new Writer(
            Path.Combine(folder, "intake.log"),
            (fun entries ->
                for e in entries do
                    toIndex.Enqueue e

                work.Release() |> ignore),
            16L * 1024L * 1024L,
            TimeSpan.FromMinutes 1.,
            clock,
            syncGather,
            defaultArg onSync ignore
        )

    let keyOf (i: InboxItem) =
        RecentPushes.keyOf (Domain.Ids.authorizerAppId i.AuthorizerAppId) i.DedupeKey

    let forgetOld () =
        recent.ForgetBefore(clock.GetUtcNow().Ticks - window.Age.Ticks)

    do
        // What the log held at start: known as seen, and written to the inbox first. Unclaimed: the
        // first attempt each was claimed for died with the process, as the claims of rows already in
        // the inbox did (StoreMigrator frees those), so a replayed record is due at once rather than
        // when that claim would have run out.
        for recovered in log.Recovered do
            let e =
                { recovered with
                    Item =
                        { recovered.Item with
                            ClaimedBy = None
                            ClaimedUntil = None
                        }
                }

            recent.Durable(keyOf e.Item, e.Item.Id, clock.GetUtcNow().Ticks)
            toIndex.Enqueue e

        if not log.Recovered.IsEmpty then
            logger.LogInformation(
                "intake log: {Count} records from before the start go to the inbox",
                log.Recovered.Length
            )

    // Takes the queued outcomes that `wanted` picks; the others stay queued, in their order.
    let takeAttempts (wanted: AttemptRecord -> bool) =
        let taken = ResizeArray<AttemptRecord>()

        if not attempts.IsEmpty then
            let others = ResizeArray<AttemptRecord>()
            let mutable a = Unchecked.defaultof<AttemptRecord>

            while attempts.TryDequeue(&a) do
                (if wanted a then taken else others).Add a

            for a in others do
                attempts.Enqueue a

        taken

    // The outcomes of first attempts made for records of `batch` (usually all of them: the webhook
    // answers within milliseconds, the batch gathers for tens): they go in with their rows, which are
    // then written once. The others stay queued for applyAttempts.
    let firstAttemptsOf (batch: ResizeArray<Entry>) =
        let firsts = Dictionary<string, AttemptRecord>()

        if not attempts.IsEmpty then
            let ids = HashSet<string>(batch.Count)

            for e in batch do
                ids.Add e.Item.Id |> ignore

            for a in takeAttempts (fun a -> ids.Contains a.Id) do
                if not (firsts.TryAdd(a.Id, a)) then
                    attempts.Enqueue a

        firsts

    let indexBatch (batch: ResizeArray<Entry>) =
        task {
            let items = [ for e in batch -> { e.Item with Payload = payloadOf e } ]
            let firsts = firstAttemptsOf batch

            try
                let! _ = store.IndexInbox(items, firsts)
                ()
            with ex ->
                // The loop writes the batch again; its outcomes wait in the queue meanwhile.
                for a in firsts.Values do
                    attempts.Enqueue a

                Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex).Throw()

            for e in batch do
                notIndexed.TryRemove e.Item.Id |> ignore

            log.Indexed batch.Count
        }

    // The outcomes whose rows are in the inbox (a tracked record leaves notIndexed when it is);
    // the others wait for the next round. A store error keeps them all for the next round.
    let applyAttempts () =
        task {
            let ready = takeAttempts (fun a -> not (notIndexed.ContainsKey a.Id))

            try
                if ready.Count > 0 then
                    do! store.RecordAttempts(List.ofSeq ready)
            with ex ->
                logger.LogError(ex, "recording {Count} delivery outcomes failed; retrying", ready.Count)

                for a in ready do
                    attempts.Enqueue a
        }

    let indexerDone = TaskCompletionSource()

    // One loop writes the inbox: it waits for records, lets a few milliseconds' worth gather (one
    // transaction for many), and keeps a failed batch until the store takes it. It has a thread of
    // its own: SQLite works synchronously under its async calls, and a batch of hundreds of rows
    // holds its thread for milliseconds, which on the thread pool (or the timer thread, where a
    // delay's continuation runs) the requests would wait behind.
    let indexLoop () =
        let batch = ResizeArray<Entry>()
        let mutable go = true

        while go do
            try
                if batch.Count = 0 then
                    if work.Wait(TimeSpan.FromMilliseconds 200.) && not stop.IsCancellationRequested then
                        // Under load, a transaction of many records costs far less per record
                        // (each page of the table and its indexes is written once per commit).
                        stop.Token.WaitHandle.WaitOne gather |> ignore

                    // One round takes everything that arrived: the wake-ups of the batches it
                    // takes are spent too, so the count never grows with the uptime.
                    while work.Wait 0 do
                        ()

                let mutable e = Unchecked.defaultof<Entry>

                while batch.Count < 4096 && toIndex.TryDequeue(&e) do
                    batch.Add e

                if batch.Count > 0 then
                    try
                        (indexBatch batch).GetAwaiter().GetResult()
                        batch.Clear()
                    with ex ->
                        logger.LogError(
                            ex,
                            "intake log: writing {Count} records to the inbox failed; retrying",
                            batch.Count
                        )

                        stop.Token.WaitHandle.WaitOne(TimeSpan.FromSeconds 1.) |> ignore
                elif stop.IsCancellationRequested then
                    go <- false

                (applyAttempts ()).GetAwaiter().GetResult()
                forgetOld ()
            with ex ->
                logger.LogError(ex, "intake log: the inbox writer's round failed")

        indexerDone.TrySetResult() |> ignore

    do Thread(indexLoop, IsBackground = true, Name = "wechatfs-indexer").Start()

    /// Stored (durable in the log, the inbox follows) or a retry of a push seen before. With `track`,
    /// the outcomes given to `Record` for it wait until its row is in the inbox.
    member _.Append(entry: Entry, track: bool) : Task<AppendOutcome> =
        task {
            let key = keyOf entry.Item
            let mine = TaskCompletionSource()
            let mutable outcome = None

            while outcome.IsNone do
                match recent.Take(key, entry.Item.Id, mine.Task) with
                | RecentPushes.Earlier(durable, id) ->
                    try
                        // The earlier push is acknowledged only once durable; so is its retry.
                        do! durable
                        outcome <- Some(Duplicate id)
                    with _ ->
                        // The earlier one never reached the disk (and left the window): this one
                        // takes its place.
                        ()
                | RecentPushes.First ->
                    if track then
                        notIndexed[entry.Item.Id] <- ()

                    try
                        do! log.Append entry
                        recent.Durable(key, entry.Item.Id, clock.GetUtcNow().Ticks)
                        mine.SetResult()
                        outcome <- Some(Stored entry.Item.Id)
                    with ex ->
                        recent.Failed key
                        mine.SetException ex
                        notIndexed.TryRemove entry.Item.Id |> ignore
                        raise ex

            return outcome.Value
        }

    /// Records a delivery attempt's outcome once the delivery's row is in the inbox (within the
    /// indexer's next round), with the outcomes of other pushes in one transaction. WeChat hears the
    /// webhook's answer without waiting for it: a crash before it is recorded means one more delivery
    /// (deliveries are at least once).
    member _.Record(attempt: AttemptRecord) = attempts.Enqueue attempt

    /// Records durable in the log and not yet in the inbox.
    member _.Backlog = toIndex.Count

    interface IAsyncDisposable with
        member _.DisposeAsync() =
            ValueTask(
                task {
                    // The log first (every acknowledged record handed on), then the inbox catches up.
                    (log :> IDisposable).Dispose()
                    stop.Cancel()
                    work.Release() |> ignore
                    do! indexerDone.Task
                }
                :> Task
            )

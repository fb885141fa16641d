/// The embedded store's fast intake: a push is checked against the recent pushes in memory (WeChat's
/// retries), appended to the intake log and acknowledged once the log is durable; a background loop
/// writes the log's records to the inbox table in large transactions. The inbox's unique key stays
/// the last word on duplicates: a retry that memory no longer knows is still stored once.
module WeChatFs.Intake

open System
open System.Collections.Concurrent
open System.IO
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open WeChatFs.Store
open WeChatFs.IntakeLog

/// The webhook body of a record: a message's is made from its XML here, off the request path.
let render (e: Entry) =
    match e.Body with
    | Payload json -> json
    | Xml plain ->
        let i = e.Item

        let message =
            match Messages.parse plain with
            | Ok m -> Messages.messageJson m
            | Error _ -> null

        Messages.webhookPayload i.Id i.Kind i.AuthorizerAppId i.Tenant i.ReceivedAt message plain

/// How long and how many pushes memory keeps for answering retries at once. WeChat retries within
/// seconds; past the window (or the count, under a flood) the inbox's unique key still holds.
type Window = { Age: TimeSpan; Count: int }

type private Seen = { Id: string; Durable: Task }

type IntakeService(store: IStore, folder: string, window: Window, clock: TimeProvider, logger: ILogger) =
    let gather = TimeSpan.FromMilliseconds 50.
    let seen = ConcurrentDictionary<string, Seen>()
    let order = ConcurrentQueue<struct (string * int64)>()
    let toIndex = ConcurrentQueue<Entry>()

    let indexedSignals =
        ConcurrentDictionary<string, TaskCompletionSource<AppendOutcome>>()

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
            clock
        )

    let keyOf (i: InboxItem) =
        Domain.Ids.authorizerAppId i.AuthorizerAppId + "\n" + i.DedupeKey

    let forgetOld () =
        let horizon = clock.GetUtcNow().Ticks - window.Age.Ticks
        let mutable head = Unchecked.defaultof<struct (string * int64)>
        let mutable go = true

        while go && order.TryPeek(&head) do
            let struct (key, at) = head

            if at < horizon || order.Count > window.Count then
                order.TryDequeue() |> ignore
                seen.TryRemove key |> ignore
            else
                go <- false

    do
        // What the log held at start: known as seen, and written to the inbox first.
        for e in log.Recovered do
            seen[keyOf e.Item] <-
                {
                    Id = e.Item.Id
                    Durable = Task.CompletedTask
                }

            order.Enqueue(struct (keyOf e.Item, clock.GetUtcNow().Ticks))
            toIndex.Enqueue e

        if not log.Recovered.IsEmpty then
            logger.LogInformation(
                "intake log: {Count} records from before the start go to the inbox",
                log.Recovered.Length
            )

    let indexBatch (batch: ResizeArray<Entry>) =
        task {
            let items = [ for e in batch -> { e.Item with Payload = render e } ]

            let! outcomes = store.AppendInbox(GroupCommit.Feed.ofList items)

            for (e, o) in List.zip (List.ofSeq batch) outcomes do
                match indexedSignals.TryRemove e.Item.Id with
                | true, signal -> signal.TrySetResult o |> ignore
                | _ -> ()

            log.Indexed batch.Count
        }

    // One loop writes the inbox: it waits for records, lets a few milliseconds' worth gather (one
    // transaction for many), and keeps a failed batch until the store takes it.
    let indexer =
        Task.Run(fun () ->
            task {
                let batch = ResizeArray<Entry>()
                let mutable go = true

                while go do
                    if batch.Count = 0 then
                        try
                            do! work.WaitAsync(TimeSpan.FromMilliseconds 200., stop.Token) :> Task
                            // Under load, a transaction of many records costs far less per record
                            // (each page of the table and its indexes is written once per commit).
                            do! Task.Delay(gather, stop.Token)
                        with :? OperationCanceledException ->
                            ()

                    let mutable e = Unchecked.defaultof<Entry>

                    while batch.Count < 4096 && toIndex.TryDequeue(&e) do
                        batch.Add e

                    if batch.Count > 0 then
                        try
                            do! indexBatch batch
                            batch.Clear()
                        with ex ->
                            logger.LogError(
                                ex,
                                "intake log: writing {Count} records to the inbox failed; retrying",
                                batch.Count
                            )

                            do! Task.Delay(1000)
                    elif stop.IsCancellationRequested then
                        go <- false

                    forgetOld ()
            }
            :> Task)

    /// Stored (durable in the log, the inbox follows) or a retry of a push seen before. With `track`,
    /// `WhenIndexed` later tells when the row is in the inbox.
    member _.Append(entry: Entry, track: bool) : Task<AppendOutcome> =
        task {
            let key = keyOf entry.Item
            let mine = TaskCompletionSource()
            let mutable outcome = None

            while outcome.IsNone do
                match seen.TryGetValue key with
                | true, earlier ->
                    try
                        // The earlier push is acknowledged only once durable; so is its retry.
                        do! earlier.Durable
                        outcome <- Some(Duplicate earlier.Id)
                    with _ ->
                        // The earlier one never reached the disk: this one takes its place.
                        seen.TryRemove(Collections.Generic.KeyValuePair(key, earlier)) |> ignore
                | _ ->
                    if
                        seen.TryAdd(
                            key,
                            {
                                Id = entry.Item.Id
                                Durable = mine.Task
                            }
                        )
                    then
                        order.Enqueue(struct (key, clock.GetUtcNow().Ticks))

                        if track then
                            indexedSignals[entry.Item.Id] <-
                                TaskCompletionSource<AppendOutcome>(TaskCreationOptions.RunContinuationsAsynchronously)

                        try
                            do! log.Append entry
                            mine.SetResult()
                            outcome <- Some(Stored entry.Item.Id)
                        with ex ->
                            mine.SetException ex
                            seen.TryRemove key |> ignore
                            indexedSignals.TryRemove entry.Item.Id |> ignore
                            raise ex

            return outcome.Value
        }

    /// Resolves once a tracked record is in the inbox, with what the inbox made of it (a retry that
    /// memory had forgotten comes back Duplicate); at once for records not tracked.
    member _.WhenIndexed(id: string) : Task<AppendOutcome> =
        match indexedSignals.TryGetValue id with
        | true, signal -> signal.Task
        | _ -> Task.FromResult(Stored id)

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
                    do! indexer
                }
                :> Task
            )

/// Group commit: concurrent writers hand in one item each and wait; a single loop takes everything
/// queued so far and writes it in one transaction, then answers each writer with its own result.
/// One fsync then covers a whole batch, which is what lets a durable inbox keep up with WeChat's pushes.
module WeChatFs.GroupCommit

open System
open System.Threading
open System.Threading.Channels
open System.Threading.Tasks

type private Pending<'item, 'result> =
    {
        Item: 'item
        Done: TaskCompletionSource<'result>
    }

/// `writeBatch` must return one result per item, in order; if it throws, every writer of that batch
/// gets the exception (nothing of the batch is acknowledged).
type Batcher<'item, 'result>(writeBatch: 'item list -> Task<'result list>, maxBatch: int) =
    let queue =
        Channel.CreateUnbounded<Pending<'item, 'result>>(UnboundedChannelOptions(SingleReader = true))

    let stopping = new CancellationTokenSource()

    let drain () =
        let batch = ResizeArray<Pending<'item, 'result>>()
        let mutable next = Unchecked.defaultof<Pending<'item, 'result>>

        while batch.Count < maxBatch && queue.Reader.TryRead(&next) do
            batch.Add next

        List.ofSeq batch

    /// The writer runs on a thread of its own: store calls may block (SQLite's commit does), and a
    /// blocked thread-pool thread would hold up the very requests that are waiting for it.
    let loop =
        Task.Factory.StartNew(
            (fun () ->
                let mutable running = true

                while running do
                    let more =
                        try
                            queue.Reader.WaitToReadAsync(stopping.Token).AsTask().GetAwaiter().GetResult()
                        with :? OperationCanceledException ->
                            false

                    if not more then
                        running <- false
                    else
                        let batch = drain ()

                        if not batch.IsEmpty then
                            try
                                let results =
                                    (writeBatch (batch |> List.map (fun p -> p.Item))).GetAwaiter().GetResult()

                                if results.Length <> batch.Length then
                                    raise (InvalidOperationException "a batch write must answer every item")

                                List.iter2 (fun p r -> p.Done.TrySetResult r |> ignore) batch results
                            with ex ->
                                for p in batch do
                                    p.Done.TrySetException ex |> ignore),
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default
        )

    /// Resolves once the item's batch is durable.
    member _.Submit(item: 'item) : Task<'result> =
        let tcs =
            TaskCompletionSource<'result>(TaskCreationOptions.RunContinuationsAsynchronously)

        if queue.Writer.TryWrite { Item = item; Done = tcs } then
            tcs.Task
        else
            Task.FromException<'result>(ObjectDisposedException "GroupCommit.Batcher")

    interface IAsyncDisposable with
        member _.DisposeAsync() =
            ValueTask(
                task {
                    queue.Writer.TryComplete() |> ignore
                    do! loop
                    stopping.Dispose()
                }
                :> Task
            )

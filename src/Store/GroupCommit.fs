/// Group commit: concurrent writers hand in one item each and wait; one transaction takes many items
/// and one fsync makes them all durable, then each writer is answered with its own result. That is
/// what lets a durable inbox keep up with WeChat's pushes.
module WeChatFs.GroupCommit

open System
open System.Collections.Concurrent
open System.Threading
open System.Threading.Tasks

/// The items of one transaction: those at hand, then `More` for items that arrive while it is open.
/// `More` blocks until there are items or the batch closes, and answers [] once it is closed: when
/// the batch before it is durable (so no disk time is wasted waiting), or when the batch is full.
/// What is at hand when the batch before is durable still comes along.
type Feed<'item> =
    {
        First: 'item list
        More: unit -> 'item list
        /// Like More, except that once the batch before is durable this one closes at once, and what
        /// is at hand then is left to the next batch: for a store where every take costs a statement
        /// sent to a server and back, which would hold this batch's commit up by as much. The next
        /// batch writes those items while this one commits.
        MoreUntilDue: unit -> 'item list
    }

module Feed =
    /// A feed with nothing more to come.
    let ofList (items: 'item list) =
        {
            First = items
            More = fun () -> []
            MoreUntilDue = fun () -> []
        }

type private Pending<'item, 'result> =
    {
        Item: 'item
        Done: TaskCompletionSource<'result>
    }

/// `writeBatch` must return one result per item it took, in the order it took them, once they are
/// durable; if it fails, every writer of that batch gets the exception (none of it is acknowledged).
///
/// A batch stays open while the one before it is being made durable: the items arriving meanwhile
/// are written into it at once rather than in a burst after it closes, so the time a writer waits is
/// mostly the previous batch's fsync, and the next fsync starts as soon as the disk is free. With
/// `maxInFlight` 1, batches are written one after the other.
type Batcher<'item, 'result>(writeBatch: Feed<'item> -> Task<'result list>, maxBatch: int, maxInFlight: int) =
    let queue = ConcurrentQueue<Pending<'item, 'result>>()
    let inFlight = new SemaphoreSlim(maxInFlight, maxInFlight)
    // The writer thread sleeps on `wake` only after setting `sleeping` and finding nothing to do;
    // whoever makes work for it clears `sleeping` and sets `wake` (a spare wake-up only costs one
    // more look). A kernel event rather than a spinning one: on a small machine the spinning takes
    // the very cores that the requests it waits for need.
    let wake = new AutoResetEvent(false)
    let mutable sleeping = 0
    let mutable stopping = false
    let mutable batches = 0L
    let mutable items = 0L

    let rouse () =
        if Interlocked.Exchange(&sleeping, 0) = 1 then
            wake.Set() |> ignore

    /// Sleeps until `ready ()` holds; `ready` is read again after announcing the sleep, so no wake-up
    /// is missed. `ready` must have no side effects.
    let sleepUntil (ready: unit -> bool) =
        while not (ready ()) do
            Volatile.Write(&sleeping, 1)

            if not (ready ()) then
                wake.WaitOne() |> ignore

            Volatile.Write(&sleeping, 0)

    let take (max: int) (into: ResizeArray<Pending<'item, 'result>>) =
        let mutable next = Unchecked.defaultof<Pending<'item, 'result>>
        let mutable taken = []
        let mutable n = 0

        while n < max && queue.TryDequeue(&next) do
            into.Add next
            taken <- next.Item :: taken
            n <- n + 1

        List.rev taken

    let answer (batch: ResizeArray<Pending<'item, 'result>>) (written: Task<'result list>) =
        try
            let outcome =
                if not written.IsCompletedSuccessfully then
                    match written.Exception with
                    | null -> Error(OperationCanceledException() :> exn)
                    | e -> Error(e.GetBaseException())
                elif written.Result.Length <> batch.Count then
                    Error(InvalidOperationException "a batch write must answer every item it took" :> exn)
                else
                    Ok written.Result

            match outcome with
            | Ok results -> results |> List.iteri (fun i r -> batch[i].Done.TrySetResult r |> ignore)
            | Error e ->
                for p in batch do
                    p.Done.TrySetException e |> ignore
        finally
            inFlight.Release() |> ignore

    /// Starts one batch and returns once it takes no more items; answers the task that completes
    /// when the batch is durable (or failed).
    let start (previous: Task) =
        let batch = ResizeArray<Pending<'item, 'result>>()
        let first = take maxBatch batch
        // Set once the batch takes no more items. Until then the loop waits on it rather than on
        // `wake`, so at most one thread ever sleeps on `wake`.
        let closed = new ManualResetEventSlim(false)

        // The previous batch becoming durable closes this one, and must wake a writer waiting in More.
        previous.ContinueWith((fun (_: Task) -> rouse ()), TaskContinuationOptions.ExecuteSynchronously)
        |> ignore

        let closing () =
            previous.IsCompleted || batch.Count >= maxBatch

        /// Items that arrived since the last call, waiting for some while the previous batch is
        /// not yet durable; once it is, the batch closes, with what is at hand if `takeAtClose`.
        let more (takeAtClose: bool) () =
            if closed.IsSet then
                []
            else
                sleepUntil (fun () -> not queue.IsEmpty || closing ())
                // Read before taking: what is at hand when the previous batch is done still comes
                // along, if the batch takes it.
                let last = closing ()

                let taken =
                    if last && not takeAtClose then
                        []
                    else
                        take (maxBatch - batch.Count) batch

                if last then
                    closed.Set()

                taken

        Interlocked.Increment &batches |> ignore

        let written =
            try
                writeBatch
                    {
                        First = first
                        More = more true
                        MoreUntilDue = more false
                    }
            with ex ->
                Task.FromException<'result list> ex

        // Done (durable, or failed) before its writers are answered: a writer that has its answer
        // knows that the batch after it already sees this one as done. Continuations run inline:
        // the only one is the next batch's wake-up.
        let done' = TaskCompletionSource()

        let finish (t: Task<'result list>) =
            closed.Set()
            Interlocked.Add(&items, int64 batch.Count) |> ignore
            done'.TrySetResult() |> ignore
            answer batch t
            rouse ()

        if written.IsCompleted then
            finish written
        else
            written.ContinueWith(finish, TaskContinuationOptions.ExecuteSynchronously)
            |> ignore

        closed.Wait()
        done'.Task :> Task

    /// The writer runs on a thread of its own: store calls may block (SQLite's commit does), and a
    /// blocked thread-pool thread would hold up the very requests that are waiting for it.
    let loop =
        Task.Factory.StartNew(
            (fun () ->
                let mutable previous = Task.CompletedTask

                while not (Volatile.Read &stopping && queue.IsEmpty) do
                    sleepUntil (fun () -> not queue.IsEmpty || Volatile.Read &stopping)
                    // A free slot first: while the store is busy, the queue fills.
                    inFlight.Wait()

                    if queue.IsEmpty then
                        inFlight.Release() |> ignore
                    else
                        previous <- start previous

                // Disposal waits for the batches still being written.
                for _ in 1..maxInFlight do
                    inFlight.Wait()),
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default
        )

    /// Batches written and items in them so far: items / batches is the commits saved per item.
    member _.Counts = Interlocked.Read &batches, Interlocked.Read &items

    /// Resolves once the item's batch is durable.
    member _.Submit(item: 'item) : Task<'result> =
        if Volatile.Read &stopping then
            Task.FromException<'result>(ObjectDisposedException "GroupCommit.Batcher")
        else
            let tcs =
                TaskCompletionSource<'result>(TaskCreationOptions.RunContinuationsAsynchronously)

            queue.Enqueue { Item = item; Done = tcs }
            rouse ()
            tcs.Task

    interface IAsyncDisposable with
        member _.DisposeAsync() =
            ValueTask(
                task {
                    Volatile.Write(&stopping, true)
                    rouse ()
                    do! loop
                    // Anything handed in while the loop was finishing is refused, not left waiting.
                    let mutable left = Unchecked.defaultof<Pending<'item, 'result>>

                    while queue.TryDequeue(&left) do
                        left.Done.TrySetException(ObjectDisposedException "GroupCommit.Batcher")
                        |> ignore
                }
                :> Task
            )

module WeChatFs.Tests.GroupCommitTests

open System
open System.Threading
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.GroupCommit

/// A store like SQLite's: writes under a lock, then waits for a slow "fsync" outside it.
let private syncingStore (syncDelay: int) =
    let gate = new SemaphoreSlim(1, 1)
    let fromMore = ref 0

    let write (feed: Feed<int>) =
        task {
            do! gate.WaitAsync()
            let results = ResizeArray<int>()

            try
                let mutable next = feed.First

                while not next.IsEmpty do
                    for i in next do
                        results.Add(i * 10)

                    next <- feed.More()

                    Interlocked.Add(fromMore, next.Length) |> ignore
            finally
                gate.Release() |> ignore

            do! Task.Delay syncDelay
            return List.ofSeq results
        }

    write, fromMore

/// The items each batch took, in a run held step by step: 1 makes batch 1, which closes at once and
/// stays in flight until 4 waits in the queue; 2 opens batch 2 and 3 joins it; then batch 1 is
/// durable and batch 2 asks once more with `moreOf`, with 4 at hand.
let private heldRun (moreOf: Feed<int> -> unit -> int list) =
    task {
        let taken = ResizeArray<int list>()
        let batchNo = ref 0

        let closed1 =
            TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

        let release1 = TaskCompletionSource()

        let opened2 =
            TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

        let joined2 =
            TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

        let ask2 = TaskCompletionSource()

        let write (feed: Feed<int>) =
            task {
                let items = ResizeArray<int>(feed.First)

                match Interlocked.Increment batchNo with
                | 1 ->
                    // Nothing is in flight before it: it closes at once.
                    items.AddRange(moreOf feed ())
                    closed1.SetResult()
                    do! release1.Task
                | 2 ->
                    opened2.SetResult()
                    items.AddRange(moreOf feed ())
                    joined2.SetResult()
                    do! ask2.Task
                    items.AddRange(moreOf feed ())
                | _ -> items.AddRange(moreOf feed ())

                lock taken (fun () -> taken.Add(List.ofSeq items))
                return items |> Seq.map (fun i -> i * 10) |> List.ofSeq
            }

        let batcher = new Batcher<int, int>(write, 512, 2)
        let a = batcher.Submit 1
        do! closed1.Task
        let b = batcher.Submit 2
        do! opened2.Task
        let c = batcher.Submit 3
        do! joined2.Task
        let d = batcher.Submit 4
        release1.SetResult()
        // Batch 1 counts as done before its writers are answered.
        let! _ = a
        ask2.SetResult()
        let! answers = Task.WhenAll [| b; c; d |]
        Expect.equal answers [| 20; 30; 40 |] "every writer gets its own answer"
        do! (batcher :> IAsyncDisposable).DisposeAsync()
        return List.ofSeq taken
    }

let tests =
    testList
        "GroupCommit"
        [
            testCaseTask "concurrent writers are answered with their own results, in fewer batches than writers"
            <| fun () ->
                task {
                    let batches = ref 0

                    let write (items: int list) =
                        task {
                            Interlocked.Increment batches |> ignore
                            do! Task.Delay 5
                            return items |> List.map (fun i -> i * 10)
                        }

                    let batcher = new Batcher<int, int>((fun feed -> write feed.First), 100, 1)

                    let! results =
                        Array.init 200 (fun i -> Task.Run<int>(Func<Task<int>>(fun () -> batcher.Submit i)))
                        |> Task.WhenAll

                    Expect.equal results (Array.init 200 (fun i -> i * 10)) "results"
                    Expect.isTrue (batches.Value < 200) ($"{batches.Value} batches")
                    do! (batcher :> IAsyncDisposable).DisposeAsync()
                }

            testCaseTask "a failed batch fails every writer in it and the next batch still works"
            <| fun () ->
                task {
                    let fail = ref true

                    let write (items: int list) =
                        task {
                            if fail.Value then
                                fail.Value <- false
                                return raise (InvalidOperationException "disk full")
                            else
                                return items
                        }

                    let batcher = new Batcher<int, int>((fun feed -> write feed.First), 100, 1)

                    let! ex = failsWith<InvalidOperationException>(fun () -> batcher.Submit 1 :> Task)

                    Expect.equal ex.Message "disk full" "ex.Message"
                    let! ok = batcher.Submit 2
                    Expect.equal ok 2 "ok"
                    do! (batcher :> IAsyncDisposable).DisposeAsync()
                }

            testCaseTask "items arriving while a batch syncs join the open batch, and every writer gets its own answer"
            <| fun () ->
                task {
                    let write, fromMore = syncingStore 2
                    let batcher = new Batcher<int, int>(write, 512, 2)

                    let worker (w: int) =
                        task {
                            for i in 0..199 do
                                let item = w * 1000 + i
                                let! r = batcher.Submit item
                                Expect.equal r (item * 10) "r"
                        }

                    let! _ = Array.init 32 (fun w -> Task.Run<unit>(fun () -> worker w)) |> Task.WhenAll
                    let batches, items = batcher.Counts
                    Expect.equal items (32L * 200L) "items"
                    Expect.isTrue (batches < items / 4L) ($"{batches} batches for {items} items")
                    Expect.isTrue (fromMore.Value > 0) "no item joined a batch that was already open"
                    do! (batcher :> IAsyncDisposable).DisposeAsync()
                }

            testCaseTask
                "More takes what is at hand when the batch before is durable; MoreUntilDue leaves it to the next batch"
            <| fun () ->
                task {
                    let! withMore = heldRun _.More
                    Expect.equal withMore [ [ 1 ]; [ 2; 3; 4 ] ] "More"
                    let! untilDue = heldRun _.MoreUntilDue
                    Expect.equal untilDue [ [ 1 ]; [ 2; 3 ]; [ 4 ] ] "MoreUntilDue"
                }

            testCaseTask "a batch write that answers too few items fails its writers instead of leaving them waiting"
            <| fun () ->
                task {
                    let batcher =
                        new Batcher<int, int>((fun (_: Feed<int>) -> Task.FromResult []), 512, 2)

                    for i in 1..3 do
                        let! ex = failsWith<InvalidOperationException>(fun () -> batcher.Submit i :> Task)

                        Expect.stringContains ex.Message "every item" "ex.Message"

                    do! (batcher :> IAsyncDisposable).DisposeAsync()
                }

            testCaseTask "after disposal nothing is accepted and nothing is left waiting"
            <| fun () ->
                task {
                    let write, _ = syncingStore 1
                    let batcher = new Batcher<int, int>(write, 512, 2)
                    let! r = batcher.Submit 4
                    Expect.equal r 40 "r"
                    do! (batcher :> IAsyncDisposable).DisposeAsync()

                    let! ex = failsWith<ObjectDisposedException>(fun () -> batcher.Submit 5 :> Task)

                    Expect.isNotNull ex "ex"
                }

        ]

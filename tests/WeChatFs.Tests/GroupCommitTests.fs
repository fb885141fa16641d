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

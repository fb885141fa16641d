module WeChatFs.Tests.GroupCommitTests

open System
open System.Threading
open System.Threading.Tasks
open Xunit
open WeChatFs.GroupCommit

[<Fact>]
let ``concurrent writers are answered with their own results, in fewer batches than writers`` () =
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

        Assert.Equal<int[]>(Array.init 200 (fun i -> i * 10), results)
        Assert.True(batches.Value < 200, $"{batches.Value} batches")
        do! (batcher :> IAsyncDisposable).DisposeAsync()
    }

[<Fact>]
let ``a failed batch fails every writer in it and the next batch still works`` () =
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

        let! ex =
            Assert.ThrowsAsync<InvalidOperationException>(fun () -> batcher.Submit 1 :> Task)

        Assert.Equal("disk full", ex.Message)
        let! ok = batcher.Submit 2
        Assert.Equal(2, ok)
        do! (batcher :> IAsyncDisposable).DisposeAsync()
    }

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

[<Fact>]
let ``items arriving while a batch syncs join the open batch, and every writer gets its own answer`` () =
    task {
        let write, fromMore = syncingStore 2
        let batcher = new Batcher<int, int>(write, 512, 2)

        let worker (w: int) =
            task {
                for i in 0..199 do
                    let item = w * 1000 + i
                    let! r = batcher.Submit item
                    Assert.Equal(item * 10, r)
            }

        let! _ = Array.init 32 (fun w -> Task.Run<unit>(fun () -> worker w)) |> Task.WhenAll
        let batches, items = batcher.Counts
        Assert.Equal(32L * 200L, items)
        Assert.True(batches < items / 4L, $"{batches} batches for {items} items")
        Assert.True(fromMore.Value > 0, "no item joined a batch that was already open")
        do! (batcher :> IAsyncDisposable).DisposeAsync()
    }

[<Fact>]
let ``a batch write that answers too few items fails its writers instead of leaving them waiting`` () =
    task {
        let batcher =
            new Batcher<int, int>((fun (_: Feed<int>) -> Task.FromResult []), 512, 2)

        for i in 1..3 do
            let! ex =
                Assert.ThrowsAsync<InvalidOperationException>(fun () -> batcher.Submit i :> Task)

            Assert.Contains("every item", ex.Message)

        do! (batcher :> IAsyncDisposable).DisposeAsync()
    }

[<Fact>]
let ``after disposal nothing is accepted and nothing is left waiting`` () =
    task {
        let write, _ = syncingStore 1
        let batcher = new Batcher<int, int>(write, 512, 2)
        let! r = batcher.Submit 4
        Assert.Equal(40, r)
        do! (batcher :> IAsyncDisposable).DisposeAsync()

        let! ex =
            Assert.ThrowsAsync<ObjectDisposedException>(fun () -> batcher.Submit 5 :> Task)

        Assert.NotNull ex
    }

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

        let batcher = new Batcher<int, int>(write, 100)

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

        let batcher = new Batcher<int, int>(write, 100)

        let! ex =
            Assert.ThrowsAsync<InvalidOperationException>(fun () -> batcher.Submit 1 :> Task)

        Assert.Equal("disk full", ex.Message)
        let! ok = batcher.Submit 2
        Assert.Equal(2, ok)
        do! (batcher :> IAsyncDisposable).DisposeAsync()
    }

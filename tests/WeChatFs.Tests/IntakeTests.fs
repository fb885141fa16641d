/// The embedded store's intake against a real SQLite store: a retry is answered as a duplicate of
/// the first push, every acknowledged push reaches the inbox once, and records left in the log by a
/// crash reach it at the next start.
module WeChatFs.Tests.IntakeTests

open System
open System.IO
open System.Threading.Tasks
open Expecto
open Microsoft.Extensions.Logging.Abstractions
open WeChatFs
open WeChatFs.Store
open WeChatFs.IntakeLog
open WeChatFs.Intake
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness

let private window =
    {
        Age = TimeSpan.FromMinutes 5.
        Count = 1000
    }

let private plain (n: int) =
    $"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o{n}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好 {n}]]></Content><MsgId>{n}</MsgId></xml>"

let private entry (n: int) (id: string) =
    {
        Item =
            {
                Id = id
                DedupeKey = $"msg:{n}"
                AuthorizerAppId = Domain.AuthorizerAppId "wxaccount"
                Tenant = Some(Domain.TenantId "shop")
                Kind = "message.text"
                ReceivedAt = DateTimeOffset.UtcNow
                Payload = ""
                ClaimedBy = None
                ClaimedUntil = None
            }
        Body = Xml(plain n)
    }

let private openStore () =
    task {
        let! store, _, file = StoreFixture.openFresh "sqlite"
        return store, Path.GetDirectoryName(Option.get file)
    }

/// The intake as the gateway runs it (syncing at most 1 ms after an append), on the real clock.
let private startIntake store folder =
    new IntakeService(
        store,
        folder,
        window,
        TimeSpan.FromMilliseconds 1.,
        indexGather true,
        TimeProvider.System,
        NullLogger.Instance
    )

/// Whether the inbox comes to hold `n` rows within 10 seconds.
let private inboxHolds (store: IStore) (n: int) =
    eventually (TimeSpan.FromSeconds 10.) (fun () ->
        task {
            let! page = store.ListDeliveries(None, 0, 1)
            return page.Total = n
        })

let private rows (store: IStore) =
    task {
        let! page = store.ListDeliveries(None, 0, 1000)
        return page.Items
    }

let tests =
    testSequencedGroup "Intake"
    <| testList
        "Intake"
        [
            testCaseAsync "a retry, even one arriving at the same moment, is a duplicate of the first and stored once"
            <| async {
                let! store, folder = openStore () |> Async.AwaitTask

                let intake = startIntake store folder

                let! outcomes =
                    [ for i in 1..20 -> intake.Append(entry 42 $"id-{i}", false) ]
                    |> Task.WhenAll
                    |> Async.AwaitTask

                let stored = outcomes |> Array.filter (fun o -> o.IsStored)
                Expect.equal stored.Length 1 "one stored"

                let id =
                    match stored[0] with
                    | Stored id
                    | Duplicate id -> id

                Expect.isTrue (outcomes |> Array.forall (fun o -> o = Stored id || o = Duplicate id)) "all name it"
                do! (intake :> IAsyncDisposable).DisposeAsync().AsTask() |> Async.AwaitTask
                let! inbox = rows store |> Async.AwaitTask
                Expect.equal (inbox |> List.map (fun d -> d.Id)) [ id ] "one row, under the first id"
                // The row's webhook body was made from the XML off the request path.
                Expect.stringContains inbox[0].Payload "你好 42" "payload made from the XML"
                Expect.stringContains inbox[0].Payload "\"msg_type\"" "with the typed message"
                (store :> IDisposable).Dispose()
            }

            testCaseAsync "every acknowledged push is in the inbox, without waiting for a stop"
            <| async {
                let! store, folder = openStore () |> Async.AwaitTask

                let intake = startIntake store folder

                let! _ =
                    [ for n in 1..300 -> intake.Append(entry n $"id-{n}", false) ]
                    |> Task.WhenAll
                    |> Async.AwaitTask

                let! all = inboxHolds store 300 |> Async.AwaitTask

                Expect.isTrue all "all 300 in the inbox"

                Expect.equal intake.Backlog 0 "nothing left to write"
                do! (intake :> IAsyncDisposable).DisposeAsync().AsTask() |> Async.AwaitTask
                (store :> IDisposable).Dispose()
            }

            testCaseAsync
                "records a crash left in the log reach the inbox at the next start, and their retries are duplicates"
            <| async {
                let! store, folder = openStore () |> Async.AwaitTask
                // As a crash leaves it: durable in the log, never written to the inbox.
                let w =
                    new Writer(
                        Path.Combine(folder, "intake.log"),
                        ignore,
                        Int64.MaxValue,
                        TimeSpan.MaxValue,
                        TimeProvider.System
                    )

                for n in 1..5 do
                    do! w.Append(entry n $"crashed-{n}") |> Async.AwaitTask

                (w :> IDisposable).Dispose()

                let intake = startIntake store folder

                let! all = inboxHolds store 5 |> Async.AwaitTask

                Expect.isTrue all "the five in the inbox"

                let! retry = intake.Append(entry 3 "retry-3", false) |> Async.AwaitTask
                Expect.equal retry (Duplicate "crashed-3") "the retry names the first"
                do! (intake :> IAsyncDisposable).DisposeAsync().AsTask() |> Async.AwaitTask
                let! inbox = rows store |> Async.AwaitTask
                Expect.equal inbox.Length 5 "each once"
                (store :> IDisposable).Dispose()
            }

            testCaseAsync "a first attempt's outcome goes in with its row, or onto it once the row is in"
            <| async {
                let! store, folder = openStore () |> Async.AwaitTask

                let intake = startIntake store folder

                let at = DateTimeOffset.FromUnixTimeMilliseconds 1_800_000_000_000L
                let retryAt = at.AddMinutes 1.

                let! _ =
                    [
                        for n, id in [ 1, "delivered"; 2, "retrying"; 3, "dead"; 4, "later" ] ->
                            intake.Append(entry n id, true)
                    ]
                    |> Task.WhenAll
                    |> Async.AwaitTask

                // As the webhook's answers come, within the indexer's gathering time.
                intake.Record(DeliveredAt("delivered", at, "me"))
                intake.Record(FailedAt("retrying", "HTTP 500", Some retryAt, "me"))
                intake.Record(FailedAt("dead", "HTTP 410", None, "me"))

                let! four = inboxHolds store 4 |> Async.AwaitTask

                Expect.isTrue four "the four in the inbox"
                // After the row is in: recorded as an update.
                intake.Record(DeliveredAt("later", at, "me"))

                let! laterDone =
                    eventually (TimeSpan.FromSeconds 10.) (fun () ->
                        task {
                            let! d = store.GetDelivery "later"
                            return d |> Option.exists (fun d -> d.Status = Delivered)
                        })
                    |> Async.AwaitTask

                Expect.isTrue laterDone "the later outcome is recorded"
                do! (intake :> IAsyncDisposable).DisposeAsync().AsTask() |> Async.AwaitTask
                let! inbox = rows store |> Async.AwaitTask
                let byId id = inbox |> List.find (fun d -> d.Id = id)

                let state (d: Delivery) =
                    d.Status, d.Attempts, d.LastError, d.NextAttemptAt, d.DeliveredAt

                Expect.equal
                    (state (byId "delivered"))
                    (Delivered, 1, None, Some (byId "delivered").ReceivedAt, Some at)
                    "delivered"

                Expect.equal (state (byId "retrying")) (Pending, 1, Some "HTTP 500", Some retryAt, None) "retrying"
                Expect.equal (state (byId "dead")) (Dead, 1, Some "HTTP 410", None, None) "dead"

                Expect.equal
                    (state (byId "later"))
                    (Delivered, 1, None, Some (byId "later").ReceivedAt, Some at)
                    "later"

                (store :> IDisposable).Dispose()
            }
        ]

/// The intake log's record format (every whole record read back, a torn tail never read as a record)
/// and its file (records survive a restart until the inbox has them; then the file is emptied).
module WeChatFs.Tests.IntakeLogTests

open System
open System.IO
open Expecto
open WeChatFs.Store
open WeChatFs.IntakeLog
open WeChatFs.Tests.Helpers

let private entry (n: int) (text: string) =
    {
        Item =
            {
                Id = $"id-{n}"
                DedupeKey = $"msg:{n}"
                AuthorizerAppId = WeChatFs.Domain.AuthorizerAppId "wxaccount"
                Tenant =
                    (if n % 2 = 0 then
                         Some(WeChatFs.Domain.TenantId "shop")
                     else
                         None)
                Kind = "message.text"
                ReceivedAt = t0.AddMilliseconds(float n)
                Payload = ""
                ClaimedBy = (if n % 3 = 0 then Some "instance-1" else None)
                ClaimedUntil = (if n % 3 = 0 then Some(t0.AddSeconds 15.) else None)
            }
        Body =
            (if n % 2 = 0 then
                 Xml $"<xml>{text}</xml>"
             else
                 Payload $"{{\"text\":\"{text}\"}}")
    }

let private encodeAll (entries: Entry list) =
    use out = new MemoryStream()

    for e in entries do
        encode out e

    out.ToArray()

let private entries (texts: string list) =
    texts |> List.mapi (fun i t -> entry i (if isNull t then "" else t))

let tests =
    testList
        "IntakeLog"
        [
            testProp "every record written is read back as it was"
            <| fun (texts: string list) ->
                let written = entries texts
                let bytes = encodeAll written
                let read, length = decodeAll bytes
                Expect.equal read written "records"
                Expect.equal length bytes.Length "all of the bytes"

            testProp "a file cut anywhere gives back the whole records before the cut, and nothing else"
            <| fun (texts: string list) (cut: uint16) ->
                let written = entries ("first 第一" :: texts)
                let bytes = encodeAll written
                let at = int cut % (bytes.Length + 1)
                let read, length = decodeAll bytes[.. at - 1]
                Expect.isTrue (length <= at) "never past the cut"
                Expect.equal read (List.take read.Length written) "a prefix of what was written"

                if at = bytes.Length then
                    Expect.equal read.Length written.Length "uncut: everything"

            testCase "a record whose bytes changed is not read, nor anything after it"
            <| fun () ->
                let written = entries [ "一"; "二"; "三" ]
                let bytes = encodeAll written
                let firstTwo = (encodeAll (List.take 2 written)).Length
                bytes[firstTwo + 12] <- bytes[firstTwo + 12] ^^^ 0x40uy
                let read, length = decodeAll bytes
                Expect.equal read (List.take 2 written) "the first two"
                Expect.equal length firstTwo "cut before the changed one"

            testCaseAsync "records survive a restart until the inbox has them; then the file is emptied"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                let handed = Collections.Concurrent.ConcurrentQueue<Entry>()

                let first =
                    new Writer(path, (fun es -> es |> List.iter handed.Enqueue), 0L, TimeSpan.Zero, TimeProvider.System)

                for e in entries [ "甲"; "乙"; "丙" ] do
                    do! first.Append e |> Async.AwaitTask

                Expect.equal handed.Count 3 "each durable record handed on"
                // Stopped before the inbox had any of them: all three come back.
                (first :> IDisposable).Dispose()
                let second = new Writer(path, ignore, 0L, TimeSpan.Zero, TimeProvider.System)
                Expect.equal second.Recovered (entries [ "甲"; "乙"; "丙" ]) "recovered"
                // The inbox takes them; the next look at the file empties it.
                second.Indexed 3
                (second :> IDisposable).Dispose()
                Expect.equal (FileInfo(path).Length) 0L "emptied"
                let third = new Writer(path, ignore, 0L, TimeSpan.Zero, TimeProvider.System)
                Expect.isEmpty third.Recovered "nothing to recover"
                (third :> IDisposable).Dispose()
            }

            testCaseAsync
                "under load one sync covers the appends of the gather window, or as many as the last sync held; a lone append is synced at once"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                let batches = Collections.Concurrent.ConcurrentQueue<int>()
                // Long, so that "at once" and "after the window" stay far apart even when a loaded
                // machine makes an fsync take most of a second.
                let gather = TimeSpan.FromMilliseconds 2000.

                let w =
                    new Writer(
                        path,
                        (fun es -> batches.Enqueue es.Length),
                        Int64.MaxValue,
                        TimeSpan.MaxValue,
                        TimeProvider.System,
                        gather
                    )

                let appendAll (es: Entry list) =
                    es |> List.map w.Append |> Threading.Tasks.Task.WhenAll |> Async.AwaitTask

                let mutable n = 0

                let next count =
                    [
                        for _ in 1..count do
                            n <- n + 1
                            entry n $"{n}"
                    ]

                // Many at once, until the last sync held at least twelve: the writer now expects
                // that many, and gathers before its next sync.
                while batches.IsEmpty || Seq.last batches < 12 do
                    do! appendAll (next 40)

                batches.Clear()
                // One now, ten more a moment later: fewer than expected, so all eleven wait for the
                // end of the window and share one sync.
                let first = w.Append(List.head (next 1))
                do! Async.Sleep 20
                do! appendAll (next 10)
                do! first |> Async.AwaitTask
                Expect.sequenceEqual batches [ 11 ] "one sync for the eleven"
                // As many as the last sync held: written without waiting for the window's end.
                batches.Clear()
                let clock = Diagnostics.Stopwatch.StartNew()
                do! appendAll (next 11)
                Expect.isLessThan clock.Elapsed (gather * 0.5) "the gathering ends when they are all there"
                Expect.sequenceEqual batches [ 11 ] "one sync for them"
                // Quiet again: a lone push does not wait for company.
                do! Async.Sleep(int gather.TotalMilliseconds * 2)
                batches.Clear()
                clock.Restart()
                do! w.Append(List.head (next 1)) |> Async.AwaitTask
                Expect.isLessThan clock.Elapsed (gather * 0.5) "synced without gathering"
                Expect.sequenceEqual batches [ 1 ] "alone in its sync"
                (w :> IDisposable).Dispose()
            }

            testCaseAsync "a torn tail is cut at start and new records follow the whole ones"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                let whole = encodeAll (entries [ "one"; "two" ])
                let torn = encodeAll [ entry 7 "torn" ]
                File.WriteAllBytes(path, Array.append whole torn[.. torn.Length - 5])

                let w =
                    new Writer(path, ignore, Int64.MaxValue, TimeSpan.MaxValue, TimeProvider.System)

                Expect.equal w.Recovered (entries [ "one"; "two" ]) "the whole ones"
                do! w.Append(entry 9 "after") |> Async.AwaitTask
                (w :> IDisposable).Dispose()

                let again =
                    new Writer(path, ignore, Int64.MaxValue, TimeSpan.MaxValue, TimeProvider.System)

                Expect.equal again.Recovered (entries [ "one"; "two" ] @ [ entry 9 "after" ]) "appended after them"
                (again :> IDisposable).Dispose()
            }
        ]

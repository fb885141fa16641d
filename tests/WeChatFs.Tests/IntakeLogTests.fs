/// The intake log's record format (every whole record read back; a torn tail or a record of an
/// earlier generation never read) and its file (records survive a restart until the inbox has them;
/// then the file is written over from the top).
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

/// Records as a file of `generation` holds them.
let private stamped (generation: int) (entries: Entry list) =
    let bytes = encodeAll entries
    stamp bytes bytes.Length generation
    bytes

/// A whole file of `generation`: its header and these bytes.
let private fileOf (generation: int) (records: byte[]) =
    Array.append (fileHeader generation) records

/// Records in the format before generations: `[length][checksum][body]`, no generation field.
let private legacy (entries: Entry list) =
    [|
        for e in entries do
            let record = encodeAll [ e ]
            yield! record[0..3]
            yield! record[8..]
    |]

let private entries (texts: string list) =
    texts |> List.mapi (fun i t -> entry i (if isNull t then "" else t))

let tests =
    testList
        "IntakeLog"
        [
            testProp "every record written is read back as it was"
            <| fun (texts: string list) ->
                let written = entries texts
                let bytes = stamped 3 written
                let read, length = decodeRecords (Some 3) bytes 0
                Expect.equal read written "records"
                Expect.equal length bytes.Length "all of the bytes"
                let before, _ = decodeRecords None (legacy written) 0
                Expect.equal before written "the format before generations"

            testProp "a file cut anywhere gives back the whole records before the cut, and nothing else"
            <| fun (texts: string list) (cut: uint16) ->
                let written = entries ("first 第一" :: texts)
                let bytes = stamped 1 written
                let at = int cut % (bytes.Length + 1)
                let read, length = decodeRecords (Some 1) bytes[.. at - 1] 0
                Expect.isTrue (length <= at) "never past the cut"
                Expect.equal read (List.take read.Length written) "a prefix of what was written"

                if at = bytes.Length then
                    Expect.equal read.Length written.Length "uncut: everything"

            testCase "a record whose bytes changed is not read, nor anything after it"
            <| fun () ->
                let written = entries [ "一"; "二"; "三" ]
                let bytes = stamped 1 written
                let firstTwo = (encodeAll (List.take 2 written)).Length
                bytes[firstTwo + 16] <- bytes[firstTwo + 16] ^^^ 0x40uy
                let read, length = decodeRecords (Some 1) bytes 0
                Expect.equal read (List.take 2 written) "the first two"
                Expect.equal length firstTwo "cut before the changed one"

            testCase "only records of the file's generation are read: reading stops at an earlier one"
            <| fun () ->
                let newer = entries [ "新"; "new" ]

                let older =
                    entries [ "旧一"; "旧二"; "旧三" ]
                    |> List.map (fun e -> { e with Item.Id = e.Item.Id + "-old" })

                let bytes = fileOf 8 (Array.append (stamped 8 newer) (stamped 7 older))

                match readImage bytes with
                | Current(generation, read, recordsEnd) ->
                    Expect.equal generation 8 "the header's generation"
                    Expect.equal read newer "the newer records only"
                    Expect.equal recordsEnd (headerLength + (encodeAll newer).Length) "where they end"
                | other -> failtest $"read as {other}"

                // A header torn mid-write: nothing in the file is read.
                let torn = Array.copy bytes
                torn[5] <- torn[5] ^^^ 1uy
                Expect.equal (readImage torn) (Rewrite []) "torn header"
                // A file of the format before generations: its records, to be written again.
                Expect.equal (readImage (legacy older)) (Rewrite older) "the format before"
                Expect.equal (readImage [||]) (Rewrite []) "no file"

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
                // The inbox takes them; the next look at the file starts it again (and, as the file
                // is past four times its 0-byte limit, gives the space back).
                second.Indexed 3
                (second :> IDisposable).Dispose()
                Expect.equal (FileInfo(path).Length) (int64 headerLength) "emptied"
                let third = new Writer(path, ignore, 0L, TimeSpan.Zero, TimeProvider.System)
                Expect.isEmpty third.Recovered "nothing to recover"
                (third :> IDisposable).Dispose()
            }

            testCaseAsync
                "under load one sync covers the appends of the gather window, or as many as the last sync held; a lone append is synced at once"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                let batches = Collections.Concurrent.ConcurrentQueue<int>()
                // Long, so that "at once" and "after the window" stay apart on a loaded machine.
                // What gathered takes the whole window, so anything shorter did not wait for it.
                let gather = TimeSpan.FromMilliseconds 3000.
                // The time of the syncs is the disk's, not the writer's waiting: a loaded machine
                // made one fsync take over a second (1.25 s was seen), and one lone append 3.016 s
                // in all. The waits below are measured without it.
                let syncedTicks = ref 0L

                let synced () =
                    TimeSpan(Threading.Interlocked.Read &syncedTicks.contents)

                let w =
                    new Writer(
                        path,
                        (fun es -> batches.Enqueue es.Length),
                        Int64.MaxValue,
                        TimeSpan.MaxValue,
                        TimeProvider.System,
                        gather,
                        (fun took -> Threading.Interlocked.Add(&syncedTicks.contents, took.Ticks) |> ignore)
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
                syncedTicks.Value <- 0L
                let clock = Diagnostics.Stopwatch.StartNew()
                do! appendAll (next 11)
                Expect.isLessThan (clock.Elapsed - synced ()) gather "the gathering ends when they are all there"
                Expect.sequenceEqual batches [ 11 ] "one sync for them"
                // Quiet again: a lone push does not wait for company.
                do! Async.Sleep(int gather.TotalMilliseconds * 2)
                batches.Clear()
                syncedTicks.Value <- 0L
                clock.Restart()
                do! w.Append(List.head (next 1)) |> Async.AwaitTask
                Expect.isLessThan (clock.Elapsed - synced ()) gather "synced without gathering"
                Expect.sequenceEqual batches [ 1 ] "alone in its sync"
                (w :> IDisposable).Dispose()
            }

            testCaseAsync
                "once the inbox has every record, new records are written over the old ones, which are never read again"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                // Started again as soon as the inbox has everything (any age), not shrunk below 1 MB.
                let start () =
                    new Writer(path, ignore, 1L <<< 20, TimeSpan.Zero, TimeProvider.System)

                let first = start ()
                let old = entries [ "一"; "二"; "三"; "四"; "五" ]

                for e in old do
                    do! first.Append e |> Async.AwaitTask

                let grown = FileInfo(path).Length
                first.Indexed old.Length
                (first :> IDisposable).Dispose()
                Expect.equal (FileInfo(path).Length) grown "the file keeps its size: written over, not emptied"
                let second = start ()
                Expect.isEmpty second.Recovered "the old records are not read"
                let fresh = entry 9 "新"
                do! second.Append fresh |> Async.AwaitTask
                (second :> IDisposable).Dispose()
                let third = start ()
                Expect.equal third.Recovered [ fresh ] "the new record, and none of the old ones after it"
                (third :> IDisposable).Dispose()
            }

            testCaseAsync
                "under a steady load the writer changes files instead of growing one, and a restart reads every record the inbox lacks"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                // Files of 2 KB: a dozen records fill one. Never emptied for their age.
                let start () =
                    new Writer(path, ignore, 2048L, TimeSpan.MaxValue, TimeProvider.System)

                let w = start ()
                let all = [ for n in 1..200 -> entry n (String.replicate 20 "载") ]

                // The inbox stays five records behind, as it stays milliseconds behind under load.
                for n, e in List.indexed all do
                    do! w.Append e |> Async.AwaitTask

                    if n >= 5 then
                        w.Indexed 1

                (w :> IDisposable).Dispose()
                let sizes = [ FileInfo(path).Length; FileInfo(secondPath path).Length ]
                Expect.isTrue (sizes |> List.forall (fun l -> l < 4096L)) $"both files stay small: {sizes}"
                let again = start ()
                let recovered = again.Recovered
                // The newest records, in order, and at least the five the inbox does not have.
                Expect.isGreaterThanOrEqual recovered.Length 5 "the five the inbox lacks"
                Expect.equal recovered (List.skip (all.Length - recovered.Length) all) "a run of the newest, in order"
                (again :> IDisposable).Dispose()
            }

            testCaseAsync "a file of the format before generations is read, and written again in this one"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                let before = entries [ "升级"; "upgrade" ]
                File.WriteAllBytes(path, legacy before)

                let w =
                    new Writer(path, ignore, Int64.MaxValue, TimeSpan.MaxValue, TimeProvider.System)

                Expect.equal w.Recovered before "its records"
                do! w.Append(entry 9 "after") |> Async.AwaitTask
                (w :> IDisposable).Dispose()

                match readImage (File.ReadAllBytes path) with
                | Current(_, read, _) -> Expect.equal read (before @ [ entry 9 "after" ]) "in this format"
                | other -> failtest $"read as {other}"
            }

            testCaseAsync "a torn tail is not read and new records follow the whole ones"
            <| async {
                let path = Path.Combine(tempFolder (), "intake.log")
                let whole = stamped 4 (entries [ "one"; "two" ])
                let torn = stamped 4 [ entry 7 "torn" ]
                File.WriteAllBytes(path, fileOf 4 (Array.append whole torn[.. torn.Length - 5]))

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

/// The window of recent pushes: a push is new once, then every retry names it (after it is durable,
/// or once it is); a push that never reached the disk leaves no trace; the oldest go first when the
/// window is full or they are too old; and any sequence of these agrees with a plain map.
module WeChatFs.Tests.RecentPushesTests

open System
open System.Threading.Tasks
open Expecto
open FsCheck
open WeChatFs.RecentPushes

let private key (n: int) = keyOf "wxaccount" $"msg:{n}"

/// The id a retry is told, once the earlier push is durable.
let private earlierId (w: Window) (k: Key) =
    match w.Take(k, "retry", Task.CompletedTask) with
    | Earlier(durable, id) when durable.IsCompleted -> Some id
    | Earlier _ -> failwith "still pending"
    | First ->
        w.Failed k
        None

let tests =
    testList
        "RecentPushes"
        [
            testCase "a push is new once; its retries wait for it to be durable and then name it"
            <| fun () ->
                let w = Window(100)
                let id = Guid.NewGuid().ToString "N"
                let durable = TaskCompletionSource()
                Expect.equal (w.Take(key 1, id, durable.Task)) First "the first push"

                match w.Take(key 1, "other", Task.CompletedTask) with
                | Earlier(t, earlier) ->
                    Expect.isFalse t.IsCompleted "a retry waits for the first to be durable"
                    Expect.equal earlier id "and names it"
                | First -> failtest "a retry taken as new"

                w.Durable(key 1, id, 10L)
                durable.SetResult()
                Expect.equal (earlierId w (key 1)) (Some id) "a retry after durable"
                Expect.equal (earlierId w (key 2)) None "another push is new"

            testCase "a push that never reached the disk leaves the window: the next with its key is new"
            <| fun () ->
                let w = Window(100)
                Expect.equal (w.Take(key 1, "a", Task.CompletedTask)) First "taken"
                w.Failed(key 1)
                Expect.equal (w.Take(key 1, "b", Task.CompletedTask)) First "taken again"
                w.Durable(key 1, "b", 1L)
                Expect.equal (earlierId w (key 1)) (Some "b") "the second one is remembered"

            testCase "ids in Guid form and others come back exactly as given"
            <| fun () ->
                let w = Window(100)

                let ids =
                    [
                        Guid.NewGuid().ToString "N"
                        Guid.NewGuid().ToString("N").ToUpperInvariant()
                        Guid.NewGuid().ToString "D"
                        "crashed-3"
                        ""
                    ]

                ids
                |> List.iteri (fun i id ->
                    w.Take(key i, id, Task.CompletedTask) |> ignore
                    w.Durable(key i, id, 1L))

                ids
                |> List.iteri (fun i id -> Expect.equal (earlierId w (key i)) (Some id) $"id {i}")

            testCase "full, the window forgets its oldest; and it forgets what is older than its age"
            <| fun () ->
                let w = Window(3)

                for n in 1..4 do
                    w.Take(key n, string n, Task.CompletedTask) |> ignore
                    w.Durable(key n, string n, int64 n)

                Expect.equal (earlierId w (key 1)) None "the oldest went when the fourth came"
                Expect.equal (earlierId w (key 2)) (Some "2") "the second stays"
                w.ForgetBefore 4L
                Expect.equal (earlierId w (key 2)) None "older than the horizon"
                Expect.equal (earlierId w (key 3)) None "older than the horizon"
                Expect.equal (earlierId w (key 4)) (Some "4") "at the horizon it stays"
                Expect.equal w.Count 1 "one left"

            testCase "keys tell accounts and dedupe keys apart, and the same pair always gives the same key"
            <| fun () ->
                Expect.equal (keyOf "wxa" "msg:1") (keyOf "wxa" "msg:1") "stable"
                Expect.notEqual (keyOf "wxa" "msg:1") (keyOf "wxb" "msg:1") "accounts"
                Expect.notEqual (keyOf "wxa" "msg:1") (keyOf "wxa" "msg:2") "dedupe keys"
                Expect.notEqual (keyOf "wxa\nmsg" ":1") (keyOf "wxa" "msg\n:1") "the separator"

                // The first 128 bits of SHA-256 over "<account's length>:<account><dedupe key>" in UTF-8.
                for account, dedupeKey in [ "wxa", "msg:1"; "wx公众号", "event:用户:1700000000"; "", "" ] do
                    let hash =
                        Security.Cryptography.SHA256.HashData(
                            Text.Encoding.UTF8.GetBytes($"{account.Length}:{account}{dedupeKey}")
                        )

                    Expect.equal
                        (keyOf account dedupeKey)
                        (Key(UInt128(BitConverter.ToUInt64(hash, 0), BitConverter.ToUInt64(hash, 8))))
                        $"the key of {account}, {dedupeKey}"

            testProperty
                "any sequence of pushes, failures and forgetting agrees with a map of the newest `capacity` durable pushes"
            <| fun (ops: (byte * bool) list) ->
                // Each op: a push of key (n % 8), durable or failed; every fifth op also forgets
                // what is older than three ticks.
                let capacity = 4
                let w = Window(capacity)
                // The model: durable pushes, oldest first, with the tick each came at.
                let mutable model: (int * string * int64) list = []

                ops
                |> List.mapi (fun i (n, ok) ->
                    let k = int n % 8
                    let tick = int64 i
                    let id = $"id-{i}"

                    let expected =
                        model
                        |> List.tryFind (fun (m, _, _) -> m = k)
                        |> Option.map (fun (_, id, _) -> id)

                    let agreed =
                        match w.Take(key k, id, Task.CompletedTask), expected with
                        | Earlier(_, earlier), Some e -> earlier = e
                        | First, None ->
                            if ok then
                                w.Durable(key k, id, tick)
                                model <- model @ [ k, id, tick ]

                                if model.Length > capacity then
                                    model <- List.tail model
                            else
                                w.Failed(key k)

                            true
                        | _ -> false

                    if i % 5 = 4 then
                        w.ForgetBefore(tick - 3L)
                        model <- model |> List.filter (fun (_, _, t) -> t >= tick - 3L)

                    agreed && w.Count = model.Length)
                |> List.forall id
        ]

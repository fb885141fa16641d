/// The message URL's workflow (Callback): the ids it gives deliveries. The workflow itself is
/// exercised over HTTP by the MessageApi, MessageDelivery and MessageReplies tests.
module WeChatFs.Tests.CallbackTests

open System
open Expecto
open WeChatFs
open WeChatFs.Tests.Helpers

[<Tests>]
let tests =
    testList
        "Callback"
        [
            testCase "a delivery id is a version-7 UUID of its time, in 32 hex digits, and unique"
            <| fun () ->
                let ids =
                    [
                        for i in 0..99_999 -> Callback.deliveryId (t0.AddMilliseconds(float (i / 10)))
                    ]

                Expect.equal (Set.ofList ids).Count ids.Length "no two alike"

                for id in List.take 1000 ids do
                    Expect.isMatch id "^[0-9a-f]{32}$" "32 lower-case hex digits"
                    let g = Guid.ParseExact(id, "N")
                    Expect.equal g.Version 7 "version 7"
                    Expect.equal (g.Variant &&& 0xC) 0x8 "RFC 9562 variant"

                // The first 48 bits are the time in milliseconds, so ids sort by time.
                let ms (id: string) =
                    Convert.ToInt64(id.Substring(0, 12), 16)

                Expect.equal (ms ids[0]) (t0.ToUnixTimeMilliseconds()) "its time"
                Expect.equal (ms (List.last ids)) (t0.ToUnixTimeMilliseconds() + 9_999L) "the last one's time"

                let ordered = ids |> List.pairwise |> List.filter (fun (a, b) -> ms a < ms b)
                Expect.isNonEmpty ordered "later times give greater ids"
                Expect.isTrue (ids |> List.pairwise |> List.forall (fun (a, b) -> ms a <= ms b)) "never earlier"
        ]

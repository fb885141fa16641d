/// The one reader of a list request's offset and limit: any text gives a number within bounds.
module WeChatFs.Tests.PagingTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs

let tests =
    testList
        "Paging"
        [
            testProp "a whole number within bounds is taken as it is, capped at the maximum" (fun (n: int, cap: int) ->
                let n, cap = abs (n % 100000), 1 + abs (cap % 1000)
                Paging.boundedInt 7 cap (string n) = min n cap)

            testProp "anything else gives the fallback" (fun (text: string) ->
                let text = defaultArg (Option.ofObj text) ""

                match Int32.TryParse text with
                | true, n when n >= 0 -> Paging.boundedInt 7 Int32.MaxValue text = n
                | _ -> Paging.boundedInt 7 Int32.MaxValue text = 7)

            test "an offset is 0 unless it is a whole number of at least 0" {
                Expect.equal (Paging.offset "40") 40 "a number"
                Expect.equal (Paging.offset "-1") 0 "negative"
                Expect.equal (Paging.offset "") 0 "absent"
                Expect.equal (Paging.offset "ten") 0 "not a number"
                Expect.equal (Paging.boundedInt 50 100 "500") 100 "capped"
            }
        ]

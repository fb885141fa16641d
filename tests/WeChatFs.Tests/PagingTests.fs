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

            testProp "a cursor reads back as it was written" (fun (at: int64, id: Guid) ->
                let cursor: Paging.Cursor =
                    {
                        At = abs (at % 100000000000000L)
                        Id = id.ToString("N")
                    }

                Paging.Cursor.ofText (Paging.Cursor.toText cursor) = Some cursor)

            testProp
                "a cursor read from text of its shape writes back as that text"
                (fun (zeros: byte, at: int64, id: string) ->
                    // Text near the cursor's shape (leading zeros, any sign, any id), where random
                    // text alone would almost never parse and the property would hold for nothing.
                    let text =
                        String('0', int (zeros % 3uy))
                        + string at
                        + "."
                        + defaultArg (Option.ofObj id) ""

                    let id = defaultArg (Option.ofObj id) ""

                    let written =
                        zeros % 3uy = 0uy
                        && at >= 0L
                        && id <> ""
                        && id.Length <= 128
                        && Seq.forall (fun c -> Char.IsAsciiLetterOrDigit c || c = '-' || c = '_') id

                    match Paging.Cursor.ofText text with
                    | Some cursor -> written && Paging.Cursor.toText cursor = text
                    | None -> not written)

            test "text no cursor was written as is no cursor" {
                for text in
                    [
                        ""
                        "."
                        "12"
                        "12."
                        ".abc"
                        "-1.abc"
                        "+1.abc"
                        "1.a b"
                        "1.a.b"
                        "01.abc"
                        "99999999999999999999.a"
                    ] do
                    Expect.isNone (Paging.Cursor.ofText text) text

                Expect.equal
                    (Paging.Cursor.ofText "1700000000000.0193a0c0f00d")
                    (Some
                        {
                            At = 1700000000000L
                            Id = "0193a0c0f00d"
                        })
                    "a cursor"
            }
        ]

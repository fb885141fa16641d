/// The numbers a list request carries in its query (offset, limit), read once for every edge: the
/// API and the console pages alike. Pure.
module WeChatFs.Paging

open System

/// A whole number of at least 0 from `text`, at most `maxValue`; `fallback` when it is absent or
/// not such a number.
let boundedInt (fallback: int) (maxValue: int) (text: string) =
    match Int32.TryParse text with
    | true, n when n >= 0 -> min n maxValue
    | _ -> fallback

/// An offset into a list: a whole number of at least 0, else 0.
let offset (text: string) = boundedInt 0 Int32.MaxValue text

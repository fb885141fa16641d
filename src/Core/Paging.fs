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

/// Where a keyset page ends: the sort key of its last item (a time in Unix milliseconds, then the
/// item's id). The next page is what sorts after it, found in the list's index whatever its depth,
/// where an offset is counted entry by entry.
type Cursor = { At: int64; Id: string }

module Cursor =
    /// The text a client passes back: `<milliseconds>.<id>`.
    let toText (c: Cursor) = $"{c.At}.{c.Id}"

    // Ids are the gateway's own (hex, dashes, letters); anything else was not made by toText.
    let private idChar (ch: char) =
        Char.IsAsciiLetterOrDigit ch || ch = '-' || ch = '_'

    /// None for any text toText did not make (leading zeros included: one cursor, one spelling).
    let ofText (text: string) =
        match text.IndexOf '.' with
        | dot when dot > 0 && dot < 20 ->
            let at = text.Substring(0, dot)
            let id = text.Substring(dot + 1)

            match Int64.TryParse(at, Globalization.NumberStyles.None, Globalization.CultureInfo.InvariantCulture) with
            | true, ms when string ms = at && id.Length > 0 && id.Length <= 128 && Seq.forall idChar id ->
                Some { At = ms; Id = id }
            | _ -> None
        | _ -> None

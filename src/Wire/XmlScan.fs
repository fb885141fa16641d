/// The fast path of push reading: a hand-written scan of the flat `<xml>` WeChat sends, which answers
/// only where it answers exactly what the XmlReader would (Wire.parseXml falls back to the reader).
/// Pure; it reads a span, so a push's outer XML can be read where its bytes were decoded, without a
/// string of the whole body or of its Encrypt field.
module WeChatFs.XmlScan

open System

let private isSpace c = c = ' ' || c = '\t' || c = '\n'

let private isNameStart c =
    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c = '_'

let private isNameChar c = isNameStart c || (c >= '0' && c <= '9')

/// Whether s[start..finish) reads back unchanged from XML: no carriage return (the reader normalises
/// line ends), no control character, lone surrogate or U+FFFE/U+FFFF (the reader refuses those).
/// Text mostly lies within [space, U+D7FF], which is all verbatim: that part is skipped at once (a
/// vectorised search) and the loop starts at the first character outside it.
let private verbatim (s: ReadOnlySpan<char>) (start: int) (finish: int) =
    let outside = s.Slice(start, finish - start).IndexOfAnyExceptInRange(' ', '\uD7FF')
    let mutable i = if outside < 0 then finish else start + outside
    let mutable ok = true

    while ok && i < finish do
        let c = s[i]

        if c < ' ' then
            ok <- c = '\t' || c = '\n'
        elif Char.IsHighSurrogate c then
            ok <- i + 1 < finish && Char.IsLowSurrogate s[i + 1]
            i <- i + 1
        elif Char.IsLowSurrogate c || c >= '\uFFFE' then
            ok <- false

        i <- i + 1

    ok

let private at (s: ReadOnlySpan<char>) (i: int) (literal: string) =
    i >= 0
    && i + literal.Length <= s.Length
    && s.Slice(i, literal.Length).SequenceEqual(literal.AsSpan())

/// Where s[from..] first holds `literal`, or -1.
let private indexFrom (s: ReadOnlySpan<char>) (from: int) (literal: string) =
    let k = s.Slice(from).IndexOf(literal.AsSpan())
    if k < 0 then -1 else from + k

let private skipSpaces (s: ReadOnlySpan<char>) (from: int) =
    let mutable i = from

    while i < s.Length && isSpace s[i] do
        i <- i + 1

    i

/// One child of the root: where its name and its value lie in the document. A value of whitespace
/// alone outside CDATA reads as "" (length 0), as it does to the reader.
[<Struct>]
type FieldRange =
    {
        NameStart: int
        NameLength: int
        ValueStart: int
        ValueLength: int
    }

/// Gives back an array `rentRanges` rented (null: nothing to give back).
let giveBack (ranges: FieldRange[]) =
    if not (isNull ranges) then
        Buffers.ArrayPool<FieldRange>.Shared.Return ranges

let private append (fields: byref<FieldRange[]>) (count: byref<int>) (r: FieldRange) =
    if count = fields.Length then
        let larger = Buffers.ArrayPool<FieldRange>.Shared.Rent(2 * count)
        Array.blit fields 0 larger 0 count
        giveBack fields
        fields <- larger

    fields[count] <- r
    count <- count + 1

/// The fast path for what WeChat actually sends: `<xml>` whose children each hold one CDATA section,
/// plain text without references, or nothing. Anything else (a declaration, comments, attributes,
/// references, carriage returns, nesting, characters XML refuses) gives None and is left to the
/// XmlReader, so wherever this answers, it answers what the reader would. No DTD can get through:
/// the document must begin with `<xml>`. A document over `maxChars` is left to the reader too.
/// The children in document order (a name given twice: the later one counts, as in a map), written
/// to an array rented from the shared pool, since a push's ranges are read and dropped within its
/// request: `struct (array, count)`, the array null where the fast path does not read the document.
/// The caller gives the array back with `giveBack`.
let rentRanges (maxChars: int) (xml: ReadOnlySpan<char>) : struct (FieldRange[] * int) =
    let n = xml.Length
    let mutable fields = Buffers.ArrayPool<FieldRange>.Shared.Rent 16
    let mutable count = 0
    let mutable ok = n > 0 && n <= maxChars
    let mutable finished = false
    let mutable i = 0

    if ok then
        i <- skipSpaces xml i
        ok <- at xml i "<xml>"
        i <- i + 5

    while ok && not finished do
        i <- skipSpaces xml i

        if at xml i "</xml>" then
            i <- skipSpaces xml (i + 6)
            ok <- i = n
            finished <- true
        elif i + 1 < n && xml[i] = '<' && isNameStart xml[i + 1] then
            let nameStart = i + 1
            let mutable j = nameStart

            while j < n && isNameChar xml[j] do
                j <- j + 1

            let nameLength = j - nameStart

            if at xml j "/>" then
                append
                    &fields
                    &count
                    {
                        NameStart = nameStart
                        NameLength = nameLength
                        ValueStart = j
                        ValueLength = 0
                    }

                i <- j + 2
            elif j < n && xml[j] = '>' then
                i <- j + 1
                let mutable valueStart = -1
                let mutable valueLength = 0

                if at xml i "<![CDATA[" then
                    let start = i + 9
                    let finish = indexFrom xml start "]]>"

                    if finish >= 0 && verbatim xml start finish then
                        valueStart <- start
                        valueLength <- finish - start
                        i <- finish + 3
                else
                    let finish = xml.Slice(i).IndexOf '<'
                    let finish = if finish < 0 then -1 else i + finish

                    if
                        finish >= 0
                        && verbatim xml i finish
                        && xml.Slice(i, finish - i).IndexOf '&' < 0
                        && xml.Slice(i, finish - i).IndexOf("]]>".AsSpan()) < 0
                    then
                        // Whitespace alone is not content to the reader either.
                        let blank = skipSpaces xml i = finish
                        valueStart <- i
                        valueLength <- if blank then 0 else finish - i
                        i <- finish

                let name = xml.Slice(nameStart, nameLength)

                ok <-
                    valueStart >= 0
                    && at xml i "</"
                    && i + 2 + nameLength <= n
                    && xml.Slice(i + 2, nameLength).SequenceEqual name
                    && at xml (i + 2 + nameLength) ">"

                if ok then
                    append
                        &fields
                        &count
                        {
                            NameStart = nameStart
                            NameLength = nameLength
                            ValueStart = valueStart
                            ValueLength = valueLength
                        }

                    i <- i + nameLength + 3
            else
                ok <- false
        else
            ok <- false

    if ok then
        struct (fields, count)
    else
        giveBack fields
        struct (null, 0)

/// The index of the child named `name` among the first `count` of `ranges` read from `xml` (of a
/// name given twice, the later one, as in a map), or -1.
let lastNamed (xml: ReadOnlySpan<char>) (ranges: FieldRange[]) (count: int) (name: string) =
    let mutable k = count - 1

    while k >= 0
          && not (xml.Slice(ranges[k].NameStart, ranges[k].NameLength).SequenceEqual(name.AsSpan())) do
        k <- k - 1

    k

/// `rentRanges` as a map of the children's names to their values.
let scanFlat (maxChars: int) (xml: string) : Map<string, string> option =
    if isNull xml then
        None
    else
        let struct (ranges, count) = rentRanges maxChars (xml.AsSpan())

        if isNull ranges then
            None
        else
            let mutable fields = Map.empty

            for k in 0 .. count - 1 do
                let r = ranges[k]

                fields <-
                    fields.Add(xml.Substring(r.NameStart, r.NameLength), xml.Substring(r.ValueStart, r.ValueLength))

            giveBack ranges
            Some fields

/// The fast path of push reading: a hand-written scan of the flat `<xml>` WeChat sends, which answers
/// only where it answers exactly what the XmlReader would (Wire.parseXml falls back to the reader).
/// Pure, no allocation beyond the field strings and the map.
module WeChatFs.XmlScan

open System

let private isSpace c = c = ' ' || c = '\t' || c = '\n'

let private isNameStart c =
    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c = '_'

let private isNameChar c = isNameStart c || (c >= '0' && c <= '9')

/// Whether s[start..finish) reads back unchanged from XML: no carriage return (the reader normalises
/// line ends), no control character, lone surrogate or U+FFFE/U+FFFF (the reader refuses those).
let private verbatim (s: string) (start: int) (finish: int) =
    let mutable i = start
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

let private at (s: string) (i: int) (literal: string) =
    i >= 0
    && i + literal.Length <= s.Length
    && String.CompareOrdinal(s, i, literal, 0, literal.Length) = 0

/// The fast path for what WeChat actually sends: `<xml>` whose children each hold one CDATA section,
/// plain text without references, or nothing. Anything else (a declaration, comments, attributes,
/// references, carriage returns, nesting, characters XML refuses) gives None and is left to the
/// XmlReader, so wherever this answers, it answers what the reader would. No DTD can get through:
/// the document must begin with `<xml>`. A document over `maxChars` is left to the reader too.
let scanFlat (maxChars: int) (xml: string) : Map<string, string> option =
    let n = if isNull xml then 0 else xml.Length
    let mutable i = 0
    let mutable fields = Map.empty
    let mutable ok = n > 0 && n <= maxChars
    let mutable finished = false

    let skipSpaces () =
        while i < n && isSpace xml[i] do
            i <- i + 1

    if ok then
        skipSpaces ()
        ok <- at xml i "<xml>"
        i <- i + 5

    while ok && not finished do
        skipSpaces ()

        if at xml i "</xml>" then
            i <- i + 6
            skipSpaces ()
            ok <- i = n
            finished <- true
        elif i + 1 < n && xml[i] = '<' && isNameStart xml[i + 1] then
            let nameStart = i + 1
            let mutable j = nameStart

            while j < n && isNameChar xml[j] do
                j <- j + 1

            let name = xml.Substring(nameStart, j - nameStart)

            if at xml j "/>" then
                fields <- fields.Add(name, "")
                i <- j + 2
            elif j < n && xml[j] = '>' then
                i <- j + 1
                let mutable value = null

                if at xml i "<![CDATA[" then
                    let start = i + 9
                    let finish = xml.IndexOf("]]>", start, StringComparison.Ordinal)

                    if finish >= 0 && verbatim xml start finish then
                        value <- xml.Substring(start, finish - start)
                        i <- finish + 3
                else
                    let finish = xml.IndexOf('<', i)

                    if
                        finish >= 0
                        && verbatim xml i finish
                        && xml.IndexOf('&', i, finish - i) < 0
                        && xml.IndexOf("]]>", i, finish - i, StringComparison.Ordinal) < 0
                    then
                        let mutable blank = true

                        for k in i .. finish - 1 do
                            if not (isSpace xml[k]) then
                                blank <- false

                        // Whitespace alone is not content to the reader either.
                        value <- if blank then "" else xml.Substring(i, finish - i)
                        i <- finish

                ok <-
                    not (isNull value)
                    && at xml i "</"
                    && at xml (i + 2) name
                    && at xml (i + 2 + name.Length) ">"

                if ok then
                    fields <- fields.Add(name, value)
                    i <- i + name.Length + 3
            else
                ok <- false
        else
            ok <- false

    if ok then Some fields else None

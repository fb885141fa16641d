/// What the proxies pass on to WeChat, decided from what the caller sent: the path rebuilt from its
/// segments, each re-encoded, and the caller's own query without any token of its own. A path that
/// could smuggle a query, a fragment or a different resource is refused, saying why.
module WeChatFs.ProxyPath

open System

type PathError =
    | EmptyPath
    | QueryInPath
    | FragmentInPath
    | DotSegment
    | EmptySegment
    | EncodedCharacter
    | ControlCharacter
    | Backslash
    | TooLong
    | InvalidText

let describe =
    function
    | EmptyPath -> "the path after /wechat/ is empty; name a WeChat API, e.g. cgi-bin/get_current_selfmenu_info"
    | QueryInPath ->
        "the path contains '?' (sent encoded as %3F); put query parameters in the query string, not the path"
    | FragmentInPath -> "the path contains '#' (sent encoded as %23); WeChat's API paths have none"
    | DotSegment -> "the path contains a '.' or '..' segment; give the API's path as WeChat documents it"
    | EmptySegment -> "the path contains an empty segment ('//' or a trailing '/')"
    | EncodedCharacter -> "the path contains '%' (an encoded slash or a double encoding); WeChat's API paths are plain"
    | ControlCharacter -> "the path contains a control character or whitespace"
    | Backslash -> "the path contains a backslash"
    | TooLong -> "the path is longer than 1024 characters"
    | InvalidText -> "the path is not valid text (a lone UTF-16 surrogate)"

/// The query names that carry a token: the gateway adds its own, so a caller's never reaches WeChat.
let isTokenParameter (name: string) =
    name.Equals("access_token", StringComparison.OrdinalIgnoreCase)
    || name.Equals("component_access_token", StringComparison.OrdinalIgnoreCase)

let private badChar (c: char) =
    if c = '?' then
        Some QueryInPath
    elif c = '#' then
        Some FragmentInPath
    elif c = '%' then
        Some EncodedCharacter
    elif c = '\\' then
        Some Backslash
    elif Char.IsControl c || Char.IsWhiteSpace c then
        Some ControlCharacter
    else
        None

/// Every surrogate in a pair: escaping would throw on a lone one.
let private wellFormed (s: string) =
    let mutable ok = true
    let mutable i = 0

    while ok && i < s.Length do
        if Char.IsHighSurrogate s[i] && i + 1 < s.Length && Char.IsLowSurrogate s[i + 1] then
            i <- i + 2
        elif Char.IsSurrogate s[i] then
            ok <- false
        else
            i <- i + 1

    ok

/// `path` is the route's catch-all value as the server decoded it (`%3F` is already `?`, while an
/// encoded slash stays `%2F`). Answers the upstream path, starting with '/', every segment re-encoded.
let normalize (path: string) : Result<string, PathError> =
    let path = if isNull path then "" else path

    if path.Length = 0 then
        Error EmptyPath
    elif path.Length > 1024 then
        Error TooLong
    else
        match path |> Seq.tryPick badChar with
        | Some e -> Error e
        | None when not (wellFormed path) -> Error InvalidText
        | None ->
            let segments = path.Split '/'

            if segments |> Array.exists (fun s -> s = "." || s = "..") then
                Error DotSegment
            elif segments |> Array.exists String.IsNullOrEmpty then
                Error EmptySegment
            else
                Ok(
                    segments
                    |> Array.map (fun s -> "/" + Uri.EscapeDataString s)
                    |> String.concat ""
                )

/// Whether the request line's path (before any '?') had a '.' or '..' segment, plain or encoded: the
/// server resolves them before routing, so the route alone cannot tell that the caller tried one.
let rawHasDotSegment (rawTarget: string) =
    let rawTarget = if isNull rawTarget then "" else rawTarget
    let path = rawTarget.Split('?', 2)[0]

    path.Split '/'
    |> Array.exists (fun segment ->
        let decoded =
            try
                Uri.UnescapeDataString segment
            with _ ->
                segment

        decoded = "." || decoded = "..")

/// The caller's query pairs, without any token parameter of its own.
let forwardedQuery (pairs: (string * string) list) =
    pairs |> List.filter (fun (k, _) -> not (isTokenParameter k))

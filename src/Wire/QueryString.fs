/// A field of a request's query string read straight from the string, for the push endpoints, which
/// need two or three fields of it: ASP.NET Core's query collection decodes every field into a
/// dictionary of new strings first (a dozen objects per push).
module WeChatFs.QueryString

open System

/// The value of `name` in `query` ("?a=1&b=2", or without the '?') as `string ctx.Request.Query[name]`
/// gives it: the name matched without regard to case, "" when it is absent or empty, its non-empty
/// values joined with ',' when it comes more than once. ValueNone when the query holds an escape
/// ('%' or '+'), which the caller leaves to ASP.NET Core's decoding.
let tryPlainValue (query: string) (name: string) : string voption =
    if isNull query then
        ValueSome ""
    elif query.AsSpan().IndexOfAny('%', '+') >= 0 then
        ValueNone
    else
        let mutable rest = query.AsSpan()

        if rest.Length > 0 && rest[0] = '?' then
            rest <- rest.Slice 1

        let mutable found: string = null
        let mutable go = true

        while go do
            let amp = rest.IndexOf '&'
            let field = if amp < 0 then rest else rest.Slice(0, amp)
            let eq = field.IndexOf '='
            let key = if eq < 0 then field else field.Slice(0, eq)

            // StringValues joins the non-empty values only.
            if
                eq >= 0
                && eq < field.Length - 1
                && key.Equals(name.AsSpan(), StringComparison.OrdinalIgnoreCase)
            then
                let value = field.Slice(eq + 1).ToString()
                found <- if isNull found then value else found + "," + value

            if amp < 0 then go <- false else rest <- rest.Slice(amp + 1)

        ValueSome(if isNull found then "" else found)

/// The HTTP edge's shared pieces: responses (JSON, problem details), the admin key check, bounded
/// body reads, the encrypted-push reader and the token-retrying proxy. HttpContext stays in the edge
/// files (Http, ComponentApi, AuthorizerApi, MessageApi, Api).
module WeChatFs.Http

open System
open System.IO
open System.Net.Http
open System.Security.Cryptography
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon
open WeChatFs.Problems

/// Everything the handlers need, resolved once at mapping time.
type Services =
    {
        Options: GatewayOptions
        Store: IStore
        Client: Client
        Components: ComponentTokenService
        Clock: TimeProvider
        Logger: ILogger
        /// Refused requests, logged at most a few times per minute per reason and counted.
        Refusals: Refusals.RefusalLog
    }

/// WeChat's pushes are small; anything larger is refused before it is read (and before any work).
let maxPushBytes = 64 * 1024

// ---- responses ---------------------------------------------------------------------------------

let private jsonOptions =
    JsonSerializerOptions(PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower)

let writeJson (ctx: HttpContext) (status: int) (value: obj) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "application/json; charset=utf-8"
    ctx.Response.WriteAsync(JsonSerializer.Serialize(value, jsonOptions))

let writeText (ctx: HttpContext) (status: int) (text: string) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "text/plain; charset=utf-8"
    ctx.Response.WriteAsync text

// ---- request helpers ---------------------------------------------------------------------------

let handler (f: HttpContext -> Task) = RequestDelegate(fun ctx -> f ctx)

/// Bearer `WeChatFs:Admin:ApiKey`; with no key configured every call is refused. The scheme's name
/// is case-insensitive (RFC 7235), so `bearer <key>` works too.
let authorizedAdmin (options: GatewayOptions) (ctx: HttpContext) =
    let header = string ctx.Request.Headers.Authorization

    match options.AdminApiKey with
    | None -> false
    | Some key when header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ->
        let given = Encoding.UTF8.GetBytes(header.Substring(7).Trim())
        let expected = Encoding.UTF8.GetBytes key
        CryptographicOperations.FixedTimeEquals(ReadOnlySpan given, ReadOnlySpan expected)
    | Some _ -> false

let admin (s: Services) (f: HttpContext -> Task) =
    handler (fun ctx ->
        if authorizedAdmin s.Options ctx then
            f ctx
        else
            ctx.Response.Headers.WWWAuthenticate <- "Bearer"
            s.Refusals.Refused("admin_key", 401, string ctx.Request.Path)

            problem ctx (Unauthorized Guard.AdminApi))

type BodyRead =
    | Body of byte[]
    | TooLarge

/// Reads at most `limit` bytes; one byte more means the body is refused, whatever Content-Length said.
let readLimited (ctx: HttpContext) (limit: int) =
    task {
        let declared = ctx.Request.ContentLength

        if declared.HasValue && declared.Value > int64 limit then
            return TooLarge
        elif declared.HasValue then
            // The usual case: the declared length, read into one array of that size.
            let body = Array.zeroCreate<byte>(int declared.Value)
            let mutable total = 0
            let mutable reading = true

            while reading && total < body.Length do
                let! n = ctx.Request.Body.ReadAsync(body, total, body.Length - total)

                if n = 0 then reading <- false else total <- total + n

            return Body(if total = body.Length then body else body[.. total - 1])
        else
            use buffer = new MemoryStream()
            let chunk = Array.zeroCreate<byte> 8192
            let mutable total = 0
            let mutable reading = true

            while reading && total <= limit do
                let! n = ctx.Request.Body.ReadAsync(chunk, 0, chunk.Length)

                if n = 0 then
                    reading <- false
                else
                    total <- total + n
                    buffer.Write(chunk, 0, n)

            return if total > limit then TooLarge else Body(buffer.ToArray())
    }

/// A field of the request's query, as `string ctx.Request.Query[name]` gives it, read without
/// decoding the whole query when it holds no escape (QueryString).
let queryField (ctx: HttpContext) (name: string) =
    match QueryString.tryPlainValue ctx.Request.QueryString.Value name with
    | ValueSome v -> v
    | ValueNone -> string ctx.Request.Query[name]

/// The push as the workflows take it: the signature fields from the query and the body as read;
/// Error when the body is over the size limit (nothing else is read then).
let readSignedPush (ctx: HttpContext) : Task<Result<Pushes.SignedPush, int * string>> =
    task {
        match! readLimited ctx maxPushBytes with
        | TooLarge -> return Error(413, $"push body over {maxPushBytes} bytes")
        | Body bytes ->
            let push: Pushes.SignedPush =
                {
                    Timestamp = queryField ctx "timestamp"
                    Nonce = queryField ctx "nonce"
                    MsgSignature = queryField ctx "msg_signature"
                    Body = bytes
                }

            return Ok push
    }

// ---- proxies -------------------------------------------------------------------------------------

let proxyQuery (ctx: HttpContext) =
    [
        for kv in ctx.Request.Query do
            for v in kv.Value do
                kv.Key, string v
    ]

/// Forwards one call with a token; when WeChat says the token is invalid or expired, the token is
/// invalidated (only if still current) and the call is made once more with a fresh one.
let proxyWithRetry
    (ctx: HttpContext)
    (getToken: unit -> Task<Result<'token, ApiError>>)
    (invalidate: 'token -> Task)
    (forward: 'token -> Task<Result<RawResponse * int option, WeChatError>>)
    =
    task {
        let writeRaw (raw: RawResponse) =
            ctx.Response.StatusCode <- raw.Status
            ctx.Response.ContentType <- raw.ContentType
            ctx.Response.Body.WriteAsync(raw.Body, 0, raw.Body.Length)

        match! getToken () with
        | Error e -> do! problem ctx e
        | Ok token ->
            match! forward token with
            | Error e -> do! problem ctx (WeChat e)
            | Ok(_, Some code) when classifyErrcode code = TokenRejected ->
                do! invalidate token

                match! getToken () with
                | Error e -> do! problem ctx e
                | Ok fresh ->
                    match! forward fresh with
                    | Error e -> do! problem ctx (WeChat e)
                    | Ok(raw, _) -> do! writeRaw raw
            | Ok(raw, _) -> do! writeRaw raw
    }

/// What a proxy route (`.../wechat/{**path}`) passes on to WeChat, read once from the request.
type ProxiedCall =
    {
        Method: HttpMethod
        Path: string
        Query: (string * string) list
        Body: byte[] option
        ContentType: string option
    }

/// A proxy route: checks the path (rebuilt from re-encoded segments, tricks refused with 400) and the
/// body's size (413 over `WeChatFs:Proxy:MaxBodyBytes`, unread), then forwards the call with
/// `proxyWithRetry` (`send` adds the token; the caller's own token parameters are dropped).
let proxyRoute
    (s: Services)
    (ctx: HttpContext)
    (getToken: unit -> Task<Result<'token, ApiError>>)
    (invalidate: 'token -> Task)
    (send: ProxiedCall -> 'token -> Task<Result<RawResponse * int option, WeChatError>>)
    =
    task {
        let raw =
            match ctx.Features.Get<Features.IHttpRequestFeature>() with
            | null -> ""
            | f -> f.RawTarget

        let checkedPath =
            if ProxyPath.rawHasDotSegment raw then
                Error ProxyPath.DotSegment
            else
                ProxyPath.normalize (string ctx.Request.RouteValues["path"])

        match checkedPath with
        | Error e ->
            let detail = ProxyPath.describe e
            s.Refusals.Refused("proxy_path", 400, detail)
            do! problem ctx (BadProxyPath detail)
        | Ok path ->
            let limit = s.Options.Hardening.ProxyMaxBodyBytes

            match! readLimited ctx (int limit) with
            | TooLarge ->
                s.Refusals.Refused("proxy_body", 413, $"body over {limit} bytes")

                do! problem ctx (Oversized(Oversize.ProxyBody limit))
            | Body body ->
                let call =
                    {
                        Method = HttpMethod(ctx.Request.Method)
                        Path = path
                        Query = ProxyPath.forwardedQuery (proxyQuery ctx)
                        Body = Some body
                        ContentType = Option.ofObj ctx.Request.ContentType
                    }

                do! proxyWithRetry ctx getToken invalidate (send call)
    }

/// The console's sign-in: the admin key once, then a signed session cookie (HttpOnly, SameSite=Strict,
/// Secure behind HTTPS, expiring after `WeChatFs:Console:SessionLifetime`), and an anti-forgery token
/// on every form. Both are HMACs under a key derived from the master key, so every instance on the
/// same store accepts them, and changing the admin key ends every session.
module WeChatFs.ConsoleSession

open System
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Giraffe.ViewEngine
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Http
open WeChatFs.ConsoleViews

let sessionCookie = "wechatfs_console"
/// Before sign-in: binds the sign-in form's anti-forgery token to this browser.
let preSessionCookie = "wechatfs_console_pre"

let private hex (bytes: byte[]) =
    Convert.ToHexString(bytes).ToLowerInvariant()

/// Whom a session belongs to: the admin key's fingerprint, so a new key ends old sessions.
let subjectOf (adminKey: string) =
    "operator:" + hex(SHA256.HashData(Encoding.UTF8.GetBytes adminKey))[..15]

/// The anti-forgery token for forms shown to a holder of `binding` (the session or pre-session cookie).
let csrfToken (key: byte[]) (binding: string) =
    hex (HMACSHA256.HashData(key, Encoding.UTF8.GetBytes("csrf:" + binding)))

let csrfValid (key: byte[]) (binding: string) (given: string) =
    not (String.IsNullOrEmpty binding)
    && not (String.IsNullOrEmpty given)
    && CryptographicOperations.FixedTimeEquals(
        ReadOnlySpan(Encoding.ASCII.GetBytes(csrfToken key binding)),
        ReadOnlySpan(Encoding.ASCII.GetBytes given)
    )

/// The session cookie's value until `expiresAt`.
let issue (key: byte[]) (adminKey: string) (expiresAt: DateTimeOffset) (nonce: byte[]) =
    Secrets.AuthState.sign key expiresAt nonce (subjectOf adminKey)

/// Whether a cookie value is a live session for the current admin key.
let valid (key: byte[]) (adminKey: string option) (now: DateTimeOffset) (cookie: string) =
    match adminKey with
    | None -> false
    | Some k ->
        match Secrets.AuthState.verify key now cookie with
        | Ok subject -> subject = subjectOf k
        | Error _ -> false

/// Everything a console page needs, resolved once when the console is mapped.
type ConsoleContext =
    {
        Services: Services
        Authorizers: Authorizers.AuthorizerService
        Metrics: Metrics.GatewayMetrics
        OAuth: OAuthFlow.OAuthService
        /// None when the store has no SQL access (deployments need it).
        Deployments: Deployments.DeploymentService option
        RedPacks: RedPackService.RedPackService
        Operator: OperatorOptions
        Key: byte[]
        mutable Nav: NavItem list
    }

let private secure (c: ConsoleContext) (ctx: HttpContext) =
    ctx.Request.IsHttps || c.Services.Options.PublicBaseUrl.Scheme = "https"

let cookieOptions (c: ConsoleContext) (ctx: HttpContext) (expires: DateTimeOffset option) =
    CookieOptions(
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        Secure = secure c ctx,
        Path = "/console",
        Expires = Option.toNullable expires
    )

/// The session cookie, when it is a live session.
let session (c: ConsoleContext) (ctx: HttpContext) =
    match ctx.Request.Cookies.TryGetValue sessionCookie with
    | true, v when valid c.Key c.Services.Options.AdminApiKey (c.Services.Clock.GetUtcNow()) v -> Some v
    | _ -> None

let writeHtml (ctx: HttpContext) (status: int) (node: XmlNode) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "text/html; charset=utf-8"
    ctx.Response.Headers.CacheControl <- "no-store"
    ctx.Response.Headers["X-Frame-Options"] <- "DENY"

    ctx.Response.Headers["Content-Security-Policy"] <-
        "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data: https:; frame-ancestors 'none'"

    ctx.Response.WriteAsync(render node)

let private signInRedirect (ctx: HttpContext) =
    let back = ctx.Request.Path.Value + ctx.Request.QueryString.Value
    ctx.Response.Redirect("/console/sign-in?return=" + Uri.EscapeDataString back)
    Task.CompletedTask

/// A page for signed-in operators: `build` reads what it needs and answers the title and content.
let page (c: ConsoleContext) (current: string) (build: HttpContext -> Task<string * XmlNode list>) =
    handler (fun ctx ->
        match session c ctx with
        | None -> signInRedirect ctx
        | Some cookie ->
            task {
                let! title, content = build ctx
                let token = csrfToken c.Key cookie
                do! writeHtml ctx 200 (layout c.Nav current (Some token) (c.Services.Clock.GetUtcNow()) title content)
            })

/// The anti-forgery token of the signed-in operator, for forms a page builds.
let formToken (c: ConsoleContext) (ctx: HttpContext) =
    match session c ctx with
    | Some cookie -> csrfToken c.Key cookie
    | None -> ""

let private refused (c: ConsoleContext) (ctx: HttpContext) =
    writeHtml
        ctx
        400
        (layout
            []
            ""
            None
            (c.Services.Clock.GetUtcNow())
            "Form refused"
            [
                p
                    []
                    [
                        str "This form has no valid anti-forgery token (it is old, or it was not sent by this console)."
                    ]
                p [] [ a [ _href "/console" ] [ str "Back to the console" ] ]
            ])

/// A form's POST for signed-in operators, refused without its anti-forgery token; `act` answers
/// where the browser goes next.
let action (c: ConsoleContext) (act: HttpContext -> IFormCollection -> Task<string>) =
    handler (fun ctx ->
        task {
            match session c ctx with
            | None -> do! signInRedirect ctx
            | Some cookie ->
                if not ctx.Request.HasFormContentType then
                    do! refused c ctx
                else
                    let! form = ctx.Request.ReadFormAsync()

                    if not (csrfValid c.Key cookie (string form[csrfFieldName])) then
                        do! refused c ctx
                    else
                        let! next = act ctx form
                        ctx.Response.Redirect next
        })

/// Only local paths under /console, so the sign-in form cannot send the browser elsewhere.
let safeReturn (value: string) =
    if
        not (isNull value)
        && value.StartsWith("/console", StringComparison.Ordinal)
        && not (value.StartsWith("//", StringComparison.Ordinal))
        && not (value.Contains '\\')
    then
        value
    else
        "/console"

let private signInForm
    (c: ConsoleContext)
    (ctx: HttpContext)
    (status: int)
    (message: string option)
    (returnTo: string)
    =
    let nonce =
        match ctx.Request.Cookies.TryGetValue preSessionCookie with
        | true, v when v.Length = 32 -> v
        | _ ->
            let v = hex (RandomNumberGenerator.GetBytes 16)
            ctx.Response.Cookies.Append(preSessionCookie, v, cookieOptions c ctx None)
            v

    writeHtml
        ctx
        status
        (layout
            []
            ""
            None
            (c.Services.Clock.GetUtcNow())
            "Sign in"
            [
                match message with
                | Some m -> p [ _class "error"; attr "role" "alert" ] [ str m ]
                | None -> ()
                postForm
                    (csrfToken c.Key ("pre:" + nonce))
                    "/console/sign-in"
                    [ _id "sign-in" ]
                    [
                        input [ _type "hidden"; _name "return"; _value returnTo ]
                        label [ _for "key" ] [ str "Admin key (WeChatFs:Admin:ApiKey)" ]
                        input
                            [
                                _type "password"
                                _id "key"
                                _name "key"
                                attr "autocomplete" "current-password"
                                attr "required" ""
                            ]
                        p [] [ button [ _type "submit" ] [ str "Sign in" ] ]
                    ]
                if c.Services.Options.AdminApiKey.IsNone then
                    p
                        [ _class "error" ]
                        [
                            str "No admin key is configured: set WeChatFs:Admin:ApiKey to use the console."
                        ]
            ])

let signInPage (c: ConsoleContext) =
    handler (fun ctx ->
        match session c ctx with
        | Some _ ->
            ctx.Response.Redirect(safeReturn (string ctx.Request.Query["return"]))
            Task.CompletedTask
        | None -> signInForm c ctx 200 None (safeReturn (string ctx.Request.Query["return"])))

let signIn (c: ConsoleContext) =
    handler (fun ctx ->
        task {
            let! form =
                if ctx.Request.HasFormContentType then
                    ctx.Request.ReadFormAsync()
                else
                    Task.FromResult(FormCollection(null) :> IFormCollection)

            let pre =
                match ctx.Request.Cookies.TryGetValue preSessionCookie with
                | true, v -> "pre:" + v
                | _ -> ""

            let returnTo = safeReturn (string form["return"])

            if not (csrfValid c.Key pre (string form[csrfFieldName])) then
                do! refused c ctx
            else
                let given = Encoding.UTF8.GetBytes(string form["key"])

                match c.Services.Options.AdminApiKey with
                | Some k when
                    CryptographicOperations.FixedTimeEquals(ReadOnlySpan given, ReadOnlySpan(Encoding.UTF8.GetBytes k))
                    ->
                    let expires = c.Services.Clock.GetUtcNow() + c.Operator.SessionLifetime
                    let cookie = issue c.Key k expires (RandomNumberGenerator.GetBytes 16)
                    ctx.Response.Cookies.Append(sessionCookie, cookie, cookieOptions c ctx (Some expires))
                    ctx.Response.Cookies.Delete(preSessionCookie, cookieOptions c ctx None)
                    ctx.Response.Redirect returnTo
                | _ ->
                    // Slow down guessing a little; the key itself should be long and random.
                    do! Task.Delay 300
                    do! signInForm c ctx 401 (Some "That is not the admin key.") returnTo
        })

let signOut (c: ConsoleContext) =
    action c (fun ctx _ ->
        ctx.Response.Cookies.Delete(sessionCookie, cookieOptions c ctx None)
        Task.FromResult "/console/sign-in")

/// The authorization pages on the gateway's own domain: the start page (a fresh pre_auth_code, the PC
/// scan button and the mobile link as a QR code), the signed links that open it, and the callback
/// the merchant comes back to from WeChat.
module WeChatFs.AuthorizationPages

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open QRCoder
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers
open WeChatFs.Http
open WeChatFs.Problems

let private html (ctx: HttpContext) (status: int) (title: string) (body: string) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "text/html; charset=utf-8"

    ctx.Response.WriteAsync(
        $"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{WebUtility.HtmlEncode title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#222}} .btn{{display:inline-block;background:#07c160;color:#fff;padding:.7rem 1.2rem;border-radius:6px;text-decoration:none}} code{{background:#f3f3f3;padding:0 .3rem}} .muted{{color:#777}}</style></head>
<body><h1>{WebUtility.HtmlEncode title}</h1>{body}</body></html>"""
    )

let private enc (s: string) = WebUtility.HtmlEncode s

let private qrSvg (text: string) =
    use generator = new QRCodeGenerator()
    use data = generator.CreateQrCode(text, QRCodeGenerator.ECCLevel.M)
    use svg = new SvgQRCode(data)
    svg.GetGraphic(4)

type LinkRequest =
    {
        Tenant: TenantId
        AuthType: int option
        BizAppId: string option
    }

/// auth_type 1|2|3 or biz_appid, not both (facts §4.1); a tenant is always required.
let validateLinkRequest (tenant: string) (authType: string) (bizAppId: string) =
    let tenant = if isNull tenant then "" else tenant.Trim()

    let bizAppId =
        if String.IsNullOrWhiteSpace bizAppId then
            None
        else
            Some(bizAppId.Trim())

    let authType =
        match authType with
        | null
        | "" -> Ok None
        | "1"
        | "2"
        | "3" -> Ok(Some(int authType))
        | other -> Error $"auth_type must be 1 (official accounts), 2 (mini programs) or 3 (both), not '{other}'"

    if tenant = "" || tenant.Length > 128 then
        Error "tenant is required (at most 128 characters)"
    else
        match authType, bizAppId with
        | Error e, _ -> Error e
        | Ok(Some _), Some _ -> Error "auth_type and biz_appid cannot be used together"
        | Ok t, b ->
            Ok
                {
                    Tenant = TenantId tenant
                    AuthType = t
                    BizAppId = b
                }

/// GET /wechat/component/authorize: a page on our own domain (WeChat checks the Referer) with a fresh
/// pre_auth_code, the PC scan button and, for phones, the mobile link as a QR code.
let authorizePage (s: Services) (authorizers: AuthorizerService) =
    handler (fun ctx ->
        task {
            let q = ctx.Request.Query
            let link = string q["link"]
            let tenantGiven = not (String.IsNullOrWhiteSpace(string q["tenant"]))

            let request =
                if link <> "" then
                    match
                        AuthorizationLinks.verify
                            (AuthorizationLinks.linkKey authorizers.StateKey)
                            (s.Clock.GetUtcNow())
                            link
                    with
                    | Ok c ->
                        validateLinkRequest c.Tenant c.AuthType c.BizAppId
                        |> Result.mapError (fun e -> 400, e)
                    | Error Secrets.AuthState.Expired ->
                        Error(400, "this authorization link has expired; ask the shop for a new one")
                    | Error _ -> Error(400, "this authorization link was altered or does not come from this platform")
                elif tenantGiven && not s.Options.Hardening.AllowUnsignedTenant then
                    // Anyone who knows a tenant id could otherwise bind their own account to it.
                    Error(
                        403,
                        "this page opens only from a link the shop's system issued (authorize_page_url of POST /api/authorization-links)"
                    )
                else
                    validateLinkRequest (string q["tenant"]) (string q["auth_type"]) (string q["biz_appid"])
                    |> Result.mapError (fun e -> 400, e)

            match request with
            | Error(status, e) ->
                s.Refusals.Refused("authorize_page", status, e)
                do! html ctx status "Cannot start authorization" $"<p>{enc e}</p>"
            | Ok r ->
                match!
                    authorizers.CreateLinks(r.Tenant, r.AuthType, r.BizAppId, s.Options.AuthorizationStateLifetime)
                with
                | Error e ->
                    s.Logger.LogWarning("authorization page: {Error}", describeAuthorizationError e)

                    do!
                        html
                            ctx
                            503
                            "Authorization is not available right now"
                            $"<p>{enc (describeAuthorizationError e)}</p><p>Try again in a few minutes.</p>"
                | Ok links ->
                    ctx.Response.Headers.CacheControl <- "no-store"

                    do!
                        html
                            ctx
                            200
                            "Authorize your account"
                            $"""<p>Authorize your official account or mini program for <b>{enc (Ids.tenant r.Tenant)}</b>.</p>
<p><a class="btn" id="pc" href="{enc links.PcUrl}">Authorize with WeChat (scan on PC)</a></p>
<p>On a phone, open this link in WeChat, or scan the code with WeChat:</p>
<p><a id="mobile" href="{enc links.MobileUrl}">Authorize on the phone</a></p>
<div style="width:220px">{qrSvg links.MobileUrl}</div>
<p class="muted">This page's code is valid until {links.ExpiresAt:u}; reload for a new one.</p>"""
        })

/// The start page's URL for a link request: it opens only with this signed, expiring link (unless
/// unsigned tenants are allowed), so the business decides who binds to which tenant.
let authorizePageUrl (s: Services) (authorizers: AuthorizerService) (r: LinkRequest) =
    let token =
        AuthorizationLinks.sign
            (AuthorizationLinks.linkKey authorizers.StateKey)
            (s.Clock.GetUtcNow() + s.Options.AuthorizationStateLifetime)
            {
                Tenant = Ids.tenant r.Tenant
                AuthType = r.AuthType |> Option.map string |> Option.defaultValue ""
                BizAppId = r.BizAppId |> Option.defaultValue ""
            }

    $"{s.Options.PublicBaseUrl.ToString().TrimEnd('/')}/wechat/component/authorize?link={Uri.EscapeDataString token}"

/// POST /api/authorization-links {tenant, auth_type?, biz_appid?}
let authorizationLinks (s: Services) (authorizers: AuthorizerService) =
    admin s (fun ctx ->
        task {
            let! parsed =
                task {
                    try
                        let! doc = JsonDocument.ParseAsync ctx.Request.Body
                        let root = doc.RootElement

                        return
                            validateLinkRequest
                                (Wire.stringProp "tenant" root |> Option.toObj)
                                (Wire.stringProp "auth_type" root |> Option.toObj)
                                (Wire.stringProp "biz_appid" root |> Option.toObj)
                    with :? JsonException ->
                        return Error "body must be JSON: {\"tenant\": \"...\", \"auth_type\": 3}"
                }

            match parsed with
            | Error e -> do! problem ctx (BadRequest e)
            | Ok r ->
                match!
                    authorizers.CreateLinks(r.Tenant, r.AuthType, r.BizAppId, s.Options.AuthorizationStateLifetime)
                with
                | Error e -> do! problem ctx (Authorization e)
                | Ok links ->
                    do!
                        writeJson
                            ctx
                            200
                            {|
                                authorize_page_url = authorizePageUrl s authorizers r
                                pc_url = links.PcUrl
                                mobile_url = links.MobileUrl
                                expires_at = links.ExpiresAt
                            |}
        })

/// GET /wechat/component/authorized?auth_code&expires_in&state: the merchant is back from WeChat.
let authorizedCallback (s: Services) (authorizers: AuthorizerService) =
    handler (fun ctx ->
        task {
            let q = ctx.Request.Query
            let code = string q["auth_code"]

            match Secrets.AuthState.verify authorizers.StateKey (s.Clock.GetUtcNow()) (string q["state"]) with
            | Error Secrets.AuthState.Expired ->
                do!
                    html
                        ctx
                        400
                        "This authorization link has expired"
                        "<p>Start again from your shop's authorization link.</p>"
            | Error _ ->
                s.Logger.LogWarning("authorization callback with an invalid state")

                do!
                    html
                        ctx
                        400
                        "This authorization link is not valid"
                        "<p>The link was altered or does not come from this platform. Start again from your shop's authorization link.</p>"
            | Ok _ when String.IsNullOrWhiteSpace code ->
                do!
                    html
                        ctx
                        400
                        "Authorization was not completed"
                        "<p>WeChat returned no authorization code. Start again if you want to authorize.</p>"
            | Ok tenant ->
                match!
                    AuthorizationLinks.claim
                        s.Store
                        (s.Clock.GetUtcNow())
                        s.Options.AuthorizationStateLifetime
                        (string q["state"])
                        code
                with
                | AuthorizationLinks.UsedByAnotherCode ->
                    s.Refusals.Refused("authorization_state_reused", 400, "a second authorization code with one state")

                    do!
                        html
                            ctx
                            400
                            "This authorization link has already been used"
                            "<p>Each authorization link completes one authorization. Start again from your shop's authorization link to authorize another account.</p>"
                | AuthorizationLinks.FirstUse ->
                    match! authorizers.Complete(AuthorizationCode code, Some(TenantId tenant), None) with
                    | Ok(a, _) ->
                        match s.Options.AuthorizationReturnUrl with
                        | Some url ->
                            let sep = if url.Query.Length > 1 then "&" else "?"

                            ctx.Response.Redirect(
                                $"{url}{sep}appid={Uri.EscapeDataString(Ids.authorizerAppId a.AppId)}&tenant={Uri.EscapeDataString tenant}"
                            )
                        | None ->
                            let name = a.Profile |> Option.map (fun p -> p.NickName) |> Option.defaultValue ""

                            do!
                                html
                                    ctx
                                    200
                                    "Authorization complete"
                                    $"""<p><b>{enc name}</b> (<code id="appid">{enc (Ids.authorizerAppId a.AppId)}</code>) is now authorized for <b id="tenant">{enc tenant}</b>.</p><p>You can close this page.</p>"""
                    | Error(WeChatRefused(ApiError((61009 | 61010) as code, _))) ->
                        do!
                            html
                                ctx
                                400
                                "This authorization code can no longer be used"
                                $"<p>{enc (ErrorGuide.explain code)}</p><p>Start again from your shop's authorization link.</p>"
                    | Error ExchangeBusy ->
                        do!
                            html
                                ctx
                                503
                                "Authorization in progress"
                                "<p>Another server of the platform is completing this authorization.</p><p>Reload this page in a moment.</p>"
                    | Error e ->
                        s.Logger.LogWarning("authorization callback: {Error}", describeAuthorizationError e)

                        do!
                            html
                                ctx
                                502
                                "Authorization could not be completed"
                                $"<p>{enc (describeAuthorizationError e)}</p><p>Reload this page in a minute to try again.</p>"
        })

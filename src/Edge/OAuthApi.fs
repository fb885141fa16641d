/// The HTTP edge of web pages on behalf of accounts: funcKey routes (admin), the start URL and
/// WeChat's redirect back (followers' browsers, so errors are HTML pages), wxTkId resolution,
/// followers and JS-SDK configs. Domain verification files are in VerificationFileApi.fs.
module WeChatFs.OAuthApi

open System
open System.Net
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.OAuth
open WeChatFs.OAuthStore
open WeChatFs.OAuthFlow
open WeChatFs.JsApiTickets
open WeChatFs.WeChatClient
open WeChatFs.Http
open WeChatFs.Problems

let private enc (s: string) = WebUtility.HtmlEncode s

/// A follower's browser gets a page, not JSON: they may be looking at it inside WeChat.
let private page (ctx: HttpContext) (status: int) (title: string) (text: string) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "text/html; charset=utf-8"
    ctx.Response.Headers.CacheControl <- "no-store"

    ctx.Response.WriteAsync(
        $"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{enc title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#222}} .muted{{color:#777}}</style></head>
<body><h1>{enc title}</h1><p>{enc text}</p></body></html>"""
    )

let private redirect (ctx: HttpContext) (url: string) =
    ctx.Response.StatusCode <- 302
    ctx.Response.Headers.Location <- url
    ctx.Response.Headers.CacheControl <- "no-store"
    Task.CompletedTask

let private route (ctx: HttpContext) (name: string) = string ctx.Request.RouteValues[name]

let private readBody (ctx: HttpContext) =
    task {
        try
            let! doc = JsonDocument.ParseAsync ctx.Request.Body
            return Ok doc.RootElement
        with :? JsonException ->
            return Error "body must be a JSON object"
    }

let private str (root: JsonElement) (name: string) =
    if root.ValueKind = JsonValueKind.Object then
        Wire.stringProp name root |> Option.toObj
    else
        null

// ---- funcKey routes -------------------------------------------------------------------------------

let private routeView (r: StoredRoute) =
    {|
        func_key = r.Route.FuncKey
        target_url = r.Route.TargetUrl.ToString()
        scope = OAuthScope.toText r.Route.Scope
        description = r.Route.Description |> Option.toObj
        tenant = r.Route.Tenant |> Option.map Ids.tenant |> Option.toObj
        source = r.Source
        updated_at = r.UpdatedAt
    |}

/// POST /api/oauth/func-keys {func_key, target_url, scope, description?, tenant?}: create or replace.
let saveFuncKey (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! readBody ctx with
            | Error e -> do! problem ctx (BadRequest e)
            | Ok root ->
                match
                    OAuth.route
                        (str root "func_key")
                        (str root "target_url")
                        (str root "scope")
                        (str root "description")
                        (str root "tenant")
                with
                | Error e -> do! problem ctx (BadField(e.Field, $"{e.Field} {e.Problem}"))
                | Ok r ->
                    let now = s.Clock.GetUtcNow()
                    do! oauth.Store.SaveFuncKey(r, "api", now)
                    let! saved = oauth.Store.GetFuncKey(FuncKey r.FuncKey)

                    match saved with
                    | Some saved -> do! writeJson ctx 200 (routeView saved)
                    | None -> do! problem ctx (NotStored "the route could not be read back")
        })

let listFuncKeys (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            let! routes = oauth.Store.ListFuncKeys()

            do!
                writeJson
                    ctx
                    200
                    {|
                        items = routes |> List.map routeView
                    |}
        })

let getFuncKey (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! oauth.Store.GetFuncKey(FuncKey(route ctx "funcKey")) with
            | Some r -> do! writeJson ctx 200 (routeView r)
            | None -> do! problem ctx (NotFound Missing.FuncKey)
        })

let deleteFuncKey (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! oauth.Store.DeleteFuncKey(FuncKey(route ctx "funcKey")) with
            | true -> ctx.Response.StatusCode <- 204
            | false -> do! problem ctx (NotFound Missing.FuncKey)
        })

// ---- the start URL and the way back ------------------------------------------------------------------

/// GET /wechat/oauth/{authorizerAppid}/{funcKey}?state=S: 302 to WeChat's consent.
let start (oauth: OAuthService) =
    handler (fun ctx ->
        task {
            let state = string ctx.Request.Query["state"]

            if not (stateFits state) then
                do! page ctx 400 "State too long" $"WeChat carries at most {maxStateBytes} bytes of state."
            else
                match!
                    oauth.AuthorizeUrl(AuthorizerAppId(route ctx "authorizerAppid"), route ctx "funcKey", state)
                with
                | Ok url -> do! redirect ctx url
                | Error r ->
                    let status, title, text = refusal r
                    do! page ctx status title text
        })

/// POST /api/oauth/links {authorizer_appid, func_key, state?}: the start URL's target, for menus.
let links (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! readBody ctx with
            | Error e -> do! problem ctx (BadRequest e)
            | Ok root ->
                let appid = str root "authorizer_appid"
                let funcKey = str root "func_key"
                let state = str root "state" |> Option.ofObj |> Option.defaultValue ""

                if String.IsNullOrWhiteSpace appid then
                    do! problem ctx (BadField("authorizer_appid", "authorizer_appid is required"))
                elif not (isFuncKey funcKey) then
                    do! problem ctx (BadField("func_key", "func_key must be 1 to 64 letters, digits, '_' or '-'"))
                elif not (stateFits state) then
                    do! problem ctx (BadField("state", $"state must be at most {maxStateBytes} bytes"))
                else
                    match! oauth.AuthorizeUrl(AuthorizerAppId appid, funcKey, state) with
                    | Error r -> do! problem ctx (OAuthRefused r)
                    | Ok url ->
                        let startUrl =
                            $"{s.Options.PublicBaseUrl.ToString().TrimEnd '/'}/wechat/oauth/{Uri.EscapeDataString appid}/{funcKey}"
                            + (if state = "" then
                                   ""
                               else
                                   "?state=" + Uri.EscapeDataString state)

                        do!
                            writeJson
                                ctx
                                200
                                {|
                                    url = url
                                    start_url = startUrl
                                    authorizer_appid = appid
                                    func_key = funcKey
                                    state = state
                                |}
        })

/// GET /wechat/oauth/authUserReceive/{componentAppid}/{funcKey}?code&state&appid (facts §7).
let receive (s: Services) (oauth: OAuthService) =
    handler (fun ctx ->
        task {
            let q = ctx.Request.Query
            let text (name: string) = string q[name]
            let code = if text "code" = "" then None else Some(text "code")
            let appid = if text "appid" = "" then None else Some(text "appid")

            match! oauth.Receive(route ctx "componentAppid", route ctx "funcKey", code, text "state", appid) with
            | Ok url -> do! redirect ctx url
            | Error e ->
                match e with
                | Refused r ->
                    let status, title, text = refusal r
                    do! page ctx status title text
                | WrongComponent ->
                    do! page ctx 404 "Unknown platform" "this address belongs to another third-party platform"
                | MissingAppId -> do! page ctx 400 "Incomplete answer" "WeChat's redirect lacks the account's appid"
                | CodeAlreadyUsed ->
                    do!
                        page
                            ctx
                            410
                            "This sign-in link was already used"
                            "Open the page again from the account's menu to sign in once more."
                | CodeRejected w ->
                    s.Logger.LogInformation("web OAuth code refused: {Error}", describeError w)

                    do!
                        page
                            ctx
                            410
                            "This sign-in link has expired"
                            "WeChat no longer accepts it (used or too old). Open the page again from the account's menu."
                | ComponentUnavailable t ->
                    s.Logger.LogWarning("web OAuth: no component token: {Error}", ComponentTokens.describeTokenError t)

                    do! page ctx 503 "Please try again" "The platform cannot reach WeChat right now."
                | WeChatFailed w ->
                    s.Logger.LogWarning("web OAuth exchange failed: {Error}", describeError w)
                    do! page ctx 502 "Please try again" "WeChat did not complete the sign-in."
        })

// ---- wxTkId and followers -----------------------------------------------------------------------------

/// GET /api/oauth/tracking-tokens/{wxTkId}
let trackingToken (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! oauth.Resolve(route ctx "wxTkId") with
            | None -> do! problem ctx (NotFound Missing.WxTkId)
            | Some v ->
                do!
                    writeJson
                        ctx
                        200
                        {|
                            openid = Ids.openId v.OpenId
                            unionid = v.UnionId |> Option.toObj
                            authorizer_appid = Ids.authorizerAppId v.AuthorizerAppId
                            tenant = v.Tenant |> Option.map Ids.tenant |> Option.toObj
                            func_key = Ids.funcKey v.FuncKey
                            scope = OAuthScope.toText v.Scope
                            nickname = v.NickName |> Option.toObj
                            headimgurl = v.HeadImgUrl |> Option.toObj
                            expires_at = v.ExpiresAt
                        |}
        })

/// GET /api/authorizers/{appid}/followers/{openid}: the stored follower (never the refresh token).
let follower (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! oauth.Store.GetFollower(AuthorizerAppId(route ctx "appid"), OpenId(route ctx "openid")) with
            | None -> do! problem ctx (NotFound Missing.Follower)
            | Some f ->
                let p (read: FollowerProfile -> 'a) =
                    f.Profile |> Option.map read |> Option.toObj

                do!
                    writeJson
                        ctx
                        200
                        {|
                            authorizer_appid = Ids.authorizerAppId f.AuthorizerAppId
                            openid = Ids.openId f.OpenId
                            unionid = f.UnionId |> Option.toObj
                            scope = OAuthScope.toText f.Scope
                            nickname = p (fun x -> x.NickName)
                            sex = f.Profile |> Option.map (fun x -> x.Sex) |> Option.toNullable
                            province = p (fun x -> x.Province)
                            city = p (fun x -> x.City)
                            country = p (fun x -> x.Country)
                            headimgurl = p (fun x -> x.HeadImgUrl)
                            privilege = f.Profile |> Option.map (fun x -> x.Privilege) |> Option.defaultValue []
                            has_refresh_token = f.RefreshToken.IsSome
                            refresh_expires_at = f.RefreshExpiresAt |> Option.toNullable
                            first_seen_at = f.FirstSeenAt
                            updated_at = f.UpdatedAt
                        |}
        })

// ---- JS-SDK ----------------------------------------------------------------------------------------------

/// GET /api/authorizers/{appid}/jssdk-config?url=<page url>: the fields `wx.config` takes.
let jsSdkConfig (s: Services) (tickets: JsApiTicketService) =
    admin s (fun ctx ->
        task {
            let url = string ctx.Request.Query["url"]

            match httpUrl url with
            | None -> do! problem ctx (BadField("url", "url must be the page's absolute http or https URL"))
            | Some _ ->
                match! tickets.Config(AuthorizerAppId(route ctx "appid"), url) with
                | Ok c ->
                    // wx.config's own field names, not the API's snake_case.
                    let body = Collections.Generic.Dictionary<string, obj>()
                    body["appId"] <- c.AppId
                    body["timestamp"] <- c.Timestamp
                    body["nonceStr"] <- c.NonceStr
                    body["signature"] <- c.Signature
                    do! writeJson ctx 200 body
                | Error e -> do! problem ctx (JsApi e)
        })

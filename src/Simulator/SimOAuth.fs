/// Web OAuth on behalf of an official account as WeChat plays it (facts §7): the authorize page on
/// the open host (pick a simulated follower, allow or deny; snsapi_base redirects at once), and the
/// component code exchange, refresh and userinfo APIs. Codes are single use and live 5 minutes;
/// access tokens 7200 s and refresh tokens 30 days, per follower and account.
module WeChatFs.Simulator.SimOAuth

open System
open System.Collections.Generic
open System.Net
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimApi

/// A WeChat user who follows every simulated account.
type SimFollower =
    {
        Id: string
        NickName: string
        Sex: int
        Province: string
        City: string
        Country: string
    }

let followers =
    [
        {
            Id = "f1"
            NickName = "张小龙粉丝"
            Sex = 1
            Province = "广东"
            City = "深圳"
            Country = "中国"
        }
        {
            Id = "f2"
            NickName = "Lily"
            Sex = 2
            Province = "上海"
            City = "上海"
            Country = "中国"
        }
        {
            Id = "f3"
            NickName = "访客三"
            Sex = 0
            Province = ""
            City = ""
            Country = ""
        }
    ]

let private digest (text: string) =
    Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes text)).Replace('+', '-').Replace('/', '_')

/// 28 characters like WeChat's: one openid per follower per account.
let openIdOf (appid: string) (followerId: string) =
    "o" + (digest $"openid:{appid}:{followerId}").Substring(0, 27)

/// One unionid per follower across the platform's accounts.
let unionIdOf (componentAppId: string) (followerId: string) =
    "u" + (digest $"unionid:{componentAppId}:{followerId}").Substring(0, 27)

let codeLifetime = TimeSpan.FromMinutes 5.
let refreshLifetime = TimeSpan.FromDays 30.

type Grant =
    {
        AppId: string
        FollowerId: string
        Scope: string
        ExpiresAt: DateTimeOffset
    }

type Code = { Grant: Grant; mutable Used: bool }

let private random (prefix: string) =
    prefix
    + Convert.ToBase64String(RandomNumberGenerator.GetBytes 24).Replace('+', '-').Replace('/', '_').TrimEnd('=')

/// The OAuth half of the simulated WeChat; one lock, like SimState.
type SimOAuthState(state: SimState) =
    let sync = obj ()
    let codes = Dictionary<string, Code>()
    let accessTokens = Dictionary<string, Grant>()
    let refreshTokens = Dictionary<string, Grant>()

    member _.IssueCode(appid: string, followerId: string, scope: string) =
        let now = state.Now()
        let code = random "sim_oauth_code_"

        lock sync (fun () ->
            codes[code] <-
                {
                    Grant =
                        {
                            AppId = appid
                            FollowerId = followerId
                            Scope = scope
                            ExpiresAt = now + codeLifetime
                        }
                    Used = false
                })

        code

    /// The code's grant: 40029 unknown, expired or for another account; 40163 used.
    member _.Exchange(appid: string, code: string) =
        let now = state.Now()

        lock sync (fun () ->
            match codes.TryGetValue code with
            | false, _ -> Error 40029
            | true, c when c.Used -> Error 40163
            | true, c when now >= c.Grant.ExpiresAt || c.Grant.AppId <> appid -> Error 40029
            | true, c ->
                c.Used <- true
                let access = random "sim_oauth_at_"
                let refresh = random "sim_oauth_rt_"

                accessTokens[access] <-
                    { c.Grant with
                        ExpiresAt = now.AddSeconds 7200.
                    }

                refreshTokens[refresh] <-
                    { c.Grant with
                        ExpiresAt = now + refreshLifetime
                    }

                Ok(c.Grant, access, refresh))

    /// 40030 unknown refresh token, 42002 expired (facts §7 step 3, §12).
    member _.Refresh(appid: string, refreshToken: string) =
        let now = state.Now()

        lock sync (fun () ->
            match refreshTokens.TryGetValue refreshToken with
            | true, g when g.AppId = appid && now < g.ExpiresAt ->
                let access = random "sim_oauth_at_"

                accessTokens[access] <-
                    { g with
                        ExpiresAt = now.AddSeconds 7200.
                    }

                Ok(g, access)
            | true, g when g.AppId = appid -> Error 42002
            | _ -> Error 40030)

    member _.UserInfo(accessToken: string, openid: string) =
        let now = state.Now()

        lock sync (fun () ->
            match accessTokens.TryGetValue accessToken with
            | false, _ -> Error 40001
            | true, g when now >= g.ExpiresAt -> Error 42001
            | true, g when openIdOf g.AppId g.FollowerId <> openid -> Error 40003
            | true, g when g.Scope <> "snsapi_userinfo" -> Error 48001
            | true, g -> Ok g)

let private enc (s: string) = WebUtility.HtmlEncode s

let private page (ctx: HttpContext) (status: int) (title: string) (body: string) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "text/html; charset=utf-8"

    ctx.Response.WriteAsync(
        $"""<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{enc title}</title><style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem}} form{{display:inline}} button{{border:0;padding:.6rem 1.2rem;border-radius:5px;margin:.3rem}} .allow{{background:#07c160;color:#fff}}</style></head><body><p style="color:#999">WeChatFs simulator · not WeChat</p><h1>{enc title}</h1>{body}</body></html>"""
    )

/// `redirect_uri?code=CODE&state=STATE&appid=APPID`, or `redirect_uri?state=STATE` on denial (facts §7).
let private back (redirectUri: string) (pairs: (string * string) list) =
    let sep = if redirectUri.Contains "?" then "&" else "?"

    redirectUri
    + sep
    + (pairs
       |> List.map (fun (k, v) -> $"{k}={Uri.EscapeDataString v}")
       |> String.concat "&")

let private redirect (ctx: HttpContext) (url: string) =
    ctx.Response.StatusCode <- 302
    ctx.Response.Headers.Location <- url
    Task.CompletedTask

let private followerCookie = "sim_follower"

/// GET /connect/oauth2/authorize (facts §7 step 1).
let authorize (state: SimState) (oauth: SimOAuthState) =
    RequestDelegate(fun ctx ->
        let q = ctx.Request.Query
        let appid = string q["appid"]
        let redirectUri = string q["redirect_uri"]
        let scope = string q["scope"]
        let st = string q["state"]
        state.Count "oauth2_authorize"

        let authorized =
            match state.Authorization appid with
            | Some a -> a.Authorized
            | None -> false

        if string q["component_appid"] <> state.Options.ComponentAppId then
            page ctx 400 "授权错误" "<p id=\"error\">component_appid 参数错误 (not a known third-party platform)</p>"
        elif not authorized then
            page ctx 400 "授权错误" "<p id=\"error\">该公众号未授权给此第三方平台 (the account has not authorized the platform)</p>"
        elif string q["response_type"] <> "code" then
            page ctx 400 "授权错误" "<p id=\"error\">response_type 参数错误</p>"
        elif scope <> "snsapi_base" && scope <> "snsapi_userinfo" then
            page ctx 400 "授权错误" "<p id=\"error\">scope 参数错误或没有 scope 权限</p>"
        elif
            (match Uri.TryCreate(redirectUri, UriKind.Absolute) with
             | true, u -> u.Scheme <> "http" && u.Scheme <> "https"
             | _ -> true)
        then
            page ctx 400 "授权错误" "<p id=\"error\">redirect_uri 参数错误</p>"
        elif scope = "snsapi_base" then
            // Silent: WeChat knows who is looking; the simulator remembers the last follower picked.
            let follower =
                match ctx.Request.Cookies[followerCookie] with
                | null -> (List.head followers).Id
                | id when followers |> List.exists (fun f -> f.Id = id) -> id
                | _ -> (List.head followers).Id

            let code = oauth.IssueCode(appid, follower, scope)
            redirect ctx (back redirectUri [ "code", code; "state", st; "appid", appid ])
        else
            let account =
                catalog
                |> List.tryFind (fun a -> a.AppId = appid)
                |> Option.map (fun a -> a.NickName)
                |> Option.defaultValue appid

            let hidden =
                [ "appid", appid; "redirect_uri", redirectUri; "scope", scope; "state", st ]
                |> List.map (fun (k, v) -> $"""<input type="hidden" name="{k}" value="{enc v}">""")
                |> String.concat ""

            let choices =
                followers
                |> List.map (fun f ->
                    $"""<li><form method="post" action="/sim/oauth/confirm">{hidden}<input type="hidden" name="follower" value="{f.Id}"><input type="hidden" name="decision" value="allow"><button class="allow" id="allow-{f.Id}" type="submit">允许 · Allow as {enc f.NickName}</button></form></li>""")
                |> String.concat ""

            page
                ctx
                200
                $"{account} 申请获得你的昵称、头像"
                $"""<p>The page of <b>{enc account}</b> asks for your nickname and avatar. Pick the simulated follower who is looking:</p><ul>{choices}</ul><form method="post" action="/sim/oauth/confirm">{hidden}<input type="hidden" name="decision" value="deny"><button id="deny" type="submit">拒绝 · Deny</button></form>""")

/// POST /sim/oauth/confirm: the follower's answer on the consent page.
let confirm (state: SimState) (oauth: SimOAuthState) =
    RequestDelegate(fun ctx ->
        task {
            let! form = ctx.Request.ReadFormAsync()
            let f (name: string) = string form[name]
            let st = f "state"

            if f "decision" = "deny" then
                do! redirect ctx (back (f "redirect_uri") [ "state", st ])
            else
                let follower =
                    followers
                    |> List.tryFind (fun x -> x.Id = f "follower")
                    |> Option.defaultValue (List.head followers)

                ctx.Response.Cookies.Append(followerCookie, follower.Id)
                let code = oauth.IssueCode(f "appid", follower.Id, f "scope")

                do! redirect ctx (back (f "redirect_uri") [ "code", code; "state", st; "appid", f "appid" ])
        }
        :> Task)

let private grantJson (state: SimState) (g: Grant) (access: string) (refresh: string) =
    let body = Dictionary<string, obj>()
    body["access_token"] <- access
    body["expires_in"] <- 7200
    body["refresh_token"] <- refresh
    body["openid"] <- openIdOf g.AppId g.FollowerId
    body["scope"] <- g.Scope

    // unionid only with the profile scope here; the facts leave when WeChat adds it open ([U]).
    if g.Scope = "snsapi_userinfo" then
        body["unionid"] <- unionIdOf state.Options.ComponentAppId g.FollowerId

    body

/// Component token, component_appid and grant_type, as the component OAuth APIs check them.
let private componentChecks (state: SimState) (ctx: HttpContext) (grantType: string) (serve: unit -> Task) =
    let q = ctx.Request.Query

    match state.CheckComponentToken(componentTokenOf ctx) with
    | Error code -> writeError ctx code
    | Ok() when string q["component_appid"] <> state.Options.ComponentAppId -> writeError ctx 61011
    | Ok() when string q["grant_type"] <> grantType -> writeError ctx 40097
    | Ok() -> serve ()

/// GET /sns/oauth2/component/access_token (facts §7 step 2).
let exchange (state: SimState) (oauth: SimOAuthState) =
    fun (ctx: HttpContext) ->
        let q = ctx.Request.Query

        componentChecks state ctx "authorization_code" (fun () ->
            match oauth.Exchange(string q["appid"], string q["code"]) with
            | Error code -> writeError ctx code
            | Ok(g, access, refresh) -> writeJson ctx 200 (grantJson state g access refresh))

/// GET /sns/oauth2/component/refresh_token (facts §7 step 3).
let refresh (state: SimState) (oauth: SimOAuthState) =
    fun (ctx: HttpContext) ->
        let q = ctx.Request.Query
        let refreshToken = string q["refresh_token"]

        componentChecks state ctx "refresh_token" (fun () ->
            match oauth.Refresh(string q["appid"], refreshToken) with
            | Error code -> writeError ctx code
            | Ok(g, access) -> writeJson ctx 200 (grantJson state g access refreshToken))

/// GET /sns/userinfo (facts §7 step 4).
let userInfo (state: SimState) (oauth: SimOAuthState) =
    fun (ctx: HttpContext) ->
        let q = ctx.Request.Query

        match oauth.UserInfo(string q["access_token"], string q["openid"]) with
        | Error code -> writeError ctx code
        | Ok g ->
            let f = followers |> List.find (fun x -> x.Id = g.FollowerId)
            let openid = openIdOf g.AppId g.FollowerId

            writeJson
                ctx
                200
                {|
                    openid = openid
                    nickname = f.NickName
                    sex = f.Sex
                    province = f.Province
                    city = f.City
                    country = f.Country
                    headimgurl = $"https://thirdwx.qlogo.cn/mmopen/sim/{openid}/132"
                    privilege = Array.empty<string>
                    unionid = unionIdOf state.Options.ComponentAppId g.FollowerId
                |}

/// GET /sim/oauth/followers?appid=: who the simulated followers are, with their ids for that account.
let followerList (state: SimState) =
    RequestDelegate(fun ctx ->
        let appid = string ctx.Request.Query["appid"]

        writeJson
            ctx
            200
            (followers
             |> List.map (fun f ->
                 {|
                     id = f.Id
                     nickname = f.NickName
                     openid = openIdOf appid f.Id
                     unionid = unionIdOf state.Options.ComponentAppId f.Id
                 |})))

/// GET /sim/business-page: a stand-in for a business system's page, for the demo. It shows what a
/// real page would read from its URL: the wxTkId in the query and the state in the fragment.
let businessPage =
    RequestDelegate(fun ctx ->
        page
            ctx
            200
            "A business page"
            """<p>This page stands in for the business system's own page. WeChatFs sent the follower here with:</p>
<p>wxTkId: <code id="token"></code></p><p>state: <code id="state"></code></p><p id="error" style="color:#c00"></p>
<p>The business system resolves the wxTkId on its server with the admin key:</p><pre id="curl"></pre>
<script>
  const q = new URLSearchParams(location.search);
  document.getElementById('token').textContent = q.get('wxTkId') || '';
  document.getElementById('state').textContent = decodeURIComponent(location.hash.slice(1));
  document.getElementById('error').textContent = q.get('error') || '';
  document.getElementById('curl').textContent = 'curl -H "Authorization: Bearer <admin key>" <gateway>/api/oauth/tracking-tokens/' + (q.get('wxTkId') || '');
</script>""")

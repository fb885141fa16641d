/// The authorization pages (facts §4): the PC scan page and the mobile page show the accounts an admin
/// could authorize; confirming spends the pre_auth_code, pushes `authorized` and redirects with auth_code.
module WeChatFs.Simulator.AuthPage

open System
open System.Net
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState

let private enc (s: string) = WebUtility.HtmlEncode s

let private page (ctx: HttpContext) (status: int) (title: string) (body: string) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "text/html; charset=utf-8"

    ctx.Response.WriteAsync(
        $"""<!doctype html><html><head><meta charset="utf-8"><title>{enc title}</title><style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}} fieldset{{margin:.8rem 0}} button{{background:#07c160;color:#fff;border:0;padding:.6rem 1.2rem;border-radius:5px}}</style></head><body><p style="color:#999">WeChatFs simulator · not WeChat</p><h1>{enc title}</h1>{body}</body></html>"""
    )

/// WeChat refuses the page unless the browser came from the registered domain, which must also be
/// the redirect_uri's domain (facts §4.1); the simulator compares the Referer's host with it.
let refererAllowed (referer: string) (redirectUri: string) =
    match Uri.TryCreate(referer, UriKind.Absolute), Uri.TryCreate(redirectUri, UriKind.Absolute) with
    | (true, r), (true, target) -> String.Equals(r.Host, target.Host, StringComparison.OrdinalIgnoreCase)
    | _ -> false

/// Which accounts the page offers: auth_type 1 official accounts, 2 mini programs, 3 both;
/// biz_appid only that one (facts §4.1).
let offered (authType: string) (bizAppId: string) =
    catalog
    |> List.filter (fun a ->
        if bizAppId <> "" then
            a.AppId = bizAppId
        else
            match authType, a.Kind with
            | "1", OfficialAccount -> true
            | "1", MiniProgram -> false
            | "2", MiniProgram -> true
            | "2", OfficialAccount -> false
            | _ -> true)

let show (state: SimState) =
    RequestDelegate(fun ctx ->
        let q = ctx.Request.Query
        let code = string q["pre_auth_code"]
        let redirect = string q["redirect_uri"]

        state.Count(
            if ctx.Request.Path.Value.Contains "bindcomponent" then
                "bindcomponent"
            else
                "componentloginpage"
        )

        if string q["component_appid"] <> state.Options.ComponentAppId then
            page
                ctx
                400
                "Authorization error"
                "<p id=\"error\">component_appid is not a known third-party platform.</p>"
        elif
            state.Options.RequireReferer
            && not (refererAllowed (string ctx.Request.Headers.Referer) redirect)
        then
            page
                ctx
                400
                "Authorization error"
                "<p id=\"error\">授权入口页所在域名:空 (the page must be opened from the platform's registered domain)</p>"
        else
            match state.CheckPreAuthCode code with
            | Error reason -> page ctx 400 "Authorization error" $"<p id=\"error\">{enc reason}</p>"
            | Ok() ->
                let accounts =
                    offered (string q["auth_type"]) (string q["biz_appid"])
                    |> List.mapi (fun i a ->
                        let sets =
                            permissionSets a.Kind
                            |> List.map (fun (id, name, on) ->
                                let checkedAttr = if on then " checked" else ""
                                $"""<label><input type="checkbox" name="func_{enc a.AppId}" value="{id}"{checkedAttr}> {id} {enc name}</label><br>""")
                            |> String.concat ""

                        let kind =
                            match a.Kind with
                            | OfficialAccount -> "official account"
                            | MiniProgram -> "mini program"

                        let checkedAttr = if i = 0 then " checked" else ""

                        $"""<fieldset><legend><label><input type="radio" name="appid" value="{enc a.AppId}"{checkedAttr}> {enc a.NickName} ({kind}, {enc a.AppId})</label></legend>{sets}</fieldset>""")
                    |> String.concat ""

                page
                    ctx
                    200
                    "Authorize a third-party platform"
                    $"""<form method="post" action="/sim/authorize/confirm"><input type="hidden" name="pre_auth_code" value="{enc code}"><input type="hidden" name="redirect_uri" value="{enc redirect}">{accounts}<button type="submit">Authorize</button></form>""")

/// `redirect_uri` + auth_code & expires_in (facts §4.3).
let redirectTarget (redirectUri: string) (code: AuthCode) (lifetime: TimeSpan) =
    let sep = if redirectUri.Contains '?' then "&" else "?"
    $"{redirectUri}{sep}auth_code={Uri.EscapeDataString code.Code}&expires_in={int lifetime.TotalSeconds}"

/// Confirms for `appid` with the permission sets; pushes and redirects in the order the state says.
let confirm (state: SimState) (preAuthCode: string) (redirectUri: string) (appid: string) (funcIds: int list) =
    task {
        match state.Confirm(preAuthCode, appid, funcIds) with
        | Error reason -> return Error reason
        | Ok(code, update) ->
            let infoType = if update then "updateauthorized" else "authorized"

            let push () =
                Pusher.pushAuthorized state infoType appid code preAuthCode

            match state.PushOrder with
            | PushBeforeRedirect ->
                let! _ = push ()
                ()
            | PushAfterRedirect ->
                Task.Run(fun () ->
                    task {
                        do! Task.Delay 300
                        let! _ = push ()
                        ()
                    }
                    :> Task)
                |> ignore
            | NoPush -> ()

            return Ok(redirectTarget redirectUri code state.Options.AuthCodeLifetime, code)
    }

let confirmForm (state: SimState) =
    RequestDelegate(fun ctx ->
        task {
            let! form = ctx.Request.ReadFormAsync()
            let appid = string form["appid"]

            let funcIds =
                form[$"func_{appid}"]
                |> Seq.choose (fun v ->
                    match Int32.TryParse v with
                    | true, n -> Some n
                    | _ -> None)
                |> List.ofSeq

            match! confirm state (string form["pre_auth_code"]) (string form["redirect_uri"]) appid funcIds with
            | Error reason -> do! page ctx 400 "Authorization error" $"<p id=\"error\">{enc reason}</p>"
            | Ok(target, _) -> ctx.Response.Redirect target
        }
        :> Task)

/// Console pages `/console/authorizers` (search by tenant and status, paged; sync from WeChat) and
/// `/console/authorizers/{appid}` (permissions, token expiry, refresh history, the reason when it
/// needs re-authorization; refresh now).
module WeChatFs.ConsoleAuthorizers

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Authorizers"
        Path = "/console/authorizers"
    }

let pageSize = 20

let private describeTokenFailure (e: AuthorizerTokenError) =
    match e with
    | UnknownAuthorizer -> "no account with this appid has authorized the platform"
    | Unusable(status, reason) -> $"the account is {AuthorizerStatus.toText status}: {reason}"
    | ComponentTokenUnavailable t -> describeTokenError t
    | AuthorizerRefreshFailed w -> describeError w
    | AuthorizerRefreshBusy -> "a refresh is already running or backing off after a failure; try again shortly"

let private query (ctx: HttpContext) (name: string) = (string ctx.Request.Query[name]).Trim()

/// `?notice=` and `?problem=` carry the result of the last action back to the page.
let private notices (ctx: HttpContext) =
    [
        match query ctx "notice" with
        | "" -> ()
        | n -> p [ attr "role" "status"; _id "notice" ] [ badge "good" "done"; str (" " + n) ]
        match query ctx "problem" with
        | "" -> ()
        | m -> p [ attr "role" "alert"; _class "error"; _id "problem" ] [ str m ]
    ]

let private list (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let tenant = query ctx "tenant"
            let statusText = query ctx "status"
            let status = AuthorizerStatus.ofText statusText

            let offset = Paging.offset (query ctx "offset")

            let! page =
                c.Services.Store.ListAuthorizers
                    {
                        Tenant = (if tenant = "" then None else Some(TenantId tenant))
                        Status = status
                        Offset = offset
                        Limit = pageSize
                    }

            let now = c.Services.Clock.GetUtcNow()

            let link (o: int) =
                $"/console/authorizers?tenant={Uri.EscapeDataString tenant}&status={Uri.EscapeDataString statusText}&offset={o}"

            let rows =
                page.Items
                |> List.map (fun au ->
                    let appid = Ids.authorizerAppId au.AppId

                    [
                        a [ _href $"/console/authorizers/{Uri.EscapeDataString appid}" ] [ str appid ]
                        str (au.Profile |> Option.map (fun p -> p.NickName) |> Option.defaultValue "—")
                        str (au.Tenant |> Option.map Ids.tenant |> Option.defaultValue "—")
                        statusBadge (AuthorizerStatus.toText au.Status)
                        (match au.AccessToken with
                         | Some t when Expiring.isUsable now t -> span [] [ time' t.ExpiresAt ]
                         | Some t -> span [] [ badge "warn" "expired"; str " "; time' t.ExpiresAt ]
                         | None -> str "—")
                    ])

            let content =
                [
                    yield! notices ctx
                    form
                        [ _method "get"; _action nav.Path; _class "inline"; _id "search" ]
                        [
                            div
                                []
                                [
                                    label [ _for "tenant" ] [ str "Tenant" ]
                                    input [ _id "tenant"; _name "tenant"; _value tenant ]
                                ]
                            div
                                []
                                [
                                    label [ _for "status" ] [ str "Status" ]
                                    select
                                        [ _id "status"; _name "status" ]
                                        [
                                            for value, text in
                                                [
                                                    "", "any"
                                                    "authorized", "authorized"
                                                    "needs_reauthorization", "needs re-authorization"
                                                    "revoked", "revoked"
                                                ] ->
                                                option
                                                    [
                                                        _value value
                                                        if value = statusText then
                                                            _selected
                                                    ]
                                                    [ str text ]
                                        ]
                                ]
                            div [] [ button [ _type "submit" ] [ str "Search" ] ]
                        ]
                    dataTable $"{page.Total} accounts" [ "AppID"; "Name"; "Tenant"; "Status"; "Token expires" ] rows
                    p
                        [ _class "inline" ]
                        [
                            if offset > 0 then
                                a [ _href (link (max 0 (offset - pageSize))); attr "rel" "prev" ] [ str "← Previous" ]
                            if offset + pageSize < page.Total then
                                a [ _href (link (offset + pageSize)); attr "rel" "next" ] [ str "Next →" ]
                            span
                                [ _class "muted" ]
                                [
                                    str (
                                        if page.Total = 0 then
                                            ""
                                        else
                                            $"{offset + 1}–{min page.Total (offset + pageSize)} of {page.Total}"
                                    )
                                ]
                        ]
                    h2 [] [ str "Sync from WeChat" ]
                    p
                        []
                        [
                            str
                                "Imports every account WeChat lists as authorized (api_get_authorizer_list): use it after restoring a backup."
                        ]
                    postForm
                        (formToken c ctx)
                        "/console/authorizers/sync"
                        []
                        [ button [ _type "submit"; _class "secondary" ] [ str "Sync now" ] ]
                ]

            return "Authorizers", content
        })

let private detail (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let appid = string ctx.Request.RouteValues["appid"]
            let! found = c.Services.Store.GetAuthorizer(AuthorizerAppId appid)
            let now = c.Services.Clock.GetUtcNow()

            match found with
            | None -> return "Unknown authorizer", [ p [] [ str $"No account {appid} has authorized the platform." ] ]
            | Some au ->
                let history = c.Metrics.RefreshHistory appid
                let profile = au.Profile

                let content =
                    [
                        yield! notices ctx
                        facts
                            [
                                "AppID", code [ _id "appid" ] [ str appid ]
                                "Name", str (profile |> Option.map (fun p -> p.NickName) |> Option.defaultValue "—")
                                "Kind",
                                str (
                                    profile
                                    |> Option.map (fun p -> AuthorizerKind.toText p.Kind)
                                    |> Option.defaultValue "—"
                                )
                                "Principal",
                                str (profile |> Option.map (fun p -> p.PrincipalName) |> Option.defaultValue "—")
                                "Tenant", str (au.Tenant |> Option.map Ids.tenant |> Option.defaultValue "—")
                                "Status", span [ _id "status" ] [ statusBadge (AuthorizerStatus.toText au.Status) ]
                                match au.Status, au.StatusReason with
                                | Authorized, _ -> ()
                                | _, reason ->
                                    "Why",
                                    span
                                        [ _id "status-reason" ]
                                        [
                                            str (reason |> Option.defaultValue "—")
                                            str
                                                " The merchant must authorize the platform again: send them a link from "
                                            a [ _href "/console/authorize" ] [ str "Authorize" ]
                                            str "."
                                        ]
                                "Permissions (funcscope ids)",
                                str (
                                    if au.FuncIds.IsEmpty then
                                        "—"
                                    else
                                        au.FuncIds |> List.map string |> String.concat ", "
                                )
                                "Refresh token", str (if au.RefreshToken.IsSome then "stored (sealed)" else "none")
                                "Access token",
                                (match au.AccessToken with
                                 | Some t when Expiring.isUsable now t ->
                                     span
                                         [ _id "token-expiry" ]
                                         [ badge "good" "valid"; str " until "; time' t.ExpiresAt ]
                                 | Some t ->
                                     span
                                         [ _id "token-expiry" ]
                                         [ badge "warn" "expired"; str " at "; time' t.ExpiresAt ]
                                 | None -> span [ _id "token-expiry" ] [ str "none stored" ])
                                "Authorized at", time' au.AuthorizedAt
                                "Updated at", time' au.UpdatedAt
                            ]
                        postForm
                            (formToken c ctx)
                            $"/console/authorizers/{Uri.EscapeDataString appid}/refresh"
                            []
                            [ button [ _type "submit"; _id "refresh" ] [ str "Refresh the token now" ] ]
                        dataTable
                            "Refresh history (this instance, since it started)"
                            [ "When"; "Outcome" ]
                            (history
                             |> List.map (fun r ->
                                 [
                                     time' r.At
                                     (if r.Succeeded then
                                          badge "good" "success"
                                      else
                                          span
                                              []
                                              [
                                                  badge "bad" "failed"
                                                  str " "
                                                  (match Int32.TryParse r.Outcome with
                                                   | true, code ->
                                                       a
                                                           [ _href $"/console/errors?code={code}" ]
                                                           [ str $"errcode {code}: {ErrorGuide.explain code}" ]
                                                   | _ -> str r.Outcome)
                                              ])
                                 ]))
                    ]

                return appid, content
        })

let private refresh (c: ConsoleContext) =
    action c (fun ctx _ ->
        task {
            let appid = string ctx.Request.RouteValues["appid"]
            let back = $"/console/authorizers/{Uri.EscapeDataString appid}"

            match! c.Authorizers.ForceRefresh(AuthorizerAppId appid) with
            | Ok t ->
                return
                    back
                    + "?notice="
                    + Uri.EscapeDataString $"Token refreshed; it expires at {t.ExpiresAt:u}."
            | Error e ->
                return
                    back
                    + "?problem="
                    + Uri.EscapeDataString("Refresh failed: " + describeTokenFailure e)
        })

let private sync (c: ConsoleContext) =
    action c (fun _ _ ->
        task {
            match! c.Authorizers.Sync() with
            | Ok r ->
                return
                    nav.Path
                    + "?notice="
                    + Uri.EscapeDataString
                        $"WeChat lists {r.Total} accounts: {r.Imported} imported, {r.Updated} updated."
            | Error e ->
                return
                    nav.Path
                    + "?problem="
                    + Uri.EscapeDataString("Sync failed: " + describeAuthorizationError e)
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/authorizers", list c) |> ignore
    app.MapPost("/console/authorizers/sync", sync c) |> ignore
    app.MapGet("/console/authorizers/{appid}", detail c) |> ignore
    app.MapPost("/console/authorizers/{appid}/refresh", refresh c) |> ignore

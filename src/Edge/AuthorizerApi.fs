/// The authorizer API: list, details, token, refresh, sync and the proxy that acts for an account.
module WeChatFs.AuthorizerApi

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

let private view (now: DateTimeOffset) (a: Authorizer) =
    {|
        authorizer_appid = Ids.authorizerAppId a.AppId
        tenant = a.Tenant |> Option.map Ids.tenant |> Option.toObj
        status = AuthorizerStatus.toText a.Status
        status_reason = a.StatusReason |> Option.toObj
        kind = a.Profile |> Option.map (fun p -> AuthorizerKind.toText p.Kind) |> Option.toObj
        nick_name = a.Profile |> Option.map (fun p -> p.NickName) |> Option.toObj
        head_img = a.Profile |> Option.map (fun p -> p.HeadImg) |> Option.toObj
        user_name = a.Profile |> Option.map (fun p -> p.UserName) |> Option.toObj
        principal_name = a.Profile |> Option.map (fun p -> p.PrincipalName) |> Option.toObj
        service_type = a.Profile |> Option.map (fun p -> p.ServiceTypeId) |> Option.toNullable
        verify_type = a.Profile |> Option.map (fun p -> p.VerifyTypeId) |> Option.toNullable
        func_info = a.FuncIds
        has_refresh_token = a.RefreshToken.IsSome
        access_token_expires_at = a.AccessToken |> Option.map (fun t -> t.ExpiresAt) |> Option.toNullable
        access_token_valid = a.AccessToken |> Option.exists (Expiring.isUsable now)
        authorized_at = a.AuthorizedAt
        updated_at = a.UpdatedAt
    |}

let private appIdOf (ctx: HttpContext) =
    AuthorizerAppId(string ctx.Request.RouteValues["appid"])

let listAuthorizers (s: Services) =
    admin s (fun ctx ->
        task {
            let q = ctx.Request.Query

            let intParam name fallback maxValue =
                Paging.boundedInt fallback maxValue (string q[name])

            let statusText = string q["status"]

            match
                (if statusText = "" then
                     Ok None
                 else
                     (match AuthorizerStatus.ofText statusText with
                      | Some st -> Ok(Some st)
                      | None -> Error()))
            with
            | Error _ -> do! problem ctx (BadRequest "status must be authorized, revoked or needs_reauthorization")
            | Ok status ->
                let tenant = string q["tenant"]

                let! page =
                    s.Store.ListAuthorizers
                        {
                            Tenant = if tenant = "" then None else Some(TenantId tenant)
                            Status = status
                            Offset = intParam "offset" 0 Int32.MaxValue
                            Limit = max 1 (intParam "limit" 100 500)
                        }

                let now = s.Clock.GetUtcNow()

                do!
                    writeJson
                        ctx
                        200
                        {|
                            total = page.Total
                            items = page.Items |> List.map (view now)
                        |}
        })

let getAuthorizer (s: Services) =
    admin s (fun ctx ->
        task {
            match! s.Store.GetAuthorizer(appIdOf ctx) with
            | Some a -> do! writeJson ctx 200 (view (s.Clock.GetUtcNow()) a)
            | None -> do! problem ctx (NotFound Missing.Authorizer)
        })

let private writeToken ctx (result: Result<Expiring<AuthorizerAccessToken>, AuthorizerTokenError>) =
    match result with
    | Ok t ->
        writeJson
            ctx
            200
            {|
                authorizer_access_token = Ids.authorizerToken t.Token
                expires_at = t.ExpiresAt
            |}
    | Error e -> problem ctx (AuthorizerToken e)

let authorizerAccessToken (s: Services) (authorizers: AuthorizerService) =
    admin s (fun ctx ->
        task {
            let! result = authorizers.GetToken(appIdOf ctx)
            do! writeToken ctx result
        })

let refreshAuthorizer (s: Services) (authorizers: AuthorizerService) =
    admin s (fun ctx ->
        task {
            let! result = authorizers.ForceRefresh(appIdOf ctx)
            do! writeToken ctx result
        })

let syncAuthorizers (s: Services) (authorizers: AuthorizerService) =
    admin s (fun ctx ->
        task {
            match! authorizers.Sync() with
            | Ok r ->
                do!
                    writeJson
                        ctx
                        200
                        {|
                            total = r.Total
                            imported = r.Imported
                            updated = r.Updated
                        |}
            | Error e -> do! problem ctx (Authorization e)
        })

/// ANY /api/authorizers/{appid}/wechat/{**path}: WeChat's API acting for the account.
let authorizerProxy (s: Services) (authorizers: AuthorizerService) =
    admin s (fun ctx ->
        let appid = appIdOf ctx

        proxyRoute
            s
            ctx
            (fun () ->
                task {
                    match! authorizers.GetToken appid with
                    | Ok t -> return Ok t.Token
                    | Error e -> return Error(AuthorizerToken e)
                })
            (fun t -> authorizers.Invalidate(appid, t) :> Task)
            (fun call t ->
                s.Client.ForwardAsAuthorizer(call.Method, call.Path, call.Query, call.Body, call.ContentType, t)))

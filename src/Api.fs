/// The HTTP edge: every endpoint, mapped with ASP.NET Core endpoint routing.
module WeChatFs.Api

open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.DependencyInjection
open WeChatFs.Http
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers
open Microsoft.Extensions.DependencyInjection

let map (app: IEndpointRouteBuilder) (s: Services) (authorizers: AuthorizerService) (inbox: Inbox.InboxService) =
    let handlers: ComponentApi.PushHandlers =
        {
            OnAuthorization =
                fun push ->
                    task {
                        do! authorizers.HandlePush push
                        do! MessageApi.forwardAuthorizationEvent s inbox push
                    }
        }

    // Pushes are counted and timed by endpoint and outcome (wechatfs_pushes_total).
    let metrics = app.ServiceProvider.GetRequiredService<Metrics.GatewayMetrics>()

    /// A block of routes as a table: method, pattern, handler.
    let routes (table: (string * string * RequestDelegate) list) =
        for verb, pattern, handler in table do
            app.MapMethods(pattern, [ verb ], handler) |> ignore

    // /healthz and /readyz, as ASP.NET Core health checks.
    Health.map app
    // WeChat-facing
    app.MapPost(
        "/wechat/component/events",
        MetricsApi.timedPush metrics "component_events" (ComponentApi.componentEvents s handlers)
    )
    |> ignore

    app.MapGet("/wechat/component/authorize", AuthorizationPages.authorizePage s authorizers)
    |> ignore

    app.MapGet("/wechat/component/authorized", AuthorizationPages.authorizedCallback s authorizers)
    |> ignore
    // internal API
    app.MapGet("/api/component/status", ComponentApi.componentStatus s) |> ignore

    app.MapGet("/api/component/access-token", ComponentApi.componentAccessToken s)
    |> ignore

    app.MapPost("/api/component/access-token/invalidate", ComponentApi.invalidateComponentToken s)
    |> ignore

    app.Map("/api/component/wechat/{**path}", ComponentApi.componentProxy s)
    |> ignore

    app.MapPost("/api/authorization-links", AuthorizationPages.authorizationLinks s authorizers)
    |> ignore

    app.MapGet("/api/authorizers", AuthorizerApi.listAuthorizers s) |> ignore

    app.MapPost("/api/authorizers/sync", AuthorizerApi.syncAuthorizers s authorizers)
    |> ignore

    app.MapGet("/api/authorizers/{appid}", AuthorizerApi.getAuthorizer s) |> ignore

    app.MapGet("/api/authorizers/{appid}/access-token", AuthorizerApi.authorizerAccessToken s authorizers)
    |> ignore

    app.MapPost("/api/authorizers/{appid}/refresh", AuthorizerApi.refreshAuthorizer s authorizers)
    |> ignore

    app.Map("/api/authorizers/{appid}/wechat/{**path}", AuthorizerApi.authorizerProxy s authorizers)
    |> ignore

    let deployments =
        app.ServiceProvider.GetService(typeof<Deployments.DeploymentService>) :?> Deployments.DeploymentService

    app.MapPost(
        "/wechat/authorizers/{appid}/callback",
        MetricsApi.timedPush
            metrics
            "authorizer_callback"
            (MessageApi.callback s authorizers inbox (fun appid m -> deployments.OnMessage(appid, m)))
    )
    |> ignore

    app.MapGet("/wechat/authorizers/{appid}/callback", MessageApi.callbackCheck s)
    |> ignore

    app.MapGet("/api/deliveries", MessageApi.listDeliveries s) |> ignore
    app.MapGet("/api/deliveries/{id}", MessageApi.getDelivery s) |> ignore
    app.MapPost("/api/deliveries/{id}/retry", MessageApi.retryDelivery s) |> ignore

    // web pages on behalf of accounts: OAuth with funcKey routes, wxTkId, JS-SDK, verification files
    let oauth = app.ServiceProvider.GetRequiredService<OAuthFlow.OAuthService>()

    let tickets =
        app.ServiceProvider.GetRequiredService<JsApiTickets.JsApiTicketService>()

    routes
        [
            "POST", "/api/oauth/func-keys", OAuthApi.saveFuncKey s oauth
            "GET", "/api/oauth/func-keys", OAuthApi.listFuncKeys s oauth
            "GET", "/api/oauth/func-keys/{funcKey}", OAuthApi.getFuncKey s oauth
            "DELETE", "/api/oauth/func-keys/{funcKey}", OAuthApi.deleteFuncKey s oauth
            "POST", "/api/oauth/links", OAuthApi.links s oauth
            "GET", "/api/oauth/tracking-tokens/{wxTkId}", OAuthApi.trackingToken s oauth
            "GET", "/wechat/oauth/{authorizerAppid}/{funcKey}", OAuthApi.start oauth
            "GET", "/wechat/oauth/authUserReceive/{componentAppid}/{funcKey}", OAuthApi.receive s oauth
            "GET", "/api/authorizers/{appid}/followers/{openid}", OAuthApi.follower s oauth
            "GET", "/api/authorizers/{appid}/jssdk-config", OAuthApi.jsSdkConfig s tickets
            "GET", "/api/verification-files", VerificationFileApi.listVerificationFiles s oauth
            "PUT", "/api/verification-files/{name}", VerificationFileApi.putVerificationFile s oauth
            "DELETE", "/api/verification-files/{name}", VerificationFileApi.deleteVerificationFile s oauth
        ]

    // Only names of the verification-file pattern: the root route must not take anyone else's paths.
    app.MapGet("/{name:regex(^[A-Za-z0-9_-]{{1,64}}\\.txt$)}", VerificationFileApi.serveVerificationFile oauth)
    |> ignore
    // Cash red packets
    let redPacks =
        app.ServiceProvider.GetRequiredService<RedPackService.RedPackService>()

    routes
        [
            "PUT", "/api/merchants/{mch_id}", RedPackApi.putMerchant s redPacks
            "GET", "/api/merchants", RedPackApi.listMerchants s redPacks
            "GET", "/api/merchants/{mch_id}", RedPackApi.getMerchant s redPacks
            "POST", "/api/redpacks", RedPackApi.sendRedPack s redPacks
            "GET", "/api/redpacks", RedPackApi.listRedPacks s redPacks
            "GET", "/api/redpacks/{id}", RedPackApi.getRedPack s redPacks
        ]
    // Hardening: compare-then-invalidate of an authorizer token WeChat refused.
    app.MapPost(
        "/api/authorizers/{appid}/access-token/invalidate",
        AuthorizerTokenApi.invalidateAuthorizerToken s authorizers
    )
    |> ignore
    // mini programs: the template library, deployments, and code management per account
    let code =
        app.ServiceProvider.GetService(typeof<CodeManagement.CodeClient>) :?> CodeManagement.CodeClient

    app.MapGet("/api/miniprogram/drafts", MiniProgramApi.drafts s code) |> ignore

    app.MapGet("/api/miniprogram/templates", MiniProgramApi.templates s code)
    |> ignore

    app.MapPost("/api/miniprogram/templates", MiniProgramApi.addTemplate s code)
    |> ignore

    app.MapDelete("/api/miniprogram/templates/{template_id}", MiniProgramApi.deleteTemplate s code)
    |> ignore

    app.MapPost("/api/miniprogram/deployments", MiniProgramApi.createDeployment s deployments)
    |> ignore

    app.MapGet("/api/miniprogram/deployments", MiniProgramApi.listDeployments s deployments)
    |> ignore

    app.MapGet("/api/miniprogram/deployments/{id}", MiniProgramApi.getDeployment s deployments)
    |> ignore

    let control (verb: string) (act: MiniPrograms.DeploymentId -> #Task) =
        app.MapPost(
            $"/api/miniprogram/deployments/{{id}}/{verb}",
            MiniProgramApi.control s deployments (fun id -> act id :> Task)
        )
        |> ignore

    control "pause" deployments.Pause
    control "resume" deployments.Resume
    control "cancel" deployments.Cancel
    control "retry-failed" deployments.RetryFailed
    control "release" deployments.Release

    app.MapGet("/api/miniprogram/deployments/{id}/events", MiniProgramApi.events s deployments)
    |> ignore

    let account (path: string) =
        "/api/authorizers/{appid}/miniprogram/" + path

    routes
        [
            "POST", account "commit", MiniProgramAccountApi.commit s code
            "POST", account "submit-audit", MiniProgramAccountApi.submitAudit s code
            "POST", account "release", MiniProgramAccountApi.release s code
            "POST", account "revert", MiniProgramAccountApi.revert s code
            "GET", account "audit-status", MiniProgramAccountApi.auditStatus s code
            "GET", account "versions", MiniProgramAccountApi.versions s code
            "POST", account "domains", MiniProgramAccountApi.domains s code
        ]

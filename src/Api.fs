/// The HTTP edge: every endpoint, mapped with ASP.NET Core endpoint routing.
module WeChatFs.Api

open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open WeChatFs.Http
open WeChatFs.Authorizers

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

    // /healthz and /readyz, as ASP.NET Core health checks.
    Health.map app
    // WeChat-facing
    app.MapPost("/wechat/component/events", ComponentApi.componentEvents s handlers)
    |> ignore

    app.MapGet("/wechat/component/authorize", AuthorizerApi.authorizePage s authorizers)
    |> ignore

    app.MapGet("/wechat/component/authorized", AuthorizerApi.authorizedCallback s authorizers)
    |> ignore
    // internal API
    app.MapGet("/api/component/status", ComponentApi.componentStatus s) |> ignore

    app.MapGet("/api/component/access-token", ComponentApi.componentAccessToken s)
    |> ignore

    app.MapPost("/api/component/access-token/invalidate", ComponentApi.invalidateComponentToken s)
    |> ignore

    app.Map("/api/component/wechat/{**path}", ComponentApi.componentProxy s)
    |> ignore

    app.MapPost("/api/authorization-links", AuthorizerApi.authorizationLinks s authorizers)
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

    app.MapPost("/wechat/authorizers/{appid}/callback", MessageApi.callback s authorizers inbox)
    |> ignore

    app.MapGet("/wechat/authorizers/{appid}/callback", MessageApi.callbackCheck s)
    |> ignore

    app.MapGet("/api/deliveries", MessageApi.listDeliveries s) |> ignore
    app.MapGet("/api/deliveries/{id}", MessageApi.getDelivery s) |> ignore
    app.MapPost("/api/deliveries/{id}/retry", MessageApi.retryDelivery s) |> ignore

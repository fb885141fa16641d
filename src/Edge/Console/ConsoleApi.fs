/// The operator console at `/console` (`WeChatFs:Console:Enabled`, default on): sign-in and sign-out,
/// then one page per file. A new page is a new file with `nav` and `map`, listed once below.
module WeChatFs.ConsoleApi

open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.DependencyInjection
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

/// The pages in navigation order: (nav entry, mapper).
let pages: (NavItem * (ConsoleContext -> IEndpointRouteBuilder -> unit)) list =
    [
        ConsoleOverview.nav, ConsoleOverview.map
        ConsoleAuthorizers.nav, ConsoleAuthorizers.map
        ConsoleAuthorize.nav, ConsoleAuthorize.map
        ConsoleDeliveries.nav, ConsoleDeliveries.map
        ConsoleEvents.nav, ConsoleEvents.map
        ConsoleErrors.nav, ConsoleErrors.map
        ConsoleFuncKeys.nav, ConsoleFuncKeys.map
        ConsoleDeployments.nav, ConsoleDeployments.map
        ConsoleRedPacks.nav, ConsoleRedPacks.map
    ]

let map
    (app: IEndpointRouteBuilder)
    (s: Http.Services)
    (authorizers: Authorizers.AuthorizerService)
    (metrics: Metrics.GatewayMetrics)
    (operator: OperatorOptions)
    (masterKey: Secrets.MasterKey)
    =
    if operator.ConsoleEnabled then
        let c =
            {
                Services = s
                Authorizers = authorizers
                Metrics = metrics
                OAuth = app.ServiceProvider.GetRequiredService<OAuthFlow.OAuthService>()
                Deployments = app.ServiceProvider.GetService<Deployments.DeploymentService>() |> Option.ofObj
                RedPacks = app.ServiceProvider.GetRequiredService<RedPackService.RedPackService>()
                Operator = operator
                Key = Secrets.deriveKey masterKey "wechatfs/console-session"
                Nav = pages |> List.map fst
            }

        // The console is for people, not for the API document.
        let group = app.MapGroup("").ExcludeFromDescription()
        group.MapGet("/console/sign-in", signInPage c) |> ignore
        group.MapPost("/console/sign-in", signIn c) |> ignore
        group.MapPost("/console/sign-out", signOut c) |> ignore

        for _, mapPage in pages do
            mapPage c group

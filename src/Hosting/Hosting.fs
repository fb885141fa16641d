namespace WeChatFs

open System
open System.IO
open System.Net.Http
open System.Runtime.CompilerServices
open System.Security.Cryptography
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Logging
open OpenTelemetry.Metrics
open WeChatFs.Config
open WeChatFs.Settings

/// A configuration that cannot work: the start stops with every problem named, key and fix.
type WeChatFsConfigurationException internal (errors: ConfigError list) =
    inherit
        Exception(
            "WeChatFs configuration is invalid:\n"
            + (errors |> List.map (fun e -> "  " + describe e) |> String.concat "\n")
        )

    /// Each problem as `key: problem. Fix: fix`, as check-config prints it.
    member _.Errors: Collections.Generic.IReadOnlyList<string> =
        errors |> List.map describe |> Array.ofList :> _

module internal Startup =
    /// The master key: configured, or read from (or generated into) the data folder with a warning,
    /// because losing it means losing every sealed token.
    let masterKey (options: GatewayOptions) (logger: ILogger) =
        match options.MasterKey with
        | Some text ->
            match Secrets.MasterKey.ofBase64 text with
            | Ok k -> k
            | Error _ -> raise (WeChatFsConfigurationException [])
        | None ->
            let path = Path.Combine(options.DataFolder, "master.key")

            if File.Exists path then
                match Secrets.MasterKey.ofBase64 (File.ReadAllText path) with
                | Ok k -> k
                | Error _ ->
                    raise (
                        WeChatFsConfigurationException
                            [
                                {
                                    Key = "WeChatFs:Secrets:MasterKey"
                                    Problem = $"the generated key file {path} is damaged"
                                    Fix = "restore it from a backup, or set WeChatFs:Secrets:MasterKey"
                                }
                            ]
                    )
            else
                Directory.CreateDirectory options.DataFolder |> ignore
                let bytes = RandomNumberGenerator.GetBytes 32
                File.WriteAllText(path, Convert.ToBase64String bytes)

                if not (OperatingSystem.IsWindows()) then
                    File.SetUnixFileMode(path, UnixFileMode.UserRead ||| UnixFileMode.UserWrite)

                logger.LogWarning(
                    "WeChatFs:Secrets:MasterKey is not set; generated one into {Path}. Back it up, or set the key: without it the stored tokens cannot be read",
                    path
                )

                match Secrets.MasterKey.ofBytes bytes with
                | Ok k -> k
                | Error _ -> raise (InvalidOperationException "a generated master key must be 32 bytes")

    /// Every part of the configuration, with all problems at once so that one restart fixes them all.
    let loadAll (configuration: IConfiguration) =
        match load configuration, OAuthConfig.load configuration, loadOperator configuration with
        | Ok o, Ok oauth, Ok op -> Ok(o, oauth, op)
        | first, second, third ->
            let errorsOf =
                function
                | Ok _ -> []
                | Error errors -> errors

            Error(errorsOf first @ errorsOf second @ errorsOf third)

    /// Opens the store; its schema is brought up to date by StoreMigrator when the host starts.
    let openStore (options: GatewayOptions) (key: Secrets.MasterKey) =
        SqlStore.openStore (StorageProvider.name options.StorageProvider) options.ConnectionString (Secrets.Sealer key)

/// The log filters every host of the gateway needs; AddWeChatFs leaves the host's logging alone.
[<Extension; AbstractClass; Sealed>]
type WeChatFsLogging =
    /// <summary>Keeps secrets and floods out of the logs: request lines carry authorization codes in
    /// query strings, the HTTP client's lines carry tokens, the route matcher logs request paths (a
    /// wxTkId travels in one) at Debug, and the endpoint middleware writes two lines per request,
    /// which turns a flood of refused requests into a flood of log.</summary>
    [<Extension>]
    static member AddWeChatFsLogFilters(logging: ILoggingBuilder) : ILoggingBuilder =
        logging
            .AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning)
            .AddFilter("System.Net.Http.HttpClient", LogLevel.Warning)
            .AddFilter("Microsoft.AspNetCore.Routing", LogLevel.Information)
            .AddFilter("Microsoft.AspNetCore.Routing.EndpointMiddleware", LogLevel.Warning)

/// services.AddWeChatFs(configuration) and app.MapWeChatFs(), for F# and C# hosts alike.
[<Extension; AbstractClass; Sealed>]
type WeChatFsExtensions =
    /// <summary>Reads and validates the configuration (throws <see cref="WeChatFsConfigurationException"/>
    /// when it cannot work) and registers the store, the WeChat client, the token services
    /// (<see cref="IWeChatFsTokens"/>), the health checks and the store migration run at start.
    /// The host's logging configuration is left alone: call
    /// <see cref="WeChatFsLogging.AddWeChatFsLogFilters"/> on it, since request lines carry
    /// authorization codes.</summary>
    [<Extension>]
    static member AddWeChatFs(services: IServiceCollection, configuration: IConfiguration) =
        let options, oauthOptions, operator =
            match Startup.loadAll configuration with
            | Ok all -> all
            | Error errors -> raise (WeChatFsConfigurationException errors)

        services.AddSingleton options |> ignore
        services.TryAddSingleton<TimeProvider> TimeProvider.System

        services.AddSingleton<Secrets.MasterKey>(fun sp ->
            Startup.masterKey options (sp.GetRequiredService<ILoggerFactory>().CreateLogger "WeChatFs.Secrets"))
        |> ignore

        services.AddSingleton<Store.IStore>(fun sp ->
            Startup.openStore options (sp.GetRequiredService<Secrets.MasterKey>()))
        |> ignore

        services.AddSingleton operator |> ignore

        let meterName = Metrics.nextMeterName ()

        services.AddSingleton<Metrics.GatewayMetrics>(fun sp ->
            new Metrics.GatewayMetrics(
                sp.GetRequiredService<Diagnostics.Metrics.IMeterFactory>(),
                meterName,
                sp.GetRequiredService<TimeProvider>()
            ))
        |> ignore

        services
            .AddOpenTelemetry()
            .WithMetrics(fun metrics ->
                metrics
                    .AddMeter(meterName)
                    .AddPrometheusExporter(fun o -> o.ScrapeResponseCacheDurationMilliseconds <- 0)
                |> ignore)
        |> ignore

        OpenApiDoc.addServices services

        // First of the hosted services: the schema is ready before the others start.
        services.AddHostedService<StoreMigrator>() |> ignore

        services.AddSingleton<WeChatClient.Client>(fun sp ->
            // Our own HttpClient, not the factory's: its handler logs full URLs, and tokens live in them.
            // Every call is counted on its way (wechatfs_wechat_calls_total).
            let http =
                new HttpClient(
                    new Metrics.CallCounter(
                        sp.GetRequiredService<Metrics.GatewayMetrics>(),
                        new SocketsHttpHandler(PooledConnectionLifetime = TimeSpan.FromMinutes 5.)
                    )
                )

            http.Timeout <- TimeSpan.FromSeconds 15.
            WeChatClient.Client(http, options.ApiBaseUrl, options.ComponentAppId, options.AppSecret))
        |> ignore

        // Read by the handlers, and by the metrics: refusals and suppressed log lines per reason.
        services.AddSingleton<Refusals.RefusalLog>(fun sp ->
            Refusals.RefusalLog(
                sp.GetRequiredService<ILoggerFactory>().CreateLogger "WeChatFs.Refusals",
                options.Hardening.RefusalLogsPerMinute,
                sp.GetRequiredService<TimeProvider>()
            ))
        |> ignore

        services.AddSingleton<ComponentTokens.ComponentTokenService>() |> ignore
        services.AddHostedService<ComponentTokens.ComponentTokenRefresher>() |> ignore

        services.AddSingleton<Authorizers.AuthorizerService>(fun sp ->
            Authorizers.AuthorizerService(
                options,
                sp.GetRequiredService<Store.IStore>(),
                sp.GetRequiredService<WeChatClient.Client>(),
                sp.GetRequiredService<ComponentTokens.ComponentTokenService>(),
                sp.GetRequiredService<TimeProvider>(),
                Secrets.deriveKey (sp.GetRequiredService<Secrets.MasterKey>()) "wechatfs/authorization-state",
                sp.GetRequiredService<ILogger<Authorizers.AuthorizerService>>()
            ))
        |> ignore

        services.AddHostedService<AuthorizerRefresher.AuthorizerRefresher>() |> ignore
        services.AddSingleton<Inbox.InboxService>() |> ignore
        services.AddHostedService<Inbox.DeliveryWorker>() |> ignore
        // Web pages on behalf of accounts: OAuth with funcKey routes, JS-SDK, verification files.
        services.AddSingleton oauthOptions |> ignore

        services.AddSingleton<OAuthStore.IOAuthStore>(fun sp -> OAuthStore.over (sp.GetRequiredService<Store.IStore>()))
        |> ignore

        services.AddSingleton<OAuthFlow.OAuthService>() |> ignore
        services.AddSingleton<JsApiTickets.JsApiTicketService>() |> ignore
        services.AddHostedService<OAuthFlow.OAuthSeeder>() |> ignore
        services.AddSingleton<PayClient.Client>() |> ignore
        // A wx_tk_id recipient is resolved through the web OAuth tracking tokens.
        services.TryAddSingleton<RedPackService.ITrackingTokens, RedPackService.OAuthTrackingTokens>()
        services.AddSingleton<RedPackService.RedPackService>() |> ignore
        services.AddHostedService<RedPackService.RedPackWorker>() |> ignore

        services.AddSingleton<CodeManagement.CodeClient>(fun sp ->
            CodeManagement.CodeClient(
                sp.GetRequiredService<WeChatClient.Client>(),
                sp.GetRequiredService<Authorizers.AuthorizerService>(),
                sp.GetRequiredService<ComponentTokens.ComponentTokenService>()
            ))
        |> ignore

        services.AddSingleton<Deployments.DeploymentService>(fun sp ->
            let store = sp.GetRequiredService<Store.IStore>()

            Deployments.DeploymentService(
                options,
                store,
                DeploymentStore.ofStore store,
                sp.GetRequiredService<CodeManagement.CodeClient>(),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILogger<Deployments.DeploymentService>>()
            ))
        |> ignore

        services.AddHostedService<DeploymentWorker.DeploymentWorker>() |> ignore
        services.TryAddSingleton<IWeChatFsTokens, WeChatFsTokens>()

        services
            .AddHealthChecks()
            .AddCheck<Health.ReadinessCheck>(Health.ReadinessCheckName, Nullable(), [| Health.ReadyTag |])
        |> ignore

        services

    /// <summary>Maps the WeChat-facing endpoints, the internal API and the health endpoints, on one
    /// route group with no prefix (the URLs are the documented ones).</summary>
    /// <returns>The group, to attach conventions to, e.g. <c>.RequireHost(...)</c> or a rate limiter.</returns>
    [<Extension>]
    static member MapWeChatFs(app: IEndpointRouteBuilder) : IEndpointConventionBuilder =
        let group = app.MapGroup ""
        let sp = app.ServiceProvider

        let services: Http.Services =
            {
                Options = sp.GetRequiredService<GatewayOptions>()
                Store = sp.GetRequiredService<Store.IStore>()
                Client = sp.GetRequiredService<WeChatClient.Client>()
                Components = sp.GetRequiredService<ComponentTokens.ComponentTokenService>()
                Clock = sp.GetRequiredService<TimeProvider>()
                Logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger "WeChatFs.Api"
                Refusals = sp.GetRequiredService<Refusals.RefusalLog>()
            }

        Api.map
            group
            services
            (sp.GetRequiredService<Authorizers.AuthorizerService>())
            (sp.GetRequiredService<Inbox.InboxService>())

        MetricsApi.map
            group
            services
            (sp.GetRequiredService<Metrics.GatewayMetrics>())
            (sp.GetRequiredService<OperatorOptions>())

        OpenApiDoc.map app

        ConsoleApi.map
            group
            services
            (sp.GetRequiredService<Authorizers.AuthorizerService>())
            (sp.GetRequiredService<Metrics.GatewayMetrics>())
            (sp.GetRequiredService<OperatorOptions>())
            (sp.GetRequiredService<Secrets.MasterKey>())

        group

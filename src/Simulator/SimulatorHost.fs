/// The simulator as a running server: WeChat's API and pages on one base URL, the ticket pusher in
/// the background, and a control API under /sim/ for tests and the demo.
module WeChatFs.Simulator.SimulatorHost

open System
open System.Net
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Hosting.Server
open Microsoft.AspNetCore.Hosting.Server.Features
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimApi
open WeChatFs.Simulator.SimComponentApi

let private home (state: SimState) =
    handler (fun ctx ->
        let rows =
            catalog
            |> List.map (fun a ->
                let status =
                    match state.Authorization a.AppId with
                    | Some au when au.Authorized -> "authorized"
                    | Some _ -> "revoked"
                    | None -> "—"

                $"<tr><td>{WebUtility.HtmlEncode a.NickName}</td><td><code>{a.AppId}</code></td><td>{a.UserName}</td><td>{status}</td></tr>")
            |> String.concat ""

        ctx.Response.ContentType <- "text/html; charset=utf-8"

        ctx.Response.WriteAsync(
            $"""<!doctype html><html><head><meta charset="utf-8"><title>WeChatFs simulator</title><style>body{{font-family:system-ui,sans-serif;max-width:56rem;margin:2rem auto}} td,th{{padding:.2rem .6rem;text-align:left}}</style></head><body>
<h1>WeChatFs simulator</h1><p>A stand-in for WeChat's servers (API, authorization pages, pushes) for tests and the demo. Component appid <code>{state.Options.ComponentAppId}</code>.</p>
<h2>Simulated accounts</h2><table><tr><th>name</th><th>appid</th><th>user name</th><th>status</th></tr>{rows}</table>
<p>Control: <a href="/sim/calls">/sim/calls</a> · <a href="/sim/pushes">/sim/pushes</a> · <a href="/sim/authorizers">/sim/authorizers</a> · <a href="/sim/custom-messages">/sim/custom-messages</a></p></body></html>"""
        ))

let map (app: IEndpointRouteBuilder) (state: SimState) =
    let componentApi (path: string) name serve =
        app.MapPost("/cgi-bin/component/" + path, api state name serve) |> ignore

    componentApi "api_component_token" "api_component_token" (componentToken state)
    componentApi "api_start_push_ticket" "api_start_push_ticket" (startPushTicket state)
    componentApi "api_create_preauthcode" "api_create_preauthcode" (createPreAuthCode state)
    componentApi "api_query_auth" "api_query_auth" (queryAuth state)
    componentApi "api_authorizer_token" "api_authorizer_token" (authorizerToken state)
    componentApi "api_get_authorizer_info" "api_get_authorizer_info" (authorizerInfo state)
    componentApi "api_get_authorizer_list" "api_get_authorizer_list" (authorizerList state)
    componentApi "fastregisterweapp" "fastregisterweapp" (fastRegisterWeapp state)

    app.MapPost("/cgi-bin/message/custom/send", api state "custom_send" (customSend state))
    |> ignore

    app.MapGet("/cgi-bin/ticket/getticket", api state "getticket" (getTicket state))
    |> ignore

    app.MapGet("/cgi-bin/componentloginpage", AuthPage.show state) |> ignore
    app.MapGet("/safe/bindcomponent", AuthPage.show state) |> ignore
    app.MapPost("/sim/authorize/confirm", AuthPage.confirmForm state) |> ignore
    app.MapGet("/", home state) |> ignore
    SimControl.map app state
    // Web OAuth on behalf of an official account (facts §7): the open host's page and the sns APIs.
    let oauth = SimOAuth.SimOAuthState state

    app.MapGet("/connect/oauth2/authorize", SimOAuth.authorize state oauth)
    |> ignore

    app.MapPost("/sim/oauth/confirm", SimOAuth.confirm state oauth) |> ignore
    app.MapGet("/sim/oauth/followers", SimOAuth.followerList state) |> ignore
    app.MapGet("/sim/business-page", SimOAuth.businessPage) |> ignore

    app.MapGet(
        "/sns/oauth2/component/access_token",
        api state "sns_component_access_token" (SimOAuth.exchange state oauth)
    )
    |> ignore

    app.MapGet(
        "/sns/oauth2/component/refresh_token",
        api state "sns_component_refresh_token" (SimOAuth.refresh state oauth)
    )
    |> ignore

    app.MapGet("/sns/userinfo", api state "sns_userinfo" (SimOAuth.userInfo state oauth))
    |> ignore

    SimCodeApi.map app state |> SimCodeControl.map app state

/// Pushes a ticket now and then every TicketInterval (facts §1.1), while a URL is configured.
let private runPusher (state: SimState) (stopping: CancellationToken) =
    task {
        try
            do! Task.Delay(TimeSpan.FromMilliseconds 200., stopping)

            while not stopping.IsCancellationRequested do
                try
                    let! _ = Pusher.pushTicket state
                    ()
                with _ ->
                    ()

                do! Task.Delay(state.Options.TicketInterval, stopping)
        with :? OperationCanceledException ->
            ()
    }

type RunningSimulator
    (
        app: WebApplication,
        state: SimState,
        stopping: CancellationTokenSource,
        pusher: Task,
        pay: SimPay.SimPay,
        payApp: WebApplication,
        payUrl: string,
        caFile: string
    ) =
    member _.BaseUrl =
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>().Addresses
        |> Seq.head

    member _.State = state
    /// The simulated WeChat Pay (HTTPS, client certificates from the test CA).
    member _.Pay = pay
    member _.PayBaseUrl = payUrl
    /// The test CA as a PEM file: what `WeChatFs:WeChat:PayServerCaCertificate` points at.
    member _.PayCaFile = caFile
    member _.SetEventUrl(url: string option) = state.SetEventUrl url
    member _.SetMessageUrlTemplate(url: string option) = state.SetMessageUrlTemplate url

    member _.StopAsync() =
        task {
            stopping.Cancel()
            do! pusher
            do! app.StopAsync()
            do! app.DisposeAsync()
            do! payApp.StopAsync()
            do! payApp.DisposeAsync()

            try
                IO.Directory.Delete(IO.Path.GetDirectoryName caFile, true)
            with _ ->
                ()
        }

    interface IAsyncDisposable with
        member this.DisposeAsync() = ValueTask(this.StopAsync() :> Task)

/// Starts the simulator on `url` ("http://127.0.0.1:0" for a free port).
let start (options: SimulatorOptions) (url: string) =
    task {
        // No configuration reload watcher: it would watch the working folder recursively, where the
        // demo keeps its store, and wake on every write.
        let builder =
            WebApplication.CreateBuilder [| "--hostBuilder:reloadConfigOnChange=false" |]

        builder.WebHost.UseUrls(url) |> ignore
        builder.Logging.ClearProviders() |> ignore
        let app = builder.Build()
        let state = SimState(options)
        map app state
        let pay = SimPay.SimPay(SimPayCerts.Authority(), state)
        let! payApp, payUrl = SimPayApi.start pay

        let caFolder =
            IO.Path.Combine(IO.Path.GetTempPath(), $"wechatfs-sim-pay-{Guid.NewGuid():N}")

        IO.Directory.CreateDirectory caFolder |> ignore
        let caFile = IO.Path.Combine(caFolder, "pay-ca.pem")
        IO.File.WriteAllText(caFile, pay.CaPem)
        SimPayControl.mapControl app pay (fun () -> payUrl) (fun () -> caFile)
        do! app.StartAsync()
        let stopping = new CancellationTokenSource()

        let pusher =
            if options.AutoPushTickets then
                runPusher state stopping.Token :> Task
            else
                Task.CompletedTask

        return new RunningSimulator(app, state, stopping, pusher, pay, payApp, payUrl, caFile)
    }

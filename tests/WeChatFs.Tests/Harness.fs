/// Real gateways and a real simulator on loopback, for the integration tests: every call below goes
/// over HTTP, as WeChat and the business systems would make it. (Reading answers, polling and the
/// webhook receiver are in HarnessHttp.)
module WeChatFs.Tests.Harness

open System
open System.Collections.Concurrent
open System.IO
open System.Net
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Hosting.Server
open Microsoft.AspNetCore.Hosting.Server.Features
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Expecto
open WeChatFs
open WeChatFs.Simulator
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimulatorHost

let componentAppId = "wxsimcomponent0001"
let appSecret = "sim-app-secret-0001"
let token = "sim_token"
/// The facts' test key (bytes 0x00..0x1f).
let encodingAesKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
let adminKey = "test-admin-key"

/// A clock the tests can move forward; timers still run on real time.
type OffsetClock() =
    inherit TimeProvider()
    member val Offset = TimeSpan.Zero with get, set
    override this.GetUtcNow() = DateTimeOffset.UtcNow + this.Offset

/// Every log line a gateway wrote, to look for secrets in.
type CapturedLogs() =
    let lines = ConcurrentQueue<string>()
    member _.Add(line: string) = lines.Enqueue line
    member _.All = lines |> List.ofSeq

    interface ILoggerProvider with
        member this.CreateLogger(category) =
            { new ILogger with
                member _.BeginScope _ = null
                member _.IsEnabled _ = true

                member _.Log(level, _, state, ex, formatter) =
                    let text = formatter.Invoke(state, ex)
                    let exText = if isNull ex then "" else " " + ex.ToString()
                    this.Add $"{level} {category}: {text}{exText}"
            }

        member _.Dispose() = ()

type Gateway =
    {
        App: WebApplication
        BaseUrl: string
        Api: HttpClient
        Logs: CapturedLogs
        Clock: OffsetClock
        DataFolder: string
    }

    member this.Url(path: string) = this.BaseUrl + path

    member this.StopAsync() =
        task {
            do! this.App.StopAsync()
            do! this.App.DisposeAsync()
        }

    interface IAsyncDisposable with
        member this.DisposeAsync() = ValueTask(this.StopAsync() :> Task)

let newDataFolder () =
    let dir = Path.Combine(Path.GetTempPath(), $"wechatfs-test-{Guid.NewGuid():N}")
    Directory.CreateDirectory dir |> ignore
    dir

/// Starts a gateway on a free loopback port against the simulator at `simUrl`.
let startGatewayWith (simUrl: string) (dataFolder: string) (clock: OffsetClock) (extra: (string * string) list) =
    task {
        let builder = WebApplication.CreateBuilder()
        // A port known before start, so PublicBaseUrl (and the redirect_uri built from it) is right.
        let ownUrl = $"http://127.0.0.1:{Helpers.freePort ()}"
        builder.WebHost.UseUrls(ownUrl) |> ignore
        let logs = new CapturedLogs()

        builder.Logging.ClearProviders().AddProvider(logs).SetMinimumLevel(LogLevel.Debug)
        |> ignore

        // As every host must (AddWeChatFs leaves logging alone): request lines carry auth codes.
        builder.Logging.AddWeChatFsLogFilters() |> ignore

        let settings =
            [
                "WeChatFs:Component:AppId", componentAppId
                "WeChatFs:Component:AppSecret", appSecret
                "WeChatFs:Component:Token", token
                "WeChatFs:Component:EncodingAesKey", encodingAesKey
                "WeChatFs:Component:CheckInterval", "00:00:00.200"
                "WeChatFs:WeChat:ApiBaseUrl", simUrl
                "WeChatFs:WeChat:MpBaseUrl", simUrl
                "WeChatFs:WeChat:OpenBaseUrl", simUrl
                "WeChatFs:Storage:ConnectionString", "Data Source=" + Path.Combine(dataFolder, "wechatfs.db")
                "WeChatFs:Storage:RefreshLease", "00:00:02"
                "WeChatFs:Admin:ApiKey", adminKey
                "WeChatFs:PublicBaseUrl", ownUrl
            ]
            @ extra
            // Later entries (the test's own) win.
            |> List.fold (fun (m: Map<string, string>) (k, v) -> m.Add(k, v)) Map.empty
            |> Map.toList

        builder.Configuration.AddInMemoryCollection(
            settings |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v))
        )
        |> ignore

        builder.Services.AddSingleton<TimeProvider>(clock) |> ignore
        builder.Services.AddWeChatFs(builder.Configuration) |> ignore
        let app = builder.Build()
        app.MapWeChatFs() |> ignore
        do! app.StartAsync()
        let baseUrl = addressOf app
        let api = new HttpClient(BaseAddress = Uri baseUrl)
        api.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)

        return
            {
                App = app
                BaseUrl = baseUrl
                Api = api
                Logs = logs
                Clock = clock
                DataFolder = dataFolder
            }
    }

let simulatorOptions () =
    { SimulatorOptions.defaults with
        ComponentAppId = componentAppId
        ComponentAppSecret = appSecret
        Token = token
        EncodingAesKey = encodingAesKey
        EventUrl = None
        // Tests push tickets themselves, so every push is deliberate.
        TicketInterval = TimeSpan.FromHours 1.
        AutoPushTickets = false
    }

/// A simulator and a gateway wired to each other, the way the demo wires them.
type Pair =
    {
        Sim: RunningSimulator
        mutable Gateway: Gateway
        Http: HttpClient
    }

    member this.SimUrl(path: string) = this.Sim.BaseUrl.TrimEnd('/') + path

    /// Stops the gateway and starts a new one on the same store: a restart.
    member this.RestartGateway(?extra: (string * string) list) =
        task {
            do! this.Gateway.StopAsync()

            let! g =
                startGatewayWith this.Sim.BaseUrl this.Gateway.DataFolder this.Gateway.Clock (defaultArg extra [])

            this.Sim.SetEventUrl(Some(g.Url "/wechat/component/events"))
            this.Gateway <- g
            return g
        }

    interface IAsyncDisposable with
        member this.DisposeAsync() =
            ValueTask(
                task {
                    do! this.Gateway.StopAsync()
                    do! (this.Sim :> IAsyncDisposable).DisposeAsync()

                    // The store is closed by now; its folder goes with the pair, or every run of the
                    // suite would leave dozens behind.
                    try
                        Directory.Delete(this.Gateway.DataFolder, true)
                    with _ ->
                        ()
                }
                :> Task
            )

/// `prepare` runs on the simulator before the gateway starts (e.g. to inject a fault into start-up).
let startPairPrepared (simOptions: SimulatorOptions) (extra: (string * string) list) (prepare: SimState -> unit) =
    task {
        let! sim = SimulatorHost.start simOptions "http://127.0.0.1:0"
        prepare sim.State
        let! gateway = startGatewayWith sim.BaseUrl (newDataFolder ()) (OffsetClock()) extra
        sim.SetEventUrl(Some(gateway.Url "/wechat/component/events"))
        sim.SetMessageUrlTemplate(Some(gateway.Url "/wechat/authorizers/$APPID$/callback"))

        return
            {
                Sim = sim
                Gateway = gateway
                Http = new HttpClient(new HttpClientHandler(AllowAutoRedirect = false))
            }
    }

let startPairWith simOptions extra =
    startPairPrepared simOptions extra ignore

let startPair () = startPairWith (simulatorOptions ()) []

/// WeChat is busy when the gateway asks it to start pushing tickets: no ticket arrives by itself.
let startPairWithoutTicketPush () =
    startPairPrepared (simulatorOptions ()) [] (fun sim ->
        sim.InjectFault(
            "api_start_push_ticket",
            {
                Errcode = Some -1
                HttpStatus = None
                LatencyMs = 0
            },
            1
        ))

/// The simulator's call counter for one API.
let calls (pair: Pair) (api: string) =
    task {
        let! response = pair.Http.GetAsync(pair.SimUrl "/sim/calls")
        let! root = json response

        match root.TryGetProperty api with
        | true, v -> return v.GetInt32()
        | _ -> return 0
    }

let pushTicket (pair: Pair) =
    task {
        let! response = pair.Http.PostAsync(pair.SimUrl "/sim/push-ticket", null)
        response.EnsureSuccessStatusCode() |> ignore
        return! json response
    }

let inject (pair: Pair) (fault: obj) =
    task {
        let! response = postJson pair.Http (pair.SimUrl "/sim/faults") fault
        response.EnsureSuccessStatusCode() |> ignore
    }

let componentToken (pair: Pair) =
    task {
        let! response = pair.Gateway.Api.GetAsync "/api/component/access-token"

        return
            response.StatusCode,
            (if response.IsSuccessStatusCode then
                 (json response).Result |> Some
             else
                 None)
    }

// ---- gateways as separate processes ------------------------------------------------------------

/// The built `wechatfs` executable next to this test build (same configuration).
let hostDll () =
    let baseDir =
        DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar))

    let configuration = baseDir.Parent.Name
    let mutable dir = baseDir

    while not (isNull dir)
          && not (File.Exists(Path.Combine(dir.FullName, "WeChatFs.sln"))) do
        dir <- dir.Parent

    if isNull dir then
        failwith "WeChatFs.sln not found above the test build"

    Path.Combine(dir.FullName, "src", "Host.CSharp", "bin", configuration, "net10.0", "wechatfs.dll")

type GatewayProcess =
    {
        Process: Diagnostics.Process
        BaseUrl: string
        Api: HttpClient
        Output: ConcurrentQueue<string>
    }

    member this.Url(path: string) = this.BaseUrl + path

    interface IDisposable with
        member this.Dispose() =
            try
                this.Process.Kill true
                this.Process.WaitForExit 5000 |> ignore
            with _ ->
                ()

            this.Process.Dispose()

/// `wechatfs serve` in its own process, configured through the environment as an operator would.
let startGatewayProcess (settings: (string * string) list) =
    task {
        let url = $"http://127.0.0.1:{Helpers.freePort ()}"

        let psi =
            Diagnostics.ProcessStartInfo("dotnet", [ hostDll (); "serve"; "--urls"; url ])

        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        psi.UseShellExecute <- false

        for k, v in ("WeChatFs:PublicBaseUrl", url) :: settings do
            psi.Environment[k.Replace(":", "__")] <- v

        let p = Diagnostics.Process.Start psi
        let output = ConcurrentQueue<string>()

        p.OutputDataReceived.Add(fun e ->
            if not (isNull e.Data) then
                output.Enqueue e.Data)

        p.ErrorDataReceived.Add(fun e ->
            if not (isNull e.Data) then
                output.Enqueue e.Data)

        p.BeginOutputReadLine()
        p.BeginErrorReadLine()
        let api = new HttpClient(BaseAddress = Uri url)
        api.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)

        let! up =
            eventually (TimeSpan.FromSeconds 30.) (fun () ->
                task {
                    try
                        let! r = api.GetAsync "/healthz"
                        return r.IsSuccessStatusCode
                    with _ ->
                        return p.HasExited
                })

        if not up || p.HasExited then
            failwith $"""gateway process did not start: {String.Join("\n", output)}"""

        return
            {
                Process = p
                BaseUrl = url
                Api = api
                Output = output
            }
    }

/// One message from the simulated WeChat; the gateway's answer as the simulator saw it.
let sendMessage (pair: Pair) (appid: string) (msgType: string) (fields: (string * string) list) =
    task {
        let! r =
            postJson
                pair.Http
                (pair.SimUrl "/sim/messages")
                {|
                    appid = appid
                    msg_type = msgType
                    fields = dict fields
                |}

        let! root = json r
        Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
        return root
    }

/// A merchant confirms `appid` on (simulated) WeChat's page for a link the business system made at
/// `api` for `tenant`: the simulator's answer (the redirect back to the platform, not yet opened,
/// and the auth_code) and the link's redirect_uri.
let confirmOnSimulator (http: HttpClient) (simUrl: string) (api: HttpClient) (tenant: string) (appid: string) =
    task {
        let! links = postJson api "/api/authorization-links" {| tenant = tenant |}
        Expect.equal links.StatusCode HttpStatusCode.OK "links.StatusCode"
        let! root = json links

        let query =
            Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(Uri(str root "pc_url").Query)

        let redirectUri = string query["redirect_uri"]

        let! confirmed =
            postJson
                http
                (simUrl + "/sim/authorize")
                {|
                    pre_auth_code = string query["pre_auth_code"]
                    redirect_uri = redirectUri
                    appid = appid
                |}

        let! answer = json confirmed
        Expect.equal confirmed.StatusCode HttpStatusCode.OK "confirmed.StatusCode"
        return answer, redirectUri
    }

/// The servers the benchmarks measure: the ceiling (the same server stack answering with no work),
/// the gateway hosted in-process on a store of the benchmark's choosing, and one account authorized
/// the way a merchant does it.
module WeChatFs.Bench.Gateways

open System
open System.IO
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open WeChatFs
open WeChatFs.Store
open WeChatFs.Simulator
open WeChatFs.Simulator.SimState
open WeChatFs.Tests

let adminKey = "bench-admin-key"

/// A run writes hundreds of megabytes of inbox; none of it is kept.
let removeFolder (folder: string) =
    try
        Directory.Delete(folder, true)
    with _ ->
        ()

let private url () =
    $"http://127.0.0.1:{PostgresCluster.freePort ()}"

/// The ceiling: the same server stack answering with no work at all.
let startBare () =
    task {
        let address = url ()
        // As the wechatfs host: no configuration reload watcher (see Gateway.cs).
        let builder =
            WebApplication.CreateBuilder [| "--hostBuilder:reloadConfigOnChange=false" |]

        builder.WebHost.UseUrls(address) |> ignore
        builder.Logging.ClearProviders() |> ignore
        let app = builder.Build()

        app.MapGet("/bare", RequestDelegate(fun ctx -> ctx.Response.WriteAsync "success"))
        |> ignore

        app.MapPost(
            "/bare",
            RequestDelegate(fun ctx ->
                task {
                    use reader = new StreamReader(ctx.Request.Body)
                    let! _ = reader.ReadToEndAsync()
                    do! ctx.Response.WriteAsync "success"
                })
        )
        |> ignore

        do! app.StartAsync()
        return app, address
    }

let startGateway
    (sim: SimulatorHost.RunningSimulator)
    (provider: string)
    (connectionString: string)
    (dataFolder: string)
    =
    task {
        let address = url ()
        // As the wechatfs host: no configuration reload watcher (see Gateway.cs).
        let builder =
            WebApplication.CreateBuilder [| "--hostBuilder:reloadConfigOnChange=false" |]

        builder.WebHost.UseUrls(address) |> ignore
        builder.Logging.ClearProviders() |> ignore
        let o = sim.State.Options

        builder.Configuration.AddInMemoryCollection(
            [
                "WeChatFs:Component:AppId", o.ComponentAppId
                "WeChatFs:Component:AppSecret", o.ComponentAppSecret
                "WeChatFs:Component:Token", o.Token
                "WeChatFs:Component:EncodingAesKey", o.EncodingAesKey
                "WeChatFs:WeChat:ApiBaseUrl", sim.BaseUrl
                "WeChatFs:WeChat:MpBaseUrl", sim.BaseUrl
                "WeChatFs:PublicBaseUrl", address
                "WeChatFs:Storage:Provider", provider
                "WeChatFs:Storage:ConnectionString", connectionString
                "WeChatFs:Storage:DataFolder", dataFolder
                "WeChatFs:Admin:ApiKey", adminKey
            ]
            |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v))
        )
        |> ignore

        builder.Services.AddWeChatFs(builder.Configuration) |> ignore
        let app = builder.Build()
        app.MapWeChatFs() |> ignore
        do! app.StartAsync()
        sim.SetEventUrl(Some(address + "/wechat/component/events"))
        return app, address
    }

let private json = BenchHttp.json

let totalCalls (http: HttpClient) (sim: SimulatorHost.RunningSimulator) =
    task {
        let! r = http.GetAsync(sim.BaseUrl + "/sim/calls")
        let! root = json r
        return root.EnumerateObject() |> Seq.sumBy (fun p -> p.Value.GetInt32())
    }

/// A ticket, a component token and one authorized account, as in production.
let prepare (http: HttpClient) (sim: SimulatorHost.RunningSimulator) (gateway: string) (appid: string) =
    task {
        let! _ = http.PostAsync(sim.BaseUrl + "/sim/push-ticket", null)
        use api = new HttpClient(BaseAddress = Uri gateway)
        api.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)

        let post = BenchHttp.post
        let! links = post api "/api/authorization-links" {| tenant = "bench" |}
        let! root = json links

        let q =
            Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(Uri(root.GetProperty("pc_url").GetString()).Query)

        let! confirmed =
            post
                http
                (sim.BaseUrl + "/sim/authorize")
                {|
                    pre_auth_code = string q["pre_auth_code"]
                    redirect_uri = string q["redirect_uri"]
                    appid = appid
                |}

        let! c = json confirmed
        let! back = http.GetAsync(c.GetProperty("redirect").GetString())

        if not back.IsSuccessStatusCode then
            failwith "authorization did not complete"
    }

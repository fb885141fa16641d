/// `--only scale`, the accounts: a simulator holding N authorized accounts, imported by a real
/// `wechatfs serve` through api_get_authorizer_list, every token fetched by the gateway's own
/// scheduler; then a restart on that store (start to ready, resident memory), token reads of one
/// account and of all of them, and how the next round of refreshes is spread. The messages are in
/// ScaleMessages.fs.
module WeChatFs.Bench.Scale

open System
open System.Diagnostics
open System.IO
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.Extensions.DependencyInjection
open WeChatFs
open WeChatFs.Store
open WeChatFs.Simulator
open WeChatFs.Simulator.SimState
open WeChatFs.Tests

let private json = BenchHttp.json
let private post = BenchHttp.post

/// The production executable, built by `build.fsx bench` before the benchmark starts.
let private hostDll =
    Path.Combine(BenchHttp.repositoryRoot.Value, "src", "Host.CSharp", "bin", "Release", "net10.0", "wechatfs.dll")

/// Resident memory now and at its peak, in MB, from the kernel's view of the process.
let private residentMb (pid: int) =
    let lines = File.ReadAllLines $"/proc/{pid}/status"

    let field (name: string) =
        lines
        |> Array.tryFind (fun l -> l.StartsWith(name + ":"))
        |> Option.map (fun l -> float (l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.)
        |> Option.defaultValue nan

    field "VmRSS", field "VmHWM"

/// `wechatfs serve` as operators run it, on the given store, against the simulator.
type private Gateway(sim: SimulatorHost.RunningSimulator, adminKey: string, store: string list) =
    let url = $"http://127.0.0.1:{PostgresCluster.freePort ()}"
    let o = sim.State.Options

    let args =
        [
            hostDll
            "serve"
            "--urls"
            url
            $"--WeChatFs:Component:AppId={o.ComponentAppId}"
            $"--WeChatFs:Component:AppSecret={o.ComponentAppSecret}"
            $"--WeChatFs:Component:Token={o.Token}"
            $"--WeChatFs:Component:EncodingAesKey={o.EncodingAesKey}"
            $"--WeChatFs:PublicBaseUrl={url}"
            $"--WeChatFs:WeChat:ApiBaseUrl={sim.BaseUrl}"
            $"--WeChatFs:WeChat:MpBaseUrl={sim.BaseUrl}"
            $"--WeChatFs:WeChat:OpenBaseUrl={sim.BaseUrl}"
            $"--WeChatFs:Admin:ApiKey={adminKey}"
            "--Logging:LogLevel:Default=Warning"
            // The refresher's lines, for the preload's (how many tokens, how long).
            "--Logging:LogLevel:WeChatFs.AuthorizerRefresher=Information"
        ]
        @ store

    let started = Stopwatch.StartNew()

    let proc =
        let psi = ProcessStartInfo("dotnet", args)
        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        let p = Process.Start psi
        // Drained, so a chatty gateway never blocks on a full pipe; the preload's line is shown.
        p.OutputDataReceived.Add(fun e ->
            if not (isNull e.Data) && e.Data.Contains "loaded into memory" then
                // A JSON line in production's format: its message alone.
                let message =
                    try
                        use line = Text.Json.JsonDocument.Parse e.Data
                        line.RootElement.GetProperty("Message").GetString()
                    with _ ->
                        e.Data.Trim()

                printfn "  gateway: %s" message)

        p.ErrorDataReceived.Add ignore
        p.BeginOutputReadLine()
        p.BeginErrorReadLine()
        p

    member _.Url = url
    member _.Pid = proc.Id

    /// Seconds from the process's start until `path` answers 200.
    member _.WaitFor(http: HttpClient, path: string) =
        task {
            let mutable ready = false

            while not ready do
                if proc.HasExited then
                    failwith $"the gateway exited with {proc.ExitCode}"

                try
                    use! r = http.GetAsync(url + path)
                    ready <- r.IsSuccessStatusCode
                with _ ->
                    ()

                if not ready then
                    do! Task.Delay 20

            return started.Elapsed.TotalSeconds
        }

    /// SIGTERM, as a service manager stops it, and its end awaited.
    member _.Stop() =
        use kill = Process.Start("kill", [ "-TERM"; string proc.Id ])
        kill.WaitForExit()

        if not (proc.WaitForExit(TimeSpan.FromSeconds 60.)) then
            proc.Kill true

let private callsOf (http: HttpClient) (sim: SimulatorHost.RunningSimulator) (name: string) =
    task {
        let! r = http.GetAsync(sim.BaseUrl + "/sim/calls")
        let! root = json r

        match root.TryGetProperty name with
        | true, v -> return v.GetInt32()
        | _ -> return 0
    }

/// One size of the accounts benchmark; prints its lines.
let private accountsAt
    (adminKey: string)
    (provider: string)
    (newStore: unit -> string list * (unit -> unit))
    (connections: int)
    (duration: TimeSpan)
    (n: int)
    =
    task {
        let! sim = BenchHttp.startSimulator ()

        use http = new HttpClient(Timeout = TimeSpan.FromMinutes 30.)
        let! added = post http (sim.BaseUrl + "/sim/miniprograms") {| count = n |}
        let! addedJson = json added

        let appids =
            [| for a in addedJson.GetProperty("appids").EnumerateArray() -> a.GetString() |]

        let store, cleanup = newStore ()
        let first = Gateway(sim, adminKey, store)

        use api = new HttpClient(Timeout = TimeSpan.FromMinutes 30.)
        api.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)
        let! _ = first.WaitFor(http, "/healthz")
        sim.SetEventUrl(Some(first.Url + "/wechat/component/events"))
        let! _ = http.PostAsync(sim.BaseUrl + "/sim/push-ticket", null)
        let! _ = first.WaitFor(api, "/api/component/access-token")

        // The import, as after a lost store: every account and refresh token from WeChat's list.
        let importing = Stopwatch.StartNew()
        let! synced = api.PostAsync(first.Url + "/api/authorizers/sync", null)
        synced.EnsureSuccessStatusCode() |> ignore
        importing.Stop()

        // Every account's first token, fetched by the gateway's own scheduler.
        let filling = Stopwatch.StartNew()
        let mutable fetched = 0

        while fetched < n && filling.Elapsed < TimeSpan.FromMinutes 20. do
            do! Task.Delay 250
            let! c = callsOf http sim "api_authorizer_token"
            fetched <- c

        filling.Stop()
        first.Stop()

        // A restart on the grown store: start to ready, and memory.
        let gateway = Gateway(sim, adminKey, store)
        let! readyAfter = gateway.WaitFor(http, "/readyz")
        let rssReady, _ = residentMb gateway.Pid

        let tokenPath appid =
            $"{gateway.Url}/api/authorizers/{appid}/access-token"

        let! callsBefore = callsOf http sim "api_authorizer_token"

        let read (path: int -> string) (client: HttpClient) (i: int) =
            task {
                use request = new HttpRequestMessage(HttpMethod.Get, path i)
                request.Headers.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)
                use! response = client.SendAsync request
                let! _ = response.Content.ReadAsByteArrayAsync()
                return response.IsSuccessStatusCode
            }

        let warm = TimeSpan.FromSeconds 2.

        let! one =
            Load.run
                $"token read, one of {n} accounts, {provider}"
                connections
                warm
                duration
                (read (fun _ -> tokenPath appids[0]))

        let! spread =
            Load.run
                $"token read, all {n} accounts, {provider}"
                connections
                warm
                duration
                (read (fun _ -> tokenPath appids[Random.Shared.Next appids.Length]))

        let! callsAfter = callsOf http sim "api_authorizer_token"
        let rssNow, rssPeak = residentMb gateway.Pid

        // The next round of refreshes, from each token's expiry and the gateway's own due rule
        // (the margin and the per-account jitter, both at their defaults): how many fall in each
        // minute, against the mean over the minutes they span.
        let margin = TimeSpan.FromMinutes 10.
        let jitter = TimeSpan.FromMinutes 2.
        let due = ResizeArray<DateTimeOffset>()
        let mutable offset = 0
        let mutable more = true

        while more do
            let! page = api.GetAsync $"{gateway.Url}/api/authorizers?offset={offset}&limit=500"
            let! body = json page
            let items = body.GetProperty("items").EnumerateArray() |> Array.ofSeq

            for a in items do
                match a.TryGetProperty "access_token_expires_at" with
                | true, v when v.ValueKind = JsonValueKind.String ->
                    let appid = a.GetProperty("authorizer_appid").GetString()

                    due.Add(
                        v.GetDateTimeOffset()
                        - margin
                        - AuthorizerCommon.jitterFor jitter (Domain.AuthorizerAppId appid)
                    )
                | _ -> ()

            offset <- offset + items.Length
            more <- items.Length > 0

        let perMinute =
            due
            |> Seq.countBy (fun t -> t.ToUnixTimeSeconds() / 60L)
            |> Seq.map snd
            |> Array.ofSeq

        let span =
            if due.Count = 0 then
                1.
            else
                let first, last = Seq.min due, Seq.max due
                max 1. (ceil ((last - first).TotalMinutes))

        let mean = float due.Count / span
        let peak = if perMinute.Length = 0 then 0 else Array.max perMinute
        let fillRate = float fetched / max 1e-3 filling.Elapsed.TotalMinutes
        gateway.Stop()
        do! sim.StopAsync()
        cleanup ()

        printfn
            "%-44s import %.1f s; every first token %.1f s (%d of %d); restart to ready %.2f s; resident %.0f MB ready, %.0f MB after reads (peak %.0f)"
            $"{n} accounts, {provider}"
            importing.Elapsed.TotalSeconds
            filling.Elapsed.TotalSeconds
            fetched
            n
            readyAfter
            rssReady
            rssNow
            rssPeak

        Load.print one "one account"

        Load.print
            spread
            $"{spread.PerSecond / one.PerSecond * 100.:F0}%% of one account's; WeChat calls during the reads: {callsAfter - callsBefore}"

        // From WeChatFs:Authorizers:PacedFrom accounts on (1,000 by default), pacing refreshes the
        // earliest-expiring tokens at an even rate instead (Decisions.Pacing, played over three
        // token lives by its tests).
        let paced = float n / (Decisions.Pacing.tokenLife - margin - jitter).TotalMinutes

        printfn
            "%-44s %d tokens; by the due rule alone the next refreshes span %.0f min, mean %.0f a minute, busiest minute %d (%.2f x mean); paced: %.1f every minute; the scheduler fetched %.0f a minute"
            "  refresh spread"
            due.Count
            span
            mean
            peak
            (float peak / max 1e-9 mean)
            paced
            fillRate
    }

/// The accounts benchmark at each size, on each provider.
let accounts adminKey (providers: string list) (pg: PostgresCluster.Cluster) connections duration (sizes: int list) =
    task {
        for provider in providers do
            for n in sizes do
                let newStore () =
                    if provider = "sqlite" then
                        let folder = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")

                        [
                            "--WeChatFs:Storage:Provider=sqlite"
                            "--WeChatFs:Storage:ConnectionString=Data Source="
                            + Path.Combine(folder, "wechatfs.db")
                            $"--WeChatFs:Storage:DataFolder={folder}"
                        ],
                        (fun () ->
                            try
                                Directory.Delete(folder, true)
                            with _ ->
                                ())
                    else
                        let folder = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")

                        [
                            "--WeChatFs:Storage:Provider=postgres"
                            $"--WeChatFs:Storage:ConnectionString={pg.NewDatabase()}"
                            $"--WeChatFs:Storage:DataFolder={folder}"
                        ],
                        (fun () ->
                            try
                                Directory.Delete(folder, true)
                            with _ ->
                                ())

                do! accountsAt adminKey provider newStore connections duration n
    }

/// `--only deploy`: one deployment to many simulated mini programs (verdicts immediate), through
/// commit, audit and release: wall time, WeChat calls per target, and the store's and the
/// gateway's memory.
module WeChatFs.Bench.Deploy

open System
open System.Diagnostics
open System.IO
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open WeChatFs.Simulator

let private json = BenchHttp.json
let private post = BenchHttp.post

let private calls (http: HttpClient) (sim: SimulatorHost.RunningSimulator) =
    task {
        let! r = http.GetAsync(sim.BaseUrl + "/sim/calls")
        let! root = json r

        return
            root.EnumerateObject()
            |> Seq.map (fun p -> p.Name, p.Value.GetInt32())
            |> Map.ofSeq
    }

let private megabytes (bytes: int64) = float bytes / 1024. / 1024.

/// The store's size on disk (SQLite: the file and its log) or in the database (PostgreSQL).
let private storeBytes (provider: string) (connectionString: string) (folder: string) =
    task {
        if provider = "sqlite" then
            return
                Directory.GetFiles(folder, "wechatfs.db*")
                |> Array.sumBy (fun f -> FileInfo(f).Length)
        else
            use conn = new Npgsql.NpgsqlConnection(connectionString)
            do! conn.OpenAsync()
            use cmd = conn.CreateCommand()
            cmd.CommandText <- "SELECT pg_database_size(current_database())"
            let! v = cmd.ExecuteScalarAsync()
            return Convert.ToInt64 v
    }

let run
    (startGateway: SimulatorHost.RunningSimulator -> string -> string -> string -> Task<WebApplication * string>)
    (adminKey: string)
    (sim: SimulatorHost.RunningSimulator)
    (provider: string)
    (connectionString: string)
    (folder: string)
    (targets: int)
    =
    task {
        use http = new HttpClient(Timeout = TimeSpan.FromMinutes 60.)
        let! _ = post http (sim.BaseUrl + "/sim/calls/reset") {| |}
        let! added = post http (sim.BaseUrl + "/sim/miniprograms") {| count = targets |}
        added.EnsureSuccessStatusCode() |> ignore

        let! _ =
            post http (sim.BaseUrl + "/sim/miniprograms/verdict") {| verdict = "approve"; delay_ms = 0 |}

        let! _ = post http (sim.BaseUrl + "/sim/miniprograms/latency") {| ms = 0 |}
        let! app, address = startGateway sim provider connectionString folder

        use api =
            new HttpClient(BaseAddress = Uri address, Timeout = TimeSpan.FromMinutes 60.)

        api.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)
        sim.SetMessageUrlTemplate(Some(address + "/wechat/authorizers/$APPID$/callback"))
        let! _ = http.PostAsync(sim.BaseUrl + "/sim/push-ticket", null)

        let mutable ready = false

        while not ready do
            let! r = api.GetAsync "/api/component/access-token"
            ready <- r.IsSuccessStatusCode

            if not ready then
                do! Task.Delay 100

        let importing = Stopwatch.StartNew()
        let! synced = api.PostAsync("/api/authorizers/sync", null)
        synced.EnsureSuccessStatusCode() |> ignore
        importing.Stop()
        let! _ = post api "/api/miniprogram/templates" {| draft_id = 1 |}
        let! list = api.GetAsync "/api/miniprogram/templates"
        let! templates = json list

        let templateId =
            (templates.GetProperty("template_list").EnumerateArray() |> Seq.last).GetProperty("template_id").GetInt64()

        GC.Collect()
        let heapBefore = GC.GetTotalMemory true
        let! callsBefore = calls http sim
        let clock = Stopwatch.StartNew()

        let! created =
            post
                api
                "/api/miniprogram/deployments"
                {|
                    template_id = templateId
                    user_version = "1.0.0"
                    user_desc = "bench"
                    ext_json = {| extAppid = "{{appid}}" |}
                    targets = "all"
                    audit =
                        {|
                            item_list =
                                [|
                                    {|
                                        address = "pages/index/index"
                                        tag = "bench"
                                        title = "Home"
                                    |}
                                |]
                        |}
                    release = "auto"
                    max_concurrency = 64
                |}

        let! d = json created
        let id = d.GetProperty("id").GetString()
        let mutable finished = false
        let mutable peakWorkingSet = 0L
        let mutable peakHeap = 0L
        let mutable released = 0

        while not finished do
            do! Task.Delay 500
            let! r = api.GetAsync $"/api/miniprogram/deployments/{id}?limit=0"
            let! progress = json r
            released <- progress.GetProperty("counts").GetProperty("released").GetInt32()
            finished <- progress.GetProperty("status").GetString() = "completed"
            peakWorkingSet <- max peakWorkingSet (Process.GetCurrentProcess().WorkingSet64)
            peakHeap <- max peakHeap (GC.GetTotalMemory false)

        clock.Stop()
        let! callsAfter = calls http sim

        let used =
            callsAfter
            |> Map.toList
            |> List.map (fun (k, v) -> k, v - defaultArg (Map.tryFind k callsBefore) 0)
            |> List.filter (fun (_, v) -> v > 0)

        let total = used |> List.sumBy snd
        let! bytes = storeBytes provider connectionString folder

        printfn
            "%-44s %8.1f s  %6.0f targets/s  released %d of %d (import of the accounts before it: %.1f s)"
            $"deploy to {targets} mini programs, {provider}"
            clock.Elapsed.TotalSeconds
            (float targets / clock.Elapsed.TotalSeconds)
            released
            targets
            importing.Elapsed.TotalSeconds

        printfn
            "%-44s %8.2f per target: %s"
            "  WeChat calls"
            (float total / float targets)
            (used
             |> List.sortByDescending snd
             |> List.map (fun (k, v) -> $"{k} {float v / float targets:F2}")
             |> String.concat ", ")

        printfn
            "%-44s store %.1f MB; gateway (with simulator and load, one process): managed heap +%.1f MB peak, working set %.0f MB peak"
            "  memory"
            (megabytes bytes)
            (megabytes (peakHeap - heapBefore))
            (megabytes peakWorkingSet)

        do! app.StopAsync()
    }

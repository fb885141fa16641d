/// `dotnet fsi build.fsx bench`: every figure beside its baseline, measured in the same run on this
/// machine, the load generator sharing it.
module WeChatFs.Bench.Program

open System
open System.IO
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.Extensions.DependencyInjection
open WeChatFs
open WeChatFs.Store
open WeChatFs.Simulator
open WeChatFs.Simulator.SimState
open WeChatFs.Tests
open WeChatFs.Bench.Gateways

let tokenReads
    (label: string)
    (sim: SimulatorHost.RunningSimulator)
    provider
    connectionString
    connections
    warmup
    duration
    =
    task {
        let folder = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")
        let! app, address = startGateway sim provider connectionString folder
        use http = new HttpClient()
        let appid = "wxsimoa00000000001"
        do! prepare http sim address appid
        let! before = totalCalls http sim
        let path = $"{address}/api/authorizers/{appid}/access-token"

        let! result =
            Load.run label connections warmup duration (fun client _ ->
                task {
                    use request = new HttpRequestMessage(HttpMethod.Get, path)
                    request.Headers.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)
                    use! response = client.SendAsync request
                    let! _ = response.Content.ReadAsByteArrayAsync()
                    return response.IsSuccessStatusCode
                })

        let! after = totalCalls http sim
        do! app.StopAsync()
        // Disposing the services closes the store, so its files can go.
        do! app.DisposeAsync()
        removeFolder folder
        return result, after - before
    }

let callbacks (sim: SimulatorHost.RunningSimulator) (bare: string) connections warmup duration rounds =
    task {
        let folder = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")
        let cs = "Data Source=" + Path.Combine(folder, "wechatfs.db")
        let! app, address = startGateway sim "sqlite" cs folder
        use http = new HttpClient()
        let appid = "wxsimoa00000000001"
        do! prepare http sim address appid
        let o = sim.State.Options

        // Built before each request's clock starts (see Load.runCounting), distinct MsgIds.
        let push = BenchHttp.pushesFor o 1
        let post = BenchHttp.sendPush

        let measure label wait target =
            Load.runPrepared label connections wait duration push (post target)

        let target = $"{address}/wechat/authorizers/{appid}/callback"
        let inbox = app.Services.GetRequiredService<Inbox.InboxService>()

        // With the mean group-commit batch (pushes per transaction) of the measured part.
        let measureCallback label wait =
            task {
                let! result, (batches, items) =
                    Load.runCounting label connections wait duration push (post target) (fun () -> inbox.CommitCounts)

                return result, float items / float (max 1L batches)
            }

        // Rounds alternate the ceiling and the path, so a slow spell of the machine falls on both;
        // the best of each counts. Only the first round needs the full warm-up.
        let bareRuns = ResizeArray<Load.Result>()
        let callbackRuns = ResizeArray<Load.Result * float>()

        for round in 1..rounds do
            let wait = if round = 1 then warmup else TimeSpan.FromSeconds 1.
            let! b = measure $"bare POST answering success, round {round}" wait (bare + "/bare")
            bareRuns.Add b
            let! c = measureCallback $"callback, round {round}" wait
            callbackRuns.Add c

        do! app.StopAsync()
        // Disposing the services closes the store, so its files can go.
        do! app.DisposeAsync()
        removeFolder folder
        return List.ofSeq bareRuns, List.ofSeq callbackRuns
    }

/// The inbox store alone, no HTTP: pushes appended in batches of 1 (a commit per push, the baseline)
/// and of the sizes group commit forms under load, on SQLite with synchronous=FULL; then records
/// written as the intake log's inbox writer writes them (a message's XML, 200 per transaction), with
/// the processor time each costs: that writer shares the cores with the requests.
let storeAppends (seconds: float) =
    task {
        let folder = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")

        let sealer =
            match Secrets.MasterKey.ofBytes (Array.create 32 7uy) with
            | Ok k -> Secrets.Sealer k
            | Error e -> failwith $"{e}"

        let store =
            SqlStore.openStore "sqlite" ("Data Source=" + Path.Combine(folder, "wechatfs.db")) sealer

        do! store.Migrate()
        let pushes = Pushes.Generator(2, BenchHttp.originalId)

        // A message's XML (the intake's way) or the webhook body made from it (the group commit's).
        let item (asXml: bool) =
            let id = Guid.CreateVersion7().ToString("N")
            let plain = pushes.Next()
            let m = Messages.parse plain |> Result.defaultWith (fun e -> failwith $"{e}")
            let now = DateTimeOffset.UtcNow
            let kind = Messages.kind m

            {
                Id = id
                DedupeKey = Messages.dedupeKey m
                AuthorizerAppId = Domain.AuthorizerAppId "wxsimoa00000000001"
                Tenant = Some(Domain.TenantId "bench")
                Kind = kind
                ReceivedAt = now
                Payload =
                    if asXml then
                        plain
                    else
                        Messages.webhookPayloadOfXml
                            id
                            kind
                            (Domain.AuthorizerAppId "wxsimoa00000000001")
                            (Some(Domain.TenantId "bench"))
                            now
                            plain
                ClaimedBy = Some "bench"
                ClaimedUntil = Some(now.AddSeconds 15.)
            }

        let rows = Collections.Generic.List<string * float * float * float>()
        let noAttempts = Collections.Generic.Dictionary<string, AttemptRecord>()

        for name, batch, asXml in
            [
                "inbox append, SQLite, 1 per commit", 1, false
                "inbox append, SQLite, 8 per commit", 8, false
                "inbox append, SQLite, 32 per commit", 32, false
                "inbox from the intake log, 200 a batch", 200, true
            ] do
            let batches = Collections.Generic.List<InboxItem list>()
            // Built beforehand, so only the store's work is timed.
            let total = max 2000 (int (seconds * 25_000.0))

            for _ in 1 .. total / batch do
                batches.Add(List.init batch (fun _ -> item asXml))

            let processor = Diagnostics.Process.GetCurrentProcess()
            let cpuBefore = processor.TotalProcessorTime
            let clock = Diagnostics.Stopwatch.StartNew()

            for b in batches do
                if asXml then
                    let! _ = store.IndexInbox(b, noAttempts)
                    ()
                else
                    let! _ = store.AppendInbox(GroupCommit.Feed.ofList b)
                    ()

            let elapsed = clock.Elapsed.TotalSeconds
            processor.Refresh()
            let cpu = (processor.TotalProcessorTime - cpuBefore).TotalSeconds
            let pushes = float (batches.Count * batch)
            rows.Add((name, pushes / elapsed, elapsed / pushes * 1e6, cpu / pushes * 1e6))

        (store :> IDisposable).Dispose()
        removeFolder folder
        return rows
    }

[<EntryPoint>]
let main argv =
    let arg name fallback =
        match argv |> Array.tryFindIndex ((=) name) with
        | Some i when i + 1 < argv.Length -> int argv[i + 1]
        | _ -> fallback

    let connections = arg "--connections" 64
    let duration = TimeSpan.FromSeconds(float (arg "--seconds" 5))
    // Long enough for tiered compilation (whose background compiles share the two cores with the
    // load) to settle on the hot paths, and for the store's files to reach their working size.
    let warmup = TimeSpan.FromSeconds(float (arg "--warmup" 5))
    // The callback path and its ceiling are measured in alternating rounds.
    let rounds = max 1 (arg "--rounds" 3)

    let only =
        argv
        |> Array.tryFindIndex ((=) "--only")
        |> Option.bind (fun i -> Array.tryItem (i + 1) argv)

    task {
        printfn
            $"WeChatFs benchmarks: {connections} connections, {duration.TotalSeconds} s each after {warmup.TotalSeconds} s warm-up, {Environment.ProcessorCount} cores, load generator in the same process"

        let! bareApp, bare = startBare ()

        let! sim = BenchHttp.startSimulator ()

        let pg = PostgresCluster.shared.Force()
        Load.header ()

        let bareRun label =
            Load.run label connections warmup duration (fun client _ ->
                task {
                    use! r = client.GetAsync(bare + "/bare")
                    let! _ = r.Content.ReadAsByteArrayAsync()
                    return r.IsSuccessStatusCode
                })

        // The ceiling is measured before and after the others; the better run counts, so warm-up
        // order cannot flatter the figures under test.
        let results = Collections.Generic.List<Load.Result * int>()

        if only = None || only = Some "token" then
            let! bareFirst = bareRun "bare GET (ceiling), first"
            let tokenDb = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")

            for label, provider, cs in
                [
                    "token read, SQLite", "sqlite", "Data Source=" + Path.Combine(tokenDb, "wechatfs.db")
                    "token read, PostgreSQL", "postgres", pg.NewDatabase()
                ] do
                let! r = tokenReads label sim provider cs connections warmup duration
                results.Add r

            removeFolder tokenDb

            let! bareLast = bareRun "bare GET (ceiling), last"
            let ceiling = max bareFirst.PerSecond bareLast.PerSecond
            Load.print bareFirst ""
            Load.print bareLast ""

            for r, calls in results do
                Load.print r $"{r.PerSecond / ceiling * 100.0:F0}%% of bare; WeChat calls during run: {calls}"

        if only = None || only = Some "steps" then
            Steps.run rounds

        if only = None || only = Some "webhook" then
            do! WebhookCost.run connections warmup duration rounds

        if only = None || only = Some "store" then
            let! rows = storeAppends duration.TotalSeconds

            for name, perSecond, micros, cpu in rows do
                printfn "%-44s %8.0f %s" name perSecond $"  {micros:F1} µs per push, {cpu:F1} µs of processor"

        if only = None || only = Some "callback" then
            let! bareRuns, callbackRuns = callbacks sim bare connections warmup duration rounds
            let postCeiling = bareRuns |> List.map _.PerSecond |> List.max
            let full, _ = callbackRuns |> List.maxBy (fun (r, _) -> r.PerSecond)

            for r in bareRuns do
                Load.print r (if r.PerSecond = postCeiling then "ceiling" else "")

            for r, batch in callbackRuns do
                let share =
                    $"{r.PerSecond / postCeiling * 100.0:F0}%% of bare; {batch:F1} pushes per commit"

                if obj.ReferenceEquals(r, full) then
                    let verdict =
                        if
                            full.PerSecond >= 0.5 * postCeiling
                            && full.Percentile 99.0 <= 5.0
                            && full.Errors = 0
                        then
                            "meets"
                        else
                            "MISSES"

                    Load.print r $"{share}; best: {verdict} the target (>= 50%%, p99 <= 5 ms, no errors)"
                else
                    Load.print r share

        // A store of its own for one measurement: a folder, and in it the SQLite file or beside it a
        // new database on the bench's PostgreSQL cluster.
        let freshStore (provider: string) () =
            let folder = Path.Combine(Path.GetTempPath(), $"wechatfs-bench-{Guid.NewGuid():N}")

            let cs =
                if provider = "sqlite" then
                    "Data Source=" + Path.Combine(folder, "wechatfs.db")
                else
                    pg.NewDatabase()

            cs, folder

        if only = Some "deploy" then
            let targets = arg "--targets" 10000

            let providers =
                match argv |> Array.tryFindIndex ((=) "--provider") with
                | Some i when i + 1 < argv.Length -> [ argv[i + 1] ]
                | _ -> [ "sqlite"; "postgres" ]

            for provider in providers do
                // A simulator of its own: the deployment goes to every mini program it knows.
                let! deploySim = BenchHttp.startSimulator ()

                let cs, folder = freshStore provider ()
                do! Deploy.run startGateway adminKey deploySim provider cs folder targets
                do! deploySim.StopAsync()
                removeFolder folder

        if only = Some "scale" then
            let sizes name fallback =
                match argv |> Array.tryFindIndex ((=) name) with
                | Some i when i + 1 < argv.Length ->
                    argv[i + 1].Split(',', StringSplitOptions.RemoveEmptyEntries)
                    |> Array.map int
                    |> List.ofArray
                | _ -> fallback

            let providers =
                match argv |> Array.tryFindIndex ((=) "--provider") with
                | Some i when i + 1 < argv.Length -> [ argv[i + 1] ]
                | _ -> [ "sqlite"; "postgres" ]

            let accountSizes = sizes "--accounts" [ 1000; 10000; 100000 ]
            let messageSizes = sizes "--messages" [ 10000; 100000; 1000000 ]

            if not accountSizes.IsEmpty then
                do! Scale.accounts adminKey providers pg connections duration accountSizes

            for provider in providers do
                if not messageSizes.IsEmpty then
                    do!
                        ScaleMessages.messages
                            startGateway
                            (fun http s g a -> prepare http s g a :> Task)
                            adminKey
                            provider
                            (freshStore provider)
                            removeFolder
                            connections
                            warmup
                            duration
                            messageSizes

        do! bareApp.StopAsync()
        do! sim.StopAsync()
        pg.Stop()
        return 0
    }
    |> fun t -> t.GetAwaiter().GetResult()

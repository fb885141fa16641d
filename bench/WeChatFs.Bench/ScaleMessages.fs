/// `--only scale`, the messages: the inbox grown through the store's own API to each size in turn,
/// the callback path's rate against its rate on the empty store, a deliveries page at the start,
/// middle and end, and the retention purge's chunks.
module WeChatFs.Bench.ScaleMessages

open System
open System.Diagnostics
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

/// Milliseconds `f` takes, the median of three.
let private medianMs (f: unit -> Task) =
    task {
        let times = ResizeArray<float>()

        for _ in 1..3 do
            let clock = Stopwatch.StartNew()
            do! f ()
            times.Add clock.Elapsed.TotalMilliseconds

        return Seq.sort times |> Seq.item 1
    }

/// The messages benchmark on one provider: for each size, a fresh store grown to that size through
/// the store's own API (group-committed batches of a thousand, as the intake writes them) and a
/// gateway on it; the deliveries pages and purge chunks at that size, then the callback path's
/// rate. The first store is left empty, for the rate every other is compared with; a store per
/// size keeps one size's measured pushes (tens of thousands) out of the next size's figures.
let messages
    (startGateway: SimulatorHost.RunningSimulator -> string -> string -> string -> Task<WebApplication * string>)
    (prepare: HttpClient -> SimulatorHost.RunningSimulator -> string -> string -> Task)
    (adminKey: string)
    (provider: string)
    (freshStore: unit -> string * string)
    (removeStore: string -> unit)
    connections
    warmup
    duration
    (sizes: int list)
    =
    task {
        let! sim = BenchHttp.startSimulator ()
        let appid = "wxsimoa00000000001"
        let o = sim.State.Options
        let push = BenchHttp.pushesFor o 3
        let seeder = Pushes.Generator(4, BenchHttp.originalId)

        let item () =
            let id = Guid.CreateVersion7().ToString("N")
            let plain = seeder.Next()
            let m = Messages.parse plain |> Result.defaultWith (fun e -> failwith $"{e}")
            let now = DateTimeOffset.UtcNow
            let kind = Messages.kind m

            {
                Id = id
                DedupeKey = Messages.dedupeKey m
                AuthorizerAppId = Domain.AuthorizerAppId appid
                Tenant = Some(Domain.TenantId "bench")
                Kind = kind
                ReceivedAt = now
                // As the intake stores a message: its decrypted XML, the webhook body made when read.
                Payload = plain
                ClaimedBy = None
                ClaimedUntil = None
            }

        let mutable emptyRate = 0.

        for size in 0 :: sizes do
            let connectionString, folder = freshStore ()
            let! app, address = startGateway sim provider connectionString folder
            use http = new HttpClient(Timeout = TimeSpan.FromMinutes 5.)
            do! prepare http sim address appid
            let store = app.Services.GetRequiredService<IStore>()
            let target = $"{address}/wechat/authorizers/{appid}/callback"
            let send = BenchHttp.sendPush target
            use api = new HttpClient(Timeout = TimeSpan.FromMinutes 5.)
            api.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)

            let! counted = store.ListDeliveries(None, 0, 1)
            let missing = max 0 (size - counted.Total)
            let seeding = Stopwatch.StartNew()
            // The first rows are delivered later, for the purge to have work.
            let firstIds = ResizeArray<string>()
            let mutable left = missing

            while left > 0 do
                let batch = List.init (min 1000 left) (fun _ -> item ())

                if firstIds.Count < 3000 then
                    firstIds.AddRange(batch |> List.map _.Id)

                let! _ = store.AppendInbox(GroupCommit.Feed.ofList batch)
                left <- left - batch.Length

            seeding.Stop()

            if size > 0 then
                let! total = store.ListDeliveries(None, 0, 1)

                // A page of 100, by offset or by cursor.
                let page (query: string) () =
                    task {
                        use! r = api.GetAsync $"{address}/api/deliveries?{query}&limit=100"
                        r.EnsureSuccessStatusCode() |> ignore
                        let! _ = r.Content.ReadAsByteArrayAsync()
                        ()
                    }
                    :> Task

                let! firstPage = medianMs (page "offset=0")
                let! middlePage = medianMs (page $"offset={total.Total / 2}")
                let! lastPage = medianMs (page $"offset={max 0 (total.Total - 100)}")

                // The same places reached by cursor, as a client paging through the list gets
                // there: the cursor is the `next_before` of the item just before the page (not timed).
                let cursorAt (offset: int) =
                    task {
                        use! r = api.GetAsync $"{address}/api/deliveries?offset={max 0 (offset - 1)}&limit=1"
                        let! body = r.Content.ReadAsStringAsync()
                        use doc = Text.Json.JsonDocument.Parse body

                        return
                            "before="
                            + Uri.EscapeDataString(doc.RootElement.GetProperty("next_before").GetString())
                    }

                let! middleCursor = cursorAt (total.Total / 2)
                let! lastCursor = cursorAt (max 1 (total.Total - 100))
                let! middleByCursor = medianMs (page middleCursor)
                let! lastByCursor = medianMs (page lastCursor)

                // Delivered now, purged as if their retention had passed: chunks of a thousand, as
                // the purge runs them.
                let now = DateTimeOffset.UtcNow

                for id in firstIds do
                    do! store.MarkDelivered(id, now, "bench")

                let chunks = ResizeArray<float>()

                for _ in 1..3 do
                    let clock = Stopwatch.StartNew()
                    let! _ = store.PurgeDelivered(now.AddSeconds 1., 1000)
                    chunks.Add clock.Elapsed.TotalMilliseconds

                printfn
                    "%-44s seeded %d in %.1f s; deliveries page (100) at start %.1f ms, middle %.1f ms, end %.1f ms; by cursor: middle %.1f ms, end %.1f ms; purge of 1000 delivered: %s ms"
                    $"{total.Total} messages, {provider}"
                    missing
                    seeding.Elapsed.TotalSeconds
                    firstPage
                    middlePage
                    lastPage
                    middleByCursor
                    lastByCursor
                    (chunks |> Seq.map (sprintf "%.1f") |> String.concat ", ")

            let! held = store.ListDeliveries(None, 0, 1)

            // The process's first run at load also warms it (tiered compilation, the thread pool's
            // growth) and was the slowest of all: the empty store's rate comes from a second run.
            if size = 0 then
                let! _ = Load.runPrepared "warm-up" connections warmup duration push send
                ()

            let! run =
                Load.runPrepared
                    $"callback, {provider}, {held.Total} messages"
                    connections
                    (if size = 0 then warmup else TimeSpan.FromSeconds 2.)
                    duration
                    push
                    send

            if size = 0 then
                emptyRate <- run.PerSecond
                Load.print run "baseline (empty inbox)"
            else
                Load.print run $"{run.PerSecond / emptyRate * 100.:F0}%% of the empty inbox's rate"

            do! app.StopAsync()
            do! app.DisposeAsync()
            removeStore folder

        do! sim.StopAsync()
    }

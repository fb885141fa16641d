/// The authorizer refresher, a background service: at start an empty store is filled from
/// api_get_authorizer_list; then every check (or at once after an import) every due token is
/// refreshed, page after page while whole pages are due, and from `Authorizers:PacedFrom` accounts
/// on one instance paces refreshes evenly over a token's life (Decisions.Pacing).
module WeChatFs.AuthorizerRefresher

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.Authorizers

/// Keeps authorizer tokens fresh in the background; at start, an empty store is filled from
/// api_get_authorizer_list (as soon as a component token is available).
type AuthorizerRefresher
    (
        service: AuthorizerService,
        store: IStore,
        options: GatewayOptions,
        clock: TimeProvider,
        metrics: Metrics.GatewayMetrics,
        logger: ILogger<AuthorizerRefresher>
    ) =
    inherit BackgroundService()

    // Pacing goes once through every account per cycle, reaching each token before its jittered
    // margin; one instance paces at a time (a lease), the others only refresh what is due.
    let cycle =
        Decisions.Pacing.tokenLife
        - options.TokenPolicy.RefreshMargin
        - options.AuthorizerRefreshJitter

    let mutable carry = 0.
    let mutable lastPaced: DateTimeOffset option = None

    let pace (refreshConcurrency: int) (dueNow: int) =
        task {
            let! accounts = store.CountAuthorizers()

            if accounts >= options.AuthorizerPacedFrom then
                let now = clock.GetUtcNow()
                let interval = options.CheckInterval

                let! held =
                    store.TryAcquireLease(
                        "authorizer-pacing",
                        options.InstanceId,
                        now,
                        now + interval + interval + interval
                    )

                if held then
                    let elapsed =
                        lastPaced |> Option.map (fun t -> now - t) |> Option.defaultValue interval

                    let count, rest =
                        Decisions.Pacing.budget accounts cycle interval elapsed carry dueNow

                    carry <- rest
                    lastPaced <- Some now

                    if count > 0 then
                        let! _ = service.RefreshEarliest(count, refreshConcurrency)
                        ()
                else
                    lastPaced <- None
        }

    // Refreshes in flight at once: WeChat answers in tens to hundreds of milliseconds, so 100,000
    // accounts (about 15 refreshes a second over a token's life) need more than a handful.
    let refreshConcurrency = 16

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            let mutable recovered = false
            let mutable preloaded = false

            while not stopping.IsCancellationRequested do
                try
                    if not recovered then
                        let! count = store.CountAuthorizers()

                        if count > 0 then
                            recovered <- true
                        else
                            match! service.Sync() with
                            | Ok report ->
                                recovered <- true

                                if report.Total > 0 then
                                    logger.LogInformation(
                                        "store had no authorizers; imported {Count} from api_get_authorizer_list",
                                        report.Imported
                                    )
                            | Error _ -> ()

                    // Once, before the first refreshes: they then skip what is fresh in memory.
                    if recovered && not preloaded then
                        preloaded <- true
                        let timer = Diagnostics.Stopwatch.StartNew()
                        let! loaded = service.PreloadTokens stopping

                        logger.LogInformation(
                            "{Count} fresh authorizer tokens loaded into memory in {Milliseconds} ms",
                            loaded,
                            timer.ElapsedMilliseconds
                        )

                    // A full page worked on means more may be due (after an import, or with many
                    // accounts): the next page at once rather than a check interval later, so
                    // refreshes keep up with any number of accounts.
                    let mutable more = true
                    let mutable dueNow = 0

                    while more && not stopping.IsCancellationRequested do
                        let! candidates, worked = service.RefreshDue refreshConcurrency
                        dueNow <- dueNow + worked
                        more <- candidates = 500 && worked > 0

                    do! pace refreshConcurrency dueNow
                    metrics.RecordRefresherPass(if recovered then "success" else "waiting")
                with ex ->
                    metrics.RecordRefresherPass "failure"
                    logger.LogError(ex, "authorizer refresh pass failed")

                try
                    do! service.WaitForAccounts(options.CheckInterval, stopping)
                with :? OperationCanceledException ->
                    ()
        }

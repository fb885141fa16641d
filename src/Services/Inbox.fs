/// The durable inbox and the webhook deliveries: every message is stored (group commit) before WeChat
/// hears an answer, forwarded once, retried with backoff while the webhook is down, dead-lettered
/// when it stays down; and the full-network release check answered.
module WeChatFs.Inbox

open System
open System.Net.Http
open System.Security.Cryptography
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens

/// The n-th retry waits RetryBase × 2^(n-1), at most ten minutes; after MaxAttempts, dead.
let retryAt (hooks: WebhookOptions) (now: DateTimeOffset) (attemptsSoFar: int) =
    if attemptsSoFar >= hooks.MaxAttempts then
        None
    else
        let schedule =
            {
                First = hooks.RetryBase
                Cap = TimeSpan.FromMinutes 10.
            }

        Some(now + Backoff.delay schedule (max 1 attemptsSoFar))

let webhookUrl (hooks: WebhookOptions) (tenant: string option) =
    tenant
    |> Option.bind (fun t -> hooks.TenantUrls |> Map.tryFind t)
    |> Option.orElse hooks.Url

/// Why one POST to the webhook did not deliver; its description is what the delivery records.
type WebhookError =
    | NoWebhookUrl
    | WebhookStatus of status: int
    | WebhookUnreachable of reason: string
    | WebhookTimedOut

let describeWebhookError (e: WebhookError) =
    match e with
    | NoWebhookUrl -> "no webhook URL configured (WeChatFs:Webhooks:Url)"
    | WebhookStatus status -> $"HTTP {status}"
    | WebhookUnreachable reason -> reason
    | WebhookTimedOut -> "timed out"

/// The webhooks' own client: redirects not followed, no logging handler.
let webhookClient () =
    new HttpClient(
        new SocketsHttpHandler(AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes 5.),
        Timeout = TimeSpan.FromSeconds 10.
    )

/// One POST of `body` (UTF-8 JSON, sent as it is) to `url`, signed by `signer` when the webhooks have
/// a secret; Ok with the answer's body on 2xx. Every delivery makes it, first attempt or retry.
let postWebhook
    (http: HttpClient)
    (signer: Messages.BodySigner option)
    (url: Uri)
    (id: string)
    (body: ReadOnlyMemory<byte>)
    : Task<Result<string, WebhookError>> =
    task {
        use request = new HttpRequestMessage(HttpMethod.Post, url)
        let content = new ReadOnlyMemoryContent(body)
        // Values of our own making (a fixed type, hex): written as they are, not parsed into header
        // objects and formatted back for every delivery.
        content.Headers.TryAddWithoutValidation("Content-Type", "application/json; charset=utf-8")
        |> ignore

        request.Content <- content
        request.Headers.TryAddWithoutValidation("X-WeChatFs-Delivery", id) |> ignore

        match signer with
        | Some signer ->
            request.Headers.TryAddWithoutValidation("X-WeChatFs-Signature", signer.Sign body.Span)
            |> ignore
        | None -> ()

        try
            use! response = http.SendAsync request
            let! answer = response.Content.ReadAsStringAsync()

            if response.IsSuccessStatusCode then
                return Ok answer
            else
                return Error(WebhookStatus(int response.StatusCode))
        with
        | :? HttpRequestException as ex -> return Error(WebhookUnreachable ex.Message)
        | :? TaskCanceledException -> return Error WebhookTimedOut
    }

type InboxService
    (
        options: GatewayOptions,
        store: IStore,
        client: Client,
        components: ComponentTokenService,
        clock: TimeProvider,
        metrics: Metrics.GatewayMetrics,
        logger: ILogger<InboxService>
    ) =
    let hooks = options.Webhooks

    let batcher =
        // Up to two transactions at once: one being made durable, the next taking the pushes that
        // arrive meanwhile.
        new GroupCommit.Batcher<InboxItem, AppendOutcome>(store.AppendInbox, 512, 2)

    // The signature's key, once.
    let signer =
        hooks.Secret
        |> Option.map (fun secret -> new Messages.BodySigner(Encoding.UTF8.GetBytes secret))

    let anyWebhook () =
        (webhookUrl hooks None).IsSome || not hooks.TenantUrls.IsEmpty

    // The embedded store takes pushes through its intake log (one instance, one disk). With
    // PostgreSQL the database is the log: instances share it, and a retry may reach another one.
    let intake =
        if options.IntakeLog then
            Some(
                new Intake.IntakeService(
                    store,
                    options.DataFolder,
                    {
                        Age = TimeSpan.FromMinutes 5.
                        Count = 200_000
                    },
                    options.IntakeSyncGather,
                    Intake.indexGather (anyWebhook ()),
                    clock,
                    logger,
                    metrics.RecordIntakeSync
                )
            )
        else
            None

    let http = webhookClient ()

    /// How long the receiving instance keeps its first attempt to itself.
    member _.FirstAttemptClaim = TimeSpan.FromSeconds 15.

    member _.Options = options

    /// Group-commit batches written so far, and the items in them.
    member _.CommitCounts = batcher.Counts

    /// A push to store, resolved once it is durable: `item.Payload` is the webhook body, or a
    /// message's decrypted XML (which the inbox turns into the body when the row is read, InboxRows).
    member _.Append(item: InboxItem) =
        match intake with
        | Some i ->
            let body =
                if item.Payload.StartsWith '{' then
                    IntakeLog.Payload item.Payload
                else
                    IntakeLog.Xml item.Payload

            i.Append({ Item = item; Body = body }, anyWebhook ())
        | None -> batcher.Submit item

    /// One POST to the webhook of `body` (UTF-8 JSON, sent as it is); Ok with its answer body on 2xx.
    member _.Post(id: string, tenant: string option, body: ReadOnlyMemory<byte>) =
        match webhookUrl hooks tenant with
        | None -> Task.FromResult(Error NoWebhookUrl)
        | Some url -> postWebhook http signer url id body

    /// Delivers and records the outcome; `attemptsSoFar` counts the attempts before this one.
    member this.Deliver(id: string, tenant: string option, body: ReadOnlyMemory<byte>, attemptsSoFar: int) =
        task {
            let! result = this.Post(id, tenant, body)
            let now = clock.GetUtcNow()

            let outcome, answer =
                match result with
                | Ok body -> DeliveredAt(id, now, options.InstanceId), Some body
                | Error e ->
                    let reason = describeWebhookError e
                    let next = retryAt hooks now (attemptsSoFar + 1)

                    match next with
                    | Some at -> logger.LogWarning("delivery {Id} failed ({Reason}); retry at {At}", id, reason, at)
                    | None ->
                        logger.LogError(
                            "delivery {Id} failed ({Reason}); dead-lettered after {Attempts} attempts",
                            id,
                            reason,
                            attemptsSoFar + 1
                        )

                    FailedAt(id, reason, next, options.InstanceId), None

            match intake with
            // A first attempt through the intake log: the row may not be in the inbox yet. The
            // intake records the outcome once it is, with other pushes' in one transaction, and the
            // answer goes back to WeChat now. Later attempts work on rows in the inbox.
            | Some i when attemptsSoFar = 0 -> i.Record outcome
            | _ -> do! store.RecordAttempts [ outcome ]

            return answer
        }

    /// The first attempt, while WeChat waits: the webhook's answer if it came within ReplyTimeout.
    /// A slower delivery goes on in the background and records its own outcome.
    member this.FirstAttempt(id: string, tenant: string option, body: unit -> Messages.PooledBody) =
        task {
            if (webhookUrl hooks tenant).IsNone then
                return None
            else
                // The body goes back to its pool when the POST is over, which may be after the wait.
                let delivery =
                    task {
                        use body = body ()
                        return! this.Deliver(id, tenant, body.Memory, 0)
                    }

                // WaitAsync's timer goes with the wait; a Task.Delay per push would stay queued
                // for the whole timeout after the webhook answered.
                try
                    return! delivery.WaitAsync hooks.ReplyTimeout
                with :? TimeoutException ->
                    return None
        }

    /// The full-network release check's customer-service case (facts §6): api_query_auth with the code
    /// from the text, falling back to the latest AuthorizationCode pushed for the account, then
    /// `<code>_from_api` to the sender.
    member _.AnswerReleaseQueryAuth(appid: AuthorizerAppId, code: string, openId: string) =
        task {
            let exchange c =
                components.WithToken(fun t -> client.QueryAuth(t, AuthorizationCode c))

            let! first = exchange code

            let! result =
                task {
                    match first with
                    | Ok r -> return Ok r
                    | Error _ ->
                        match! store.GetValue(Authorizers.latestCodeKey appid) with
                        | Some pushed when pushed <> code -> return! exchange pushed
                        | _ -> return first
                }

            match result with
            | Ok { AccessToken = Some(token, _) } ->
                match! client.SendCustomText(token, openId, ReleaseCheck.releaseCustomText code) with
                | Ok() -> logger.LogInformation("release check: customer-service reply sent")
                | Error e -> logger.LogWarning("release check: custom send failed: {Error}", describeError e)
            | Ok _ -> logger.LogWarning("release check: api_query_auth returned no authorizer token")
            | Error _ -> logger.LogWarning("release check: api_query_auth failed for the test account")
        }

    interface IAsyncDisposable with
        member _.DisposeAsync() =
            ValueTask(
                task {
                    match intake with
                    | Some i -> do! (i :> IAsyncDisposable).DisposeAsync()
                    | None -> ()

                    do! (batcher :> IAsyncDisposable).DisposeAsync()
                    signer |> Option.iter (fun s -> (s :> IDisposable).Dispose())
                }
                :> Task
            )

/// Delivers what is due, on every instance; a claim keeps two instances off the same delivery.
type DeliveryWorker
    (inbox: InboxService, store: IStore, options: GatewayOptions, clock: TimeProvider, logger: ILogger<DeliveryWorker>)
    =
    inherit BackgroundService()

    // Delivered rows and event records past their retention go now and then, a chunk per statement
    // so that no transaction holds the store for long, with a pause between chunks so that the
    // first purge after a long time without one does not hold it chunk after chunk either (on
    // SQLite, pushes wait for the one connection meanwhile).
    let purgeEvery = TimeSpan.FromMinutes 10.
    let purgeChunk = 1000
    let purgePause = TimeSpan.FromMilliseconds 100.
    let mutable lastPurge = DateTimeOffset.MinValue

    // PostgreSQL records each change to the deliveries' counts as a row of its own (two per
    // delivered push); folded every few seconds, the rows a count sums stay a few thousand.
    let foldEvery = TimeSpan.FromSeconds 10.
    let mutable lastFold = DateTimeOffset.MinValue

    // PostgreSQL, at the same pace: the inbox vacuumed once enough of it changed, so that the list's
    // deep pages read its index alone (InboxRows.vacuum). Off the loop, one at a time: a vacuum after
    // a bulk load takes seconds, and retries must not wait for it.
    let mutable vacuuming = Task.CompletedTask

    let vacuum (stopping: CancellationToken) =
        task {
            try
                let! ran = store.VacuumInbox(int64 options.InboxVacuumAfter, stopping)

                if ran then
                    logger.LogDebug "vacuumed the inbox"
            with
            | :? OperationCanceledException when stopping.IsCancellationRequested -> ()
            | ex -> logger.LogWarning(ex, "vacuuming the inbox failed")
        }
        :> Task

    let purgeAll
        (stopping: CancellationToken)
        (what: string)
        (before: DateTimeOffset)
        (purgeSome: DateTimeOffset * int -> Task<int>)
        =
        task {
            let! first = purgeSome (before, purgeChunk)
            let mutable deleted = first
            let mutable total = first

            while deleted = purgeChunk && not stopping.IsCancellationRequested do
                do! Task.Delay(purgePause, clock)
                let! n = purgeSome (before, purgeChunk)
                deleted <- n
                total <- total + n

            if total > 0 then
                logger.LogInformation("deleted {Count} {What} from before {Before}", total, what, before)
        }

    let purge stopping (now: DateTimeOffset) =
        task {
            do! purgeAll stopping "delivered messages" (now - options.Webhooks.DeliveredRetention) store.PurgeDelivered
            do! purgeAll stopping "event records" (now - options.EventRetention) store.PurgeEvents
        }

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            while not stopping.IsCancellationRequested do
                try
                    let now = clock.GetUtcNow()

                    if now - lastPurge >= purgeEvery then
                        lastPurge <- now
                        do! purge stopping now
                with ex ->
                    logger.LogError(ex, "purging delivered messages and old events failed")

                try
                    let now = clock.GetUtcNow()

                    if now - lastFold >= foldEvery then
                        lastFold <- now
                        do! store.FoldDeliveryCounts()

                        if options.InboxVacuumAfter > 0 && vacuuming.IsCompleted then
                            vacuuming <- vacuum stopping
                with ex ->
                    logger.LogError(ex, "folding the deliveries' counts failed")

                try
                    if
                        (webhookUrl options.Webhooks None).IsSome
                        || not options.Webhooks.TenantUrls.IsEmpty
                    then
                        let now = clock.GetUtcNow()

                        let! due =
                            store.ClaimDeliveries(options.InstanceId, now, now + TimeSpan.FromSeconds 30., 32)

                        let! _ =
                            due
                            |> List.map (fun d ->
                                let body = ReadOnlyMemory(Encoding.UTF8.GetBytes d.Payload)
                                inbox.Deliver(d.Id, d.Tenant |> Option.map Ids.tenant, body, d.Attempts))
                            |> Task.WhenAll

                        ()
                with ex ->
                    logger.LogError(ex, "delivery pass failed")

                try
                    do! Task.Delay(options.Webhooks.PollInterval, stopping)
                with :? OperationCanceledException ->
                    ()

            do! vacuuming
        }

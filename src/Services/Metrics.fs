/// The gateway's numbers (System.Diagnostics.Metrics, meter "WeChatFs"), scraped from `/metrics` in
/// Prometheus text format: pushes, WeChat calls, token refreshes, deliveries, authorizers and the
/// component token's time left. Labels are bounded: endpoints, API paths we recognise, errcodes and
/// statuses; never a token, a secret, an appid or an openid.
module WeChatFs.Metrics

open System
open System.Collections.Concurrent
open System.Diagnostics.Metrics
open System.Net.Http
open System.Text.Json
open System.Text.RegularExpressions
open System.Threading
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.Store

/// Pushes per minute over a fixed window, for the console's chart. Pure: a snapshot is a map from
/// the minute (unix minutes) to its count, and `series` turns it into one value per minute.
module PushHistory =
    /// Minutes kept: six hours.
    let window = 360

    let minuteOf (at: DateTimeOffset) = at.ToUnixTimeSeconds() / 60L

    /// One count per minute, oldest first, ending with the current minute; minutes with no push are 0.
    let series (nowMinute: int64) (minutes: int) (counts: Map<int64, int64>) =
        [
            for m in nowMinute - int64 minutes + 1L .. nowMinute -> m, counts |> Map.tryFind m |> Option.defaultValue 0L
        ]

/// A lock-free ring of per-minute counters (one slot per minute of the window).
type PushRing() =
    let stamps = Array.create PushHistory.window -1L
    let counts = Array.zeroCreate<int64> PushHistory.window
    let gate = obj ()

    member _.Record(at: DateTimeOffset) =
        let m = PushHistory.minuteOf at
        let i = int (m % int64 PushHistory.window)

        if Volatile.Read(&stamps[i]) <> m then
            // The first push of a new minute resets the slot it reuses.
            lock gate (fun () ->
                if stamps[i] <> m then
                    counts[i] <- 0L
                    Volatile.Write(&stamps[i], m))

        Interlocked.Increment(&counts[i]) |> ignore

    member _.Snapshot(now: DateTimeOffset) =
        let nowMinute = PushHistory.minuteOf now

        [
            for i in 0 .. PushHistory.window - 1 do
                let m = Volatile.Read(&stamps[i])

                if m >= 0L && m > nowMinute - int64 PushHistory.window && m <= nowMinute then
                    m, Interlocked.Read(&counts[i])
        ]
        |> Map.ofList

/// Set in HttpContext.Items by a push handler that recognised WeChat's retry of a stored push.
let duplicatePushKey = "wechatfs.push.duplicate"

/// The outcome of a WeChat API call, as a label: "0", the errcode, "http_<status>" or "transport".
type CallOutcome = string

/// One token refresh seen on the wire (api_component_token / api_authorizer_token).
type RefreshRecord =
    {
        At: DateTimeOffset
        Succeeded: bool
        /// The errcode or HTTP failure when it did not.
        Outcome: CallOutcome
    }

/// Paths WeChat's API uses: lowercase segments (cgi-bin/...). Anything else (a proxy call with an odd path) is "other".
let private apiPath =
    Regex("^[a-z0-9_-]+(/[a-z0-9_-]+){0,5}$", RegexOptions.Compiled)

/// At most this many distinct `api` labels; further paths count as "other".
let maxApiLabels = 200

/// The `api` label for a request path: WeChat's path without the leading slash, when it looks like one.
let apiLabel (path: string) =
    let p = (if isNull path then "" else path).Trim('/')

    if p.Length <= 80 && apiPath.IsMatch p then p else "other"

let private refreshRole (api: string) =
    match api with
    | "cgi-bin/component/api_component_token" -> Some "component"
    | "cgi-bin/component/api_authorizer_token" -> Some "authorizer"
    | _ -> None

let private gatewaysInProcess = ref 0

/// The meter's name: "WeChatFs", or "WeChatFs.2", "WeChatFs.3"... for further gateways in the same
/// process (tests, the benchmark). A metrics pipeline listens to meters by name across the process,
/// so a shared name would count every gateway's pushes in each one's `/metrics`.
let nextMeterName () =
    match Interlocked.Increment gatewaysInProcess with
    | 1 -> "WeChatFs"
    | n -> $"WeChatFs.{n}"

/// Bucket bounds of the duration histograms, in seconds: 1, 2.5 and 5 of every power of ten.
let private secondsLadder =
    [|
        0.0001
        0.00025
        0.0005
        0.001
        0.0025
        0.005
        0.01
        0.025
        0.05
        0.1
        0.25
        0.5
        1.
        2.5
        5.
    |]

/// Every instrument of one gateway; created from the host's IMeterFactory.
type GatewayMetrics(meterFactory: IMeterFactory, meterName: string, clock: TimeProvider) =
    let meter = meterFactory.Create meterName

    let pushes =
        meter.CreateCounter<int64>("wechatfs_pushes_total", description = "pushes from WeChat, by endpoint and outcome")

    // A histogram in seconds, with the buckets of `secondsLadder` from `low` to `high`.
    let seconds (name: string) (description: string) (low: float) (high: float) =
        meter.CreateHistogram<float>(
            name,
            unit = "s",
            description = description,
            advice =
                InstrumentAdvice<float>(
                    HistogramBucketBoundaries = (secondsLadder |> Array.filter (fun b -> b >= low && b <= high))
                )
        )

    let pushDuration =
        seconds "wechatfs_push_duration" "time to answer a push from WeChat" 0.0005 5.

    // Most syncs take a fraction of a millisecond; the slow ones are the disk busy with something
    // else (a checkpoint of the store), and every push of the batch waited for them.
    let intakeSync =
        seconds
            "wechatfs_intake_sync_duration"
            "time the embedded store's intake log took to sync a batch of pushes to the disk"
            0.0001
            1.

    let calls =
        meter.CreateCounter<int64>(
            "wechatfs_wechat_calls_total",
            description = "calls to WeChat's API, by api and errcode"
        )

    let refreshes =
        meter.CreateCounter<int64>(
            "wechatfs_token_refreshes_total",
            description = "token refreshes asked of WeChat, by role and outcome"
        )

    let refresherPasses =
        meter.CreateCounter<int64>(
            "wechatfs_authorizer_refresher_passes_total",
            description = "passes of the authorizer refresher, by outcome"
        )

    let ring = PushRing()
    let apiLabels = ConcurrentDictionary<string, unit>()
    let refreshLog = ConcurrentDictionary<string, RefreshRecord list>()

    // Gauges read the latest sample; `/metrics` takes a fresh one before every scrape.
    let mutable pending = 0L
    let mutable dead = 0L
    let mutable byStatus: (string * int64) list = []
    let mutable tokenSecondsLeft: float option = None

    do
        meter.CreateObservableGauge<int64>(
            "wechatfs_deliveries_pending",
            (fun () -> Volatile.Read(&pending)),
            description = "deliveries waiting for the webhook"
        )
        |> ignore

        meter.CreateObservableGauge<int64>(
            "wechatfs_deliveries_dead",
            (fun () -> Volatile.Read(&dead)),
            description = "dead-lettered deliveries"
        )
        |> ignore

        meter.CreateObservableGauge<int64>(
            "wechatfs_authorizers",
            (fun () ->
                byStatus
                |> Seq.map (fun (status, n) ->
                    Measurement<int64>(n, Collections.Generic.KeyValuePair("status", box status)))),
            description = "authorized accounts by status"
        )
        |> ignore

        meter.CreateObservableGauge<float>(
            "wechatfs_component_token_seconds_left",
            (fun () ->
                match tokenSecondsLeft with
                | Some s -> Seq.singleton (Measurement<float>(s))
                | None -> Seq.empty),
            description = "seconds until the stored component token expires (absent when there is none)"
        )
        |> ignore

    member _.Meter = meter
    member _.MeterName = meterName

    /// One sync of the intake log, however many pushes it covered.
    member _.RecordIntakeSync(took: TimeSpan) = intakeSync.Record took.TotalSeconds

    /// One pass of the authorizer refresher ended: `success` (the store's accounts known, their
    /// tokens loaded at the first, what was due refreshed), `waiting` (no account in the store, and
    /// WeChat's list of them not read yet: no component token so far) or `failure` (logged).
    member _.RecordRefresherPass(outcome: string) =
        refresherPasses.Add(1L, Collections.Generic.KeyValuePair("outcome", box outcome))

    /// One push answered: endpoint is a fixed name, outcome accepted | duplicate | refused.
    member _.RecordPush(endpoint: string, outcome: string, seconds: float) =
        // Two tags passed as such, not in an array: nothing allocated per push.

        pushes.Add(
            1L,
            Collections.Generic.KeyValuePair("endpoint", box endpoint),
            Collections.Generic.KeyValuePair("outcome", box outcome)
        )

        pushDuration.Record(seconds, Collections.Generic.KeyValuePair("endpoint", box endpoint))

        if outcome <> "refused" then
            ring.Record(clock.GetUtcNow())

    /// Pushes per minute over the last `minutes` (at most six hours), oldest first.
    member _.PushesPerMinute(minutes: int) =
        let now = clock.GetUtcNow()
        PushHistory.series (PushHistory.minuteOf now) (min minutes PushHistory.window) (ring.Snapshot now)

    /// One WeChat API call: its path and its outcome.
    member _.RecordCall(path: string, outcome: CallOutcome, refreshedAppId: string option) =
        let label =
            let l = apiLabel path

            if apiLabels.ContainsKey l then
                l
            elif apiLabels.Count < maxApiLabels && apiLabels.TryAdd(l, ()) then
                l
            else
                "other"

        calls.Add(
            1L,
            Collections.Generic.KeyValuePair("api", box label),
            Collections.Generic.KeyValuePair("errcode", box outcome)
        )

        match refreshRole label with
        | None -> ()
        | Some role ->
            let ok = outcome = "0"

            refreshes.Add(
                1L,
                Collections.Generic.KeyValuePair("role", box role),
                Collections.Generic.KeyValuePair("outcome", box (if ok then "success" else "failure"))
            )

            let subject =
                match role, refreshedAppId with
                | "authorizer", Some appid -> appid
                | _ -> role

            let entry =
                {
                    At = clock.GetUtcNow()
                    Succeeded = ok
                    Outcome = outcome
                }

            refreshLog.AddOrUpdate(subject, [ entry ], fun _ old -> entry :: List.truncate 19 old)
            |> ignore

    /// The latest refreshes seen by this instance since it started ("component" or an appid), newest first.
    member _.RefreshHistory(subject: string) =
        match refreshLog.TryGetValue subject with
        | true, l -> l
        | _ -> []

    /// Reads the gauges' values from the store.
    member _.Sample(store: IStore, componentAppId: ComponentAppId) =
        task {
            let! p = store.ListDeliveries(Some Pending, 0, 1)
            let! d = store.ListDeliveries(Some Dead, 0, 1)

            let! counts =
                [ Authorized; Revoked; NeedsReauthorization ]
                |> List.map (fun status ->
                    task {
                        let! page =
                            store.ListAuthorizers
                                {
                                    Tenant = None
                                    Status = Some status
                                    Offset = 0
                                    Limit = 1
                                }

                        return AuthorizerStatus.toText status, int64 page.Total
                    })
                |> Task.WhenAll

            let! token = store.ComponentToken componentAppId
            let now = clock.GetUtcNow()
            Volatile.Write(&pending, int64 p.Total)
            Volatile.Write(&dead, int64 d.Total)
            byStatus <- List.ofArray counts
            tokenSecondsLeft <- token |> Option.map (fun t -> max 0. (t.ExpiresAt - now).TotalSeconds)
        }

    interface IDisposable with
        member _.Dispose() = meter.Dispose()

/// Counts every call the WeChat client makes: sits under its HttpClient, so no call is missed and the
/// client's code stays as it is. Reads the errcode from JSON answers (small ones only).
type CallCounter(metrics: GatewayMetrics, inner: HttpMessageHandler) =
    inherit DelegatingHandler(inner)

    static member private AppIdOf(request: HttpRequestMessage) =
        task {
            if isNull request.Content then
                return None
            else
                try
                    let! text = request.Content.ReadAsStringAsync()
                    use doc = JsonDocument.Parse text

                    match doc.RootElement.TryGetProperty "authorizer_appid" with
                    | true, v when v.ValueKind = JsonValueKind.String -> return Some(v.GetString())
                    | _ -> return None
                with _ ->
                    return None
        }

    // `base` cannot be reached from inside a task, so through this member.
    member private _.SendInner(request: HttpRequestMessage, cancellationToken) =
        base.SendAsync(request, cancellationToken)

    override this.SendAsync(request: HttpRequestMessage, cancellationToken) =
        task {
            let path = request.RequestUri.AbsolutePath
            let isRefresh = path.EndsWith("/api_authorizer_token", StringComparison.Ordinal)

            let! appid =
                if isRefresh then
                    CallCounter.AppIdOf request
                else
                    Task.FromResult None

            try
                let! (response: HttpResponseMessage) = this.SendInner(request, cancellationToken)

                let! outcome =
                    task {
                        if not response.IsSuccessStatusCode then
                            return $"http_{int response.StatusCode}"
                        else
                            let media =
                                if isNull response.Content.Headers.ContentType then
                                    ""
                                else
                                    string response.Content.Headers.ContentType.MediaType

                            let length = response.Content.Headers.ContentLength

                            if
                                (media.Contains "json" || media.StartsWith "text/")
                                && (not length.HasValue || length.Value < 65536L)
                            then
                                do! response.Content.LoadIntoBufferAsync()
                                let! bytes = response.Content.ReadAsByteArrayAsync()

                                try
                                    use doc = JsonDocument.Parse(ReadOnlyMemory<byte> bytes)

                                    match doc.RootElement.ValueKind, doc.RootElement.TryGetProperty "errcode" with
                                    | JsonValueKind.Object, (true, v) when v.ValueKind = JsonValueKind.Number ->
                                        return string (v.GetInt32())
                                    | _ -> return "0"
                                with _ ->
                                    return "0"
                            else
                                return "0"
                    }

                metrics.RecordCall(path, outcome, appid)
                return response
            with ex ->
                metrics.RecordCall(path, "transport", appid)
                // The client tells transport failures apart by their type: rethrow as it was.
                Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex).Throw()
                return null
        }

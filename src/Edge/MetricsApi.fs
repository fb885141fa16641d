/// The metrics edge: push endpoints timed and counted, and `/metrics` (Prometheus text format, from
/// OpenTelemetry's exporter) behind the admin key unless `WeChatFs:Metrics:Anonymous` is true.
module WeChatFs.MetricsApi

open System.Diagnostics
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Http
open WeChatFs.Problems
open WeChatFs.Metrics

/// Wraps a push endpoint: refused (4xx/5xx), duplicate (the handler says so) or accepted, and the time taken.
let timedPush (metrics: GatewayMetrics) (endpoint: string) (inner: RequestDelegate) =
    RequestDelegate(fun ctx ->
        task {
            let started = Stopwatch.GetTimestamp()

            try
                do! inner.Invoke ctx
            finally
                let outcome =
                    if ctx.Response.StatusCode >= 400 then "refused"
                    elif ctx.Items.ContainsKey duplicatePushKey then "duplicate"
                    else "accepted"

                metrics.RecordPush(endpoint, outcome, Stopwatch.GetElapsedTime(started).TotalSeconds)
        })

/// GET /metrics. Gauges are sampled from the store just before each scrape.
let map (app: IEndpointRouteBuilder) (s: Services) (metrics: GatewayMetrics) (operator: OperatorOptions) =
    app.MapPrometheusScrapingEndpoint(
        "/metrics",
        null,
        (fun (branch: IApplicationBuilder) ->
            branch.Use(fun (ctx: HttpContext) (next: RequestDelegate) ->
                task {
                    if operator.MetricsAnonymous || authorizedAdmin s.Options ctx then
                        do! metrics.Sample(s.Store, s.Options.ComponentAppId)
                        do! next.Invoke ctx
                    else
                        ctx.Response.Headers.WWWAuthenticate <- "Bearer"

                        do! problem ctx (Unauthorized Guard.Metrics)
                }
                :> Task)
            |> ignore),
        null
    )
    |> ignore

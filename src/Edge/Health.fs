/// The health endpoints as ASP.NET Core health checks: /healthz (alive: no check runs) and /readyz
/// (the store, the ticket and the component token), answering with the same statuses and bodies as
/// before they were health checks, so probes and dashboards keep working while a host can add its
/// own checks or attach policies to the endpoints.
module WeChatFs.Health

open System
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Diagnostics.HealthChecks
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.Diagnostics.HealthChecks
open WeChatFs.Config
open WeChatFs.Settings

/// The tag of the checks /readyz runs; a host may tag its own checks with it to add them there.
[<Literal>]
let ReadyTag = "wechatfs-ready"

/// The name of the gateway's own readiness check in the health report.
[<Literal>]
let ReadinessCheckName = "wechatfs"

[<Literal>]
let private BodyKey = "body"

/// The gateway's readiness as a health check; the /readyz body travels in the result's data.
type ReadinessCheck(options: GatewayOptions, store: Store.IStore, clock: TimeProvider) =
    interface IHealthCheck with
        member _.CheckHealthAsync(_context, _cancellationToken) =
            task {
                let! ready, body =
                    ComponentApi.readinessReport store options.ComponentAppId options.TokenPolicy (clock.GetUtcNow())

                let data = Collections.Generic.Dictionary<string, obj>()
                data[BodyKey] <- body

                return
                    if ready then
                        HealthCheckResult.Healthy("ready", data)
                    else
                        HealthCheckResult.Unhealthy("not ready", data = data)
            }

let private readyBody (report: HealthReport) =
    match report.Entries.TryGetValue ReadinessCheckName with
    | true, entry when entry.Data.ContainsKey BodyKey -> entry.Data[BodyKey]
    | true, entry ->
        // The check itself failed (an exception from the store): say so in the same shape.
        let reason =
            match entry.Exception with
            | null -> entry.Description
            | ex -> $"store unreachable: {ex.Message}"

        let failed = {| ok = false; reason = reason |}

        box
            {|
                ready = false
                checks =
                    {|
                        store = failed
                        ticket = failed
                        component_token = failed
                    |}
            |}
    | _ ->
        box
            {|
                ready = (report.Status = HealthStatus.Healthy)
                checks = obj ()
            |}

/// Maps /healthz and /readyz on `app`.
let map (app: IEndpointRouteBuilder) =
    let alive =
        HealthCheckOptions(
            Predicate = (fun _ -> false),
            ResponseWriter = (fun ctx _ -> Http.writeText ctx StatusCodes.Status200OK "ok")
        )

    let ready =
        HealthCheckOptions(
            Predicate = (fun registration -> registration.Tags.Contains ReadyTag),
            ResponseWriter =
                (fun ctx report ->
                    let status =
                        if report.Status = HealthStatus.Unhealthy then
                            StatusCodes.Status503ServiceUnavailable
                        else
                            StatusCodes.Status200OK

                    Http.writeJson ctx status (readyBody report))
        )

    app.MapHealthChecks("/healthz", alive) |> ignore
    app.MapHealthChecks("/readyz", ready) |> ignore

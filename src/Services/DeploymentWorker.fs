/// The background worker of deployments, on every instance.
module WeChatFs.DeploymentWorker

open System
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Deployments

/// Each instance claims due targets (never more than a deployment's max_concurrency at once, across
/// instances) and works them; a crashed instance's claims run out after ClaimLease.
type DeploymentWorker(service: DeploymentService, options: GatewayOptions, logger: ILogger<DeploymentWorker>) =
    inherit BackgroundService()

    /// The most targets one instance works on at once, whatever the deployments allow.
    let capacity = 64

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            let inFlight = ref 0
            let mutable lastCompletion = DateTimeOffset.MinValue
            let o = options.MiniProgram

            while not stopping.IsCancellationRequested do
                let mutable claimedAny = false

                try
                    let free = capacity - Volatile.Read &inFlight.contents

                    if free > 0 then
                        let now = service.Clock.GetUtcNow()
                        let! claimed = service.Store.Claim(options.InstanceId, now, now + o.ClaimLease, free)

                        claimedAny <- not claimed.IsEmpty

                        for t in claimed do
                            Interlocked.Increment &inFlight.contents |> ignore

                            Task.Run(fun () ->
                                task {
                                    try
                                        try
                                            do! service.Process t
                                        with ex ->
                                            logger.LogError(
                                                ex,
                                                "deployment step for {AppId} failed",
                                                Domain.Ids.authorizerAppId t.Target.AppId
                                            )
                                    finally
                                        Interlocked.Decrement &inFlight.contents |> ignore
                                        service.Wake()
                                }
                                :> Task)
                            |> ignore

                    if not claimedAny && DateTimeOffset.UtcNow - lastCompletion > o.WorkerInterval then
                        lastCompletion <- DateTimeOffset.UtcNow
                        do! service.CompleteFinished()
                with ex ->
                    logger.LogError(ex, "deployment worker pass failed")

                if not claimedAny then
                    try
                        let! _ = service.WaitForWork(o.WorkerInterval, stopping)
                        ()
                    with :? OperationCanceledException ->
                        ()

            // Stopping: let the calls in flight finish and be recorded, so nothing WeChat did is lost.
            let deadline = DateTime.UtcNow.AddSeconds 10.

            while Volatile.Read &inFlight.contents > 0 && DateTime.UtcNow < deadline do
                do! Task.Delay 20
        }

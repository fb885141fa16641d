/// The platform's audit submit quota as the deployment workers share it: asked of wxa/queryquota at
/// most once per check interval, reserved one submission at a time in the store (atomic across
/// instances), with the submissions in flight here counted against WeChat's figure until answered.
module WeChatFs.SubmitQuota

open System
open System.Collections.Concurrent
open System.Threading
open WeChatFs.Domain
open WeChatFs.Settings
open WeChatFs.MiniPrograms
open WeChatFs.DeploymentRecords
open WeChatFs.CodeManagement

type SubmitQuota(options: MiniProgramOptions, deployments: IDeploymentStore, code: CodeClient, clock: TimeProvider) =
    // Quota checks of one deployment, one at a time in this process: two workers asking queryquota
    // at once would each reset the count the other had just reserved from.
    let quotaGates = ConcurrentDictionary<DeploymentId, SemaphoreSlim>()
    // Submissions reserved here and not yet answered: WeChat's count does not include them yet.
    let submitsInFlight = ConcurrentDictionary<DeploymentId, int>()

    let submitStarted id =
        submitsInFlight.AddOrUpdate(id, 1, (fun _ n -> n + 1)) |> ignore

    /// A submission reserved by Reserve was answered (or failed).
    member _.Ended(id: DeploymentId) =
        submitsInFlight.AddOrUpdate(id, 0, (fun _ n -> max 0 (n - 1))) |> ignore

    /// Reserves one submission for `d` before submitting for `appid`: from the known rest while it is
    /// fresh, else after asking wxa/queryquota; false while the quota is used up.
    member _.Reserve(d: Deployment, appid: AuthorizerAppId) =
        task {
            let gate = quotaGates.GetOrAdd(d.Id, fun _ -> new SemaphoreSlim(1, 1))
            do! gate.WaitAsync()

            try
                // Read again under the gate: another worker may have asked WeChat meanwhile.
                let! current = deployments.Get d.Id
                let d = defaultArg current d
                let now = clock.GetUtcNow()

                let fresh =
                    d.QuotaCheckedAt
                    |> Option.exists (fun at -> now - at < options.QuotaCheckInterval)

                let usedUp (rest: int) (limit: int option) =
                    Some
                        $"submit quota used up ({rest} of {defaultArg limit 0} left): submitting waits until wxa/queryquota reports more"

                let! reserved =
                    if fresh then
                        task {
                            let! reserved = deployments.TakeQuota d.Id

                            if not reserved && d.Note.IsNone then
                                do!
                                    deployments.SetQuota(
                                        d.Id,
                                        Some 0,
                                        d.QuotaLimit,
                                        usedUp 0 d.QuotaLimit,
                                        d.QuotaCheckedAt.Value
                                    )

                            return reserved
                        }
                    else
                        task {
                            match! code.QueryQuota appid with
                            | Ok(Some rest, limit) ->
                                // Submissions reserved here but not answered yet are not in WeChat's count.
                                let rest =
                                    match submitsInFlight.TryGetValue d.Id with
                                    | true, n -> max 0 (rest - n)
                                    | _ -> rest

                                let note = if rest > 0 then None else usedUp rest limit
                                do! deployments.SetQuota(d.Id, Some rest, limit, note, now)
                                return! deployments.TakeQuota d.Id
                            | _ ->
                                // No queryquota on this server (or it failed): submit, and let 85085 say so.
                                do! deployments.SetQuota(d.Id, None, None, d.Note, now)
                                return true
                        }

                if reserved then
                    submitStarted d.Id

                return reserved
            finally
                gate.Release() |> ignore
        }

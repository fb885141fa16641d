/// Deployments and their targets as the store keeps them: a deployment's status, the deployment and
/// target records, and the store contract (IDeploymentStore) that DeploymentStore implements.
module WeChatFs.DeploymentRecords

open System
open System.Threading.Tasks
open WeChatFs.MiniPrograms

type DeploymentStatus =
    | Running
    | Paused
    | Cancelled
    | Completed

module DeploymentStatus =
    let toText =
        function
        | Running -> "running"
        | Paused -> "paused"
        | Cancelled -> "cancelled"
        | Completed -> "completed"

    let ofText =
        function
        | "paused" -> Paused
        | "cancelled" -> Cancelled
        | "completed" -> Completed
        | _ -> Running

type Deployment =
    {
        Id: DeploymentId
        TemplateId: int64
        UserVersion: string
        UserDesc: string
        /// The ext_json object as given, placeholders still in it.
        ExtJson: string
        /// The submit_audit body as given; None = stop after commit.
        Audit: string option
        Release: ReleaseMode
        ReleaseRequested: bool
        MaxConcurrency: int
        /// The request's `targets`, as given.
        Targets: string
        Status: DeploymentStatus
        /// Why submitting waits (the submit quota), shown with the progress.
        Note: string option
        QuotaRest: int option
        QuotaLimit: int option
        QuotaCheckedAt: DateTimeOffset option
        CreatedAt: DateTimeOffset
        UpdatedAt: DateTimeOffset
    }

module Deployment =
    let plan (d: Deployment) =
        {
            Audit = d.Audit.IsSome
            Release = d.Release
            ReleaseRequested = d.ReleaseRequested
        }

type StoredTarget =
    {
        DeploymentId: DeploymentId
        Tenant: Domain.TenantId option
        Target: Target
        Version: int
        CreatedAt: DateTimeOffset
    }

type IDeploymentStore =
    /// The deployment and all its targets, in one transaction.
    abstract Create: Deployment * (Domain.AuthorizerAppId * Domain.TenantId option * Target) list -> Task
    abstract Get: DeploymentId -> Task<Deployment option>
    /// Newest first.
    abstract List: offset: int * limit: int -> Task<Store.Page<Deployment>>
    abstract SetStatus: DeploymentId * DeploymentStatus * now: DateTimeOffset -> Task
    abstract RequestRelease: DeploymentId * now: DateTimeOffset -> Task

    abstract SetQuota:
        DeploymentId * rest: int option * limit: int option * note: string option * now: DateTimeOffset -> Task

    /// Reserves one submission: the known rest goes down by one; false when it is 0 (an unknown
    /// rest reserves nothing and answers true). Atomic, so concurrent workers never overdraw it.
    abstract TakeQuota: DeploymentId -> Task<bool>
    abstract Counts: DeploymentId -> Task<(string * int) list>
    abstract Targets: DeploymentId * state: string option * offset: int * limit: int -> Task<StoredTarget list>
    abstract GetTarget: DeploymentId * appid: Domain.AuthorizerAppId -> Task<StoredTarget option>
    /// Targets changed after `since`, oldest change first (for the event stream).
    abstract ChangedSince: DeploymentId * since: DateTimeOffset * limit: int -> Task<StoredTarget list>
    /// Due targets of running deployments, at most each deployment's max_concurrency claimed at once.
    abstract Claim: holder: string * now: DateTimeOffset * until: DateTimeOffset * max: int -> Task<StoredTarget list>
    /// Writes the target if its version is still `expected`; `release` also ends the claim.
    abstract Save: StoredTarget * expected: int * release: bool -> Task<bool>
    /// The account's target whose audit is in flight, latest submission first (facts §9.7: the event
    /// carries no auditid).
    abstract AuditInFlight: appid: Domain.AuthorizerAppId -> Task<StoredTarget option>
    /// Running deployments with no target left to act on under their plan.
    abstract RunningIds: unit -> Task<DeploymentId list>

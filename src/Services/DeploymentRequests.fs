/// What `POST /api/miniprogram/deployments` asks for, read and checked; which accounts a
/// deployment may go to; and the deployment-level reading of the core's states.
module WeChatFs.DeploymentRequests

open System
open System.Text.Json
open System.Text.Json.Nodes
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.MiniPrograms

/// Permission set 18: development management, needed for every code-management call (facts §9).
let codeManagementFuncId = 18

type TargetSpec =
    | AllMiniPrograms
    | AppIds of string list
    | TenantTargets of string

type DeploymentRequest =
    {
        TemplateId: int64
        UserVersion: string
        UserDesc: string
        ExtJson: JsonNode
        Audit: string option
        Release: ReleaseMode
        Targets: TargetSpec
        TargetsJson: string
        MaxConcurrency: int
    }

let defaultMaxConcurrency = 4

/// The request body of `POST /api/miniprogram/deployments`; every problem is named.
let parseRequest (body: JsonNode) : Result<DeploymentRequest, string list> =
    match body with
    | :? JsonObject as o ->
        let errors = ResizeArray<string>()

        let str (name: string) =
            match o[name] with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String -> v.GetValue<string>()
            | _ -> null

        let templateId =
            match o["template_id"] with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.Number -> v.GetValue<int64>()
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String ->
                match Int64.TryParse(v.GetValue<string>()) with
                | true, n -> n
                | _ -> -1L
            | _ -> -1L

        if templateId < 0L then
            errors.Add "template_id: a template id from the library is required"

        let userVersion = str "user_version"

        if String.IsNullOrWhiteSpace userVersion || userVersion.Length > 64 then
            errors.Add "user_version: required, at most 64 characters"

        let userDesc = str "user_desc" |> Option.ofObj |> Option.defaultValue ""

        let extJson =
            match o["ext_json"] with
            | null -> JsonObject() :> JsonNode
            | :? JsonObject as e -> e :> JsonNode
            | _ ->
                errors.Add "ext_json: an object (it is sent to WeChat as a JSON-encoded string)"
                null

        let audit =
            match o["audit"] with
            | null -> None
            | :? JsonObject as a -> Some(a.ToJsonString())
            | _ ->
                errors.Add "audit: the submit_audit body (item_list, ...) or null"
                None

        let release =
            match str "release" with
            | null when audit.IsNone -> NoRelease
            | null -> Auto
            | r ->
                match ReleaseMode.ofText r with
                | Some m -> m
                | None ->
                    errors.Add "release: auto, manual or none"
                    NoRelease

        let targets =
            match o["targets"] with
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String && v.GetValue<string>() = "all" ->
                AllMiniPrograms
            | :? JsonArray as a ->
                a
                |> Seq.choose (fun n ->
                    match n with
                    | :? JsonValue as v when v.GetValueKind() = JsonValueKind.String -> Some(v.GetValue<string>())
                    | _ -> None)
                |> Seq.distinct
                |> List.ofSeq
                |> AppIds
            | :? JsonObject as t when (t["tenant"] :? JsonValue) -> TenantTargets(t["tenant"].GetValue<string>())
            | _ ->
                errors.Add "targets: \"all\", a list of appids, or {\"tenant\": \"...\"}"
                AppIds []

        let maxConcurrency =
            match o["max_concurrency"] with
            | null -> defaultMaxConcurrency
            | :? JsonValue as v when v.GetValueKind() = JsonValueKind.Number && v.GetValue<int>() >= 1 ->
                min 64 (v.GetValue<int>())
            | _ ->
                errors.Add "max_concurrency: a whole number from 1 to 64"
                defaultMaxConcurrency

        if release <> NoRelease && audit.IsNone then
            errors.Add "release: with audit null nothing can be released; use \"none\""

        if errors.Count > 0 then
            Error(List.ofSeq errors)
        else
            Ok
                {
                    TemplateId = templateId
                    UserVersion = userVersion
                    UserDesc = userDesc
                    ExtJson = extJson
                    Audit = audit
                    Release = release
                    Targets = targets
                    TargetsJson =
                        match o["targets"] with
                        | null -> "null"
                        | t -> t.ToJsonString()
                    MaxConcurrency = maxConcurrency
                }
    | _ -> Error [ "a JSON object is required" ]

/// A target may be deployed to: an authorized mini program with the code-management permission set.
let isDeployable (a: Authorizer) =
    a.Status = Authorized
    && (a.Profile |> Option.exists (fun p -> p.Kind = MiniProgram))
    && List.contains codeManagementFuncId a.FuncIds

let policyOf (o: MiniProgramOptions) : Policy =
    {
        MaxAttempts = o.MaxAttempts
        RetryDelay = o.RetryDelay
        ScanRetryDelay = o.ScanRetryDelay
        AuditPollInterval = o.AuditPollInterval
        QuotaRetryDelay = o.QuotaRetryDelay
    }

/// A plan's settled targets by state name (see MiniPrograms.isSettled).
let settledName (plan: Plan) (name: string) =
    match name with
    | "released"
    | "failed"
    | "audit_rejected"
    | "skipped"
    | "cancelled" -> true
    | "committed" -> not plan.Audit
    | "audit_passed" -> plan.Release = NoRelease
    | _ -> false

let private tenantOf (a: Authorizer) = a.Tenant |> Option.map Ids.tenant

/// The accounts a deployment goes to, resolved once when it is created: each appid with its tenant and
/// whether it is authorized (named appids), or every authorized mini program (of a tenant).
let resolveTargets (store: Store.IStore) (spec: TargetSpec) =
    task {
        match spec with
        | AppIds ids ->
            let found = ResizeArray()

            for id in ids do
                let! a = store.GetAuthorizer(AuthorizerAppId id)

                found.Add(
                    match a with
                    | Some a when a.Status = Authorized -> id, tenantOf a, true
                    | Some a -> id, tenantOf a, false
                    | None -> id, None, false
                )

            return List.ofSeq found
        | AllMiniPrograms
        | TenantTargets _ ->
            let tenant =
                match spec with
                | TenantTargets t -> Some(TenantId t)
                | _ -> None

            let found = ResizeArray()
            let mutable offset = 0
            let mutable more = true

            while more do
                let! page =
                    store.ListAuthorizers
                        {
                            Tenant = tenant
                            Status = Some Authorized
                            Offset = offset
                            Limit = 500
                        }

                for a in page.Items do
                    if isDeployable a then
                        found.Add(Ids.authorizerAppId a.AppId, tenantOf a, true)

                offset <- offset + page.Items.Length
                more <- not page.Items.IsEmpty && offset < page.Total

            return List.ofSeq found
    }

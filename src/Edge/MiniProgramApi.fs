/// The mini-program API: the template library, deployments (create, progress, controls, the event
/// stream) and the per-account code-management calls. Errors are problem details, WeChat's
/// errcodes explained.
module WeChatFs.MiniProgramApi

open System
open System.Net.Http
open System.Text.Json
open System.Text.Json.Nodes
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Domain
open WeChatFs.Http
open WeChatFs.Problems
open WeChatFs.MiniPrograms
open WeChatFs.DeploymentRecords
open WeChatFs.DeploymentStore
open WeChatFs.CodeManagement
open WeChatFs.DeploymentRequests
open WeChatFs.Deployments

/// WeChat's answer in our style: its fields as they are, without errcode/errmsg.
let writeAnswer (ctx: HttpContext) (result: Result<JsonElement, CallError>) =
    match result with
    | Error e -> problem ctx (ApiError.Call e)
    | Ok root ->
        let node = JsonNode.Parse(root.GetRawText())

        match node with
        | :? JsonObject as o ->
            o.Remove "errcode" |> ignore
            o.Remove "errmsg" |> ignore
        | _ -> ()

        ctx.Response.StatusCode <- 200
        ctx.Response.ContentType <- "application/json; charset=utf-8"
        ctx.Response.WriteAsync(node.ToJsonString())

/// A JSON request body of at most 1 MiB; an empty body is an empty object.
let readBody (ctx: HttpContext) =
    task {
        // A deployment or code request is small; anything past 1 MiB is refused, not read.
        match! readLimited ctx (1024 * 1024) with
        | TooLarge -> return Error "the body is larger than 1 MiB"
        | Body bytes ->

            if bytes.Length = 0 then
                return Ok(JsonObject() :> JsonNode)
            else
                try
                    match JsonNode.Parse(ReadOnlySpan bytes) with
                    | null -> return Error "the body is not JSON"
                    | n -> return Ok n
                with :? JsonException as ex ->
                    return Error $"the body is not JSON: {ex.Message}"
    }

let private withBody (ctx: HttpContext) (f: JsonNode -> Task) =
    task {
        match! readBody ctx with
        | Error e -> do! problem ctx (InvalidRequest e)
        | Ok body -> do! f body
    }

// ---- template library (component token) ----------------------------------------------------------

let drafts (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            let! r = code.AsComponent(HttpMethod.Get, "wxa/gettemplatedraftlist", [], None)
            do! writeAnswer ctx r
        })

let templates (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            let query =
                match string ctx.Request.Query["template_type"] with
                | "" -> []
                | t -> [ "template_type", t ]

            let! r = code.AsComponent(HttpMethod.Get, "wxa/gettemplatelist", query, None)
            do! writeAnswer ctx r
        })

let addTemplate (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        withBody ctx (fun body ->
            task {
                let number (name: string) =
                    match body[name] with
                    | :? JsonValue as v when v.GetValueKind() = JsonValueKind.Number -> Some(v.GetValue<int64>())
                    | _ -> None

                match number "draft_id" with
                | None ->
                    do!
                        problem
                            ctx
                            (InvalidRequest "draft_id: a draft id from GET /api/miniprogram/drafts is required")
                | Some draft ->
                    let payload =
                        JsonSerializer.Serialize
                            {|
                                draft_id = draft
                                template_type = defaultArg (number "template_type") 0L
                            |}

                    let! r = code.AsComponent(HttpMethod.Post, "wxa/addtotemplate", [], Some payload)
                    do! writeAnswer ctx r
            }))

let deleteTemplate (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            match Int64.TryParse(string ctx.Request.RouteValues["template_id"]) with
            | false, _ -> do! problem ctx (InvalidRequest "template_id must be a number")
            | true, id ->
                let payload = JsonSerializer.Serialize {| template_id = id |}
                let! r = code.AsComponent(HttpMethod.Post, "wxa/deletetemplate", [], Some payload)
                do! writeAnswer ctx r
        })

// ---- deployments -----------------------------------------------------------------------------------

let private targetJson (t: StoredTarget) =
    let step, code, reason, shots =
        match t.Target.State with
        | Failed(step, code, reason) -> Some(Step.toText step), code, Some reason, None
        | AuditRejected(reason, shots) -> None, None, Some reason, Some shots
        | AuditDelayed reason
        | Skipped reason -> None, None, Some reason, None
        | Committing -> Some "commit", None, None, None
        | Submitting -> Some "submit_audit", None, None, None
        | Auditing -> Some "get_auditstatus", None, None, None
        | Releasing -> Some "release", None, None, None
        | _ -> None, None, None, None

    let last = code |> Option.orElse t.Target.LastErrcode

    {|
        appid = Ids.authorizerAppId t.Target.AppId
        tenant = t.Tenant |> Option.map Ids.tenant |> Option.toObj
        state = TargetState.name t.Target.State
        step = Option.toObj step
        attempts = t.Target.Attempts
        last_errcode = Option.toNullable last
        last_error = last |> Option.map ErrorGuide.explain |> Option.toObj
        reason = Option.toObj reason
        screenshots = Option.toObj shots
        audit_id = Option.toNullable t.Target.AuditId
        next_at = Option.toNullable t.Target.NextAt
        created_at = t.CreatedAt
        updated_at = t.Target.UpdatedAt
    |}

let private countsJson (counts: (string * int) list) =
    let d = Collections.Generic.Dictionary<string, int>()

    for s in TargetState.all do
        d[s] <- 0

    for s, n in counts do
        d[s] <- n

    d

let private deploymentJson (d: Deployment) (counts: (string * int) list) =
    {|
        id = DeploymentId.value d.Id
        status = DeploymentStatus.toText d.Status
        template_id = d.TemplateId
        user_version = d.UserVersion
        user_desc = d.UserDesc
        release = ReleaseMode.toText d.Release
        release_requested = d.ReleaseRequested
        audit = d.Audit.IsSome
        max_concurrency = d.MaxConcurrency
        targets = JsonNode.Parse d.Targets
        total = counts |> List.sumBy snd
        counts = countsJson counts
        note = Option.toObj d.Note
        quota =
            match d.QuotaRest with
            | Some rest ->
                box
                    {|
                        rest = rest
                        limit = Option.toNullable d.QuotaLimit
                        checked_at = Option.toNullable d.QuotaCheckedAt
                    |}
            | None -> null
        created_at = d.CreatedAt
        updated_at = d.UpdatedAt
    |}

let private idOf (ctx: HttpContext) =
    DeploymentId(string ctx.Request.RouteValues["id"])

let createDeployment (s: Services) (service: DeploymentService) =
    admin s (fun ctx ->
        withBody ctx (fun body ->
            task {
                match parseRequest body with
                | Error errors -> do! problem ctx (InvalidDeployment errors)
                | Ok request ->
                    let! d = service.Create request
                    let id = DeploymentId.value d.Id
                    let! counts = service.Store.Counts d.Id
                    ctx.Response.Headers.Location <- $"/api/miniprogram/deployments/{id}"
                    do! writeJson ctx 202 (deploymentJson d counts)
            }))

let listDeployments (s: Services) (service: DeploymentService) =
    admin s (fun ctx ->
        task {
            let intQuery name fallback =
                match Int32.TryParse(string ctx.Request.Query[name]) with
                | true, n when n >= 0 -> n
                | _ -> fallback

            let! page = service.Store.List(intQuery "offset" 0, min 200 (intQuery "limit" 50))
            let items = ResizeArray()

            for d in page.Items do
                let! counts = service.Store.Counts d.Id
                items.Add(deploymentJson d counts)

            do! writeJson ctx 200 {| total = page.Total; items = items |}
        })

let getDeployment (s: Services) (service: DeploymentService) =
    admin s (fun ctx ->
        task {
            match! service.Store.Get(idOf ctx) with
            | None -> do! problem ctx (NotFound Missing.Deployment)
            | Some d ->
                let q = ctx.Request.Query

                let intQuery name fallback =
                    match Int32.TryParse(string q[name]) with
                    | true, n when n >= 0 -> n
                    | _ -> fallback

                let state =
                    match string q["state"] with
                    | "" -> None
                    | st -> Some st

                let! counts = service.Store.Counts d.Id

                let! targets =
                    service.Store.Targets(d.Id, state, intQuery "offset" 0, min 10000 (intQuery "limit" 1000))

                let body = JsonSerializer.SerializeToNode(deploymentJson d counts).AsObject()
                body["target_list"] <- JsonSerializer.SerializeToNode(targets |> List.map targetJson)
                ctx.Response.ContentType <- "application/json; charset=utf-8"
                do! ctx.Response.WriteAsync(body.ToJsonString())
        })

/// pause / resume / cancel / retry-failed / release: answers the deployment as it is afterwards.
let control (s: Services) (service: DeploymentService) (act: DeploymentId -> Task) =
    admin s (fun ctx ->
        task {
            let id = idOf ctx

            match! service.Store.Get id with
            | None -> do! problem ctx (NotFound Missing.Deployment)
            | Some _ ->
                do! act id

                match! service.Store.Get id with
                | Some d ->
                    let! counts = service.Store.Counts id
                    do! writeJson ctx 200 (deploymentJson d counts)
                | None -> do! problem ctx (NotFound Missing.Deployment)
        })

/// Server-sent events: `progress` (the counts) whenever they change, `target` for each changed
/// target, and `end` once the deployment is completed or cancelled.
let events (s: Services) (service: DeploymentService) =
    admin s (fun ctx ->
        task {
            let id = idOf ctx

            match! service.Store.Get id with
            | None -> do! problem ctx (NotFound Missing.Deployment)
            | Some _ ->
                ctx.Response.StatusCode <- 200
                ctx.Response.ContentType <- "text/event-stream"
                ctx.Response.Headers.CacheControl <- "no-cache"
                let aborted = ctx.RequestAborted
                let mutable since = DateTimeOffset.MinValue
                let mutable lastCounts = ""
                let mutable finished = false

                let send (name: string) (data: obj) =
                    task {
                        let json =
                            JsonSerializer.Serialize(data, JsonSerializerOptions(PropertyNamingPolicy = null))

                        do! ctx.Response.WriteAsync($"event: {name}\ndata: {json}\n\n", aborted)
                        do! ctx.Response.Body.FlushAsync(aborted)
                    }

                try
                    while not finished && not aborted.IsCancellationRequested do
                        match! service.Store.Get id with
                        | None -> finished <- true
                        | Some d ->
                            let! changed = service.Store.ChangedSince(id, since, 500)

                            for t in changed do
                                do! send "target" (targetJson t)
                                since <- max since t.Target.UpdatedAt

                            let! counts = service.Store.Counts id
                            let progress = deploymentJson d counts

                            let text =
                                JsonSerializer.Serialize progress.counts + DeploymentStatus.toText d.Status

                            if text <> lastCounts then
                                lastCounts <- text
                                do! send "progress" progress

                            match d.Status with
                            | Completed
                            | DeploymentStatus.Cancelled when changed.Length < 500 ->
                                do!
                                    send
                                        "end"
                                        {|
                                            id = DeploymentId.value id
                                            status = DeploymentStatus.toText d.Status
                                        |}

                                finished <- true
                            | _ ->
                                if changed.Length < 500 then
                                    do! Task.Delay(500, aborted)
                with :? OperationCanceledException ->
                    ()
        })

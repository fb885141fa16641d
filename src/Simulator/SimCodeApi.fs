/// The `/wxa/*` code-management endpoints of the simulated WeChat (facts §9) over SimMiniPrograms'
/// state, and the `/sim/miniprograms...` controls tests and benchmarks use.
module WeChatFs.Simulator.SimCodeApi

open System
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimApi
open WeChatFs.Simulator.SimMiniPrograms

let private asAccount (codes: CodeState) (name: string) (serve: HttpContext -> Program -> string -> Task) =
    withAuthorizerToken codes.Sim (fun ctx a ->
        let appid = a.Account.AppId

        if a.Account.Kind <> MiniProgram then
            fail ctx 85015
        elif not (List.contains 18 a.FuncIds) then
            fail ctx 61007
        else
            codes.Count(appid, name)

            task {
                codes.Enter()

                try
                    if codes.Latency > 0 then
                        do! Task.Delay codes.Latency

                    do! serve ctx (codes.Program appid) appid
                finally
                    codes.Leave()
            }
            :> Task)

let private commit (codes: CodeState) =
    asAccount codes "commit" (fun ctx p _ ->
        SimTemplateApi.withBody ctx (fun body ->
            let ext =
                match body.TryGetProperty "ext_json" with
                | true, v when v.ValueKind = JsonValueKind.String -> Some(v.GetString())
                | true, _ -> None
                | _ -> Some "{}"

            let parsed =
                ext
                |> Option.bind (fun e ->
                    try
                        JsonDocument.Parse(e).Dispose()
                        Some e
                    with :? JsonException ->
                        None)

            match tryInt64Prop "template_id" body, parsed with
            | _, None -> fail ctx 85048
            | None, _ -> fail ctx 85014
            | Some tid, _ when not (codes.Lock(fun () -> codes.Templates.ContainsKey tid)) -> fail ctx 85014
            | Some tid, Some e when (prop "user_version" body).Length > 64 -> fail ctx 85013
            | Some tid, Some e ->
                let now = codes.Sim.Now()

                codes.Lock(fun () ->
                    p.Code <-
                        Some
                            {
                                TemplateId = tid
                                ExtJson = e
                                UserVersion = prop "user_version" body
                                UserDesc = prop "user_desc" body
                                CommitTime = now.ToUnixTimeSeconds()
                            }

                    p.ScanReadyAt <- now + codes.ScanDelay)

                writeOk ctx))

let private submitAudit (codes: CodeState) =
    asAccount codes "submit_audit" (fun ctx p appid ->
        SimTemplateApi.withBody ctx (fun body ->
            let items =
                match body.TryGetProperty "item_list" with
                | true, v when v.ValueKind = JsonValueKind.Array -> Some(v.GetArrayLength())
                | _ -> None

            let now = codes.Sim.Now()

            let inProgress =
                codes.Lock(fun () -> p.Audits |> Seq.exists (fun a -> a.Status = 2 || a.Status = 4))

            match p.Code with
            | None -> fail ctx 85086
            | Some _ when now < p.ScanReadyAt -> fail ctx 61039
            | Some _ when items |> Option.exists (fun n -> n < 1 || n > 5) -> fail ctx 85023
            | Some _ when inProgress -> fail ctx 85009
            | Some _ when not (codes.TakeQuota()) -> fail ctx 85085
            | Some c ->
                let audit =
                    {
                        AuditId = codes.NextAuditId()
                        Status = 2
                        Reason = ""
                        Screenshot = ""
                        SubmitTime = now.ToUnixTimeSeconds()
                        UserVersion = c.UserVersion
                        UserDesc = c.UserDesc
                        Released = false
                    }

                codes.Lock(fun () -> p.Audits.Add audit)
                review codes appid audit

                writeJson
                    ctx
                    200
                    {|
                        errcode = 0
                        errmsg = "ok"
                        auditid = audit.AuditId
                    |}))

let private auditStatus (codes: CodeState) =
    asAccount codes "get_auditstatus" (fun ctx p _ ->
        SimTemplateApi.withBody ctx (fun body ->
            let found =
                codes.Lock(fun () ->
                    p.Audits
                    |> Seq.tryFind (fun a -> Some a.AuditId = tryInt64Prop "auditid" body)
                    |> Option.map (fun a -> a.Status, a.Reason, a.Screenshot))

            match found with
            | None -> fail ctx 85012
            | Some(status, reason, shot) ->
                writeJson
                    ctx
                    200
                    {|
                        errcode = 0
                        errmsg = "ok"
                        status = status
                        reason = reason
                        screenshot = shot
                    |}))

/// The old spelling `ScreenShot` (facts §9.5).
let private latestAuditStatus (codes: CodeState) =
    asAccount codes "get_latest_auditstatus" (fun ctx p _ ->
        match codes.Lock(fun () -> Seq.tryLast p.Audits) with
        | None -> fail ctx 85058
        | Some a ->
            writeJson
                ctx
                200
                {|
                    errcode = 0
                    errmsg = "ok"
                    auditid = a.AuditId
                    status = a.Status
                    reason = a.Reason
                    ScreenShot = a.Screenshot
                    user_version = a.UserVersion
                    user_desc = a.UserDesc
                    submit_audit_time = a.SubmitTime
                |})

/// release needs a body (44002 without) and an approved audit not yet released (facts §9.6).
let private release (codes: CodeState) =
    asAccount codes "release" (fun ctx p _ ->
        task {
            let! body = readJson ctx

            match body with
            | None -> do! fail ctx 44002
            | Some _ ->
                let released =
                    codes.Lock(fun () ->
                        match Seq.tryLast p.Audits, p.Code with
                        | Some a, Some c when a.Status = 0 && not a.Released ->
                            a.Released <- true
                            p.Releases.Add(c, codes.Sim.Now().ToUnixTimeSeconds())

                            if p.Releases.Count > 5 then
                                p.Releases.RemoveAt 0

                            Ok()
                        | Some a, _ when a.Status = 0 -> Error 85020
                        | _ -> Error 85019)

                match released with
                | Ok() -> do! writeOk ctx
                | Error code -> do! fail ctx code
        })

/// revertcoderelease: `action=get_history_version` lists (at most 5); otherwise rolls back one.
let private revert (codes: CodeState) =
    asAccount codes "revertcoderelease" (fun ctx p _ ->
        if string ctx.Request.Query["action"] = "get_history_version" then
            let list =
                codes.Lock(fun () ->
                    p.Releases
                    |> Seq.mapi (fun i (c, at) ->
                        {|
                            app_version = i + 1
                            user_version = c.UserVersion
                            user_desc = c.UserDesc
                            commit_time = at
                        |})
                    |> Array.ofSeq)

            writeJson
                ctx
                200
                {|
                    errcode = 0
                    errmsg = "ok"
                    version_list = list
                |}
        else
            let ok =
                codes.Lock(fun () ->
                    if p.Releases.Count >= 2 then
                        p.Releases.RemoveAt(p.Releases.Count - 1)
                        true
                    else
                        false)

            if ok then writeOk ctx else fail ctx 87012)

/// wxa/queryquota: the platform's audit submissions left [U: fields as WxJava reads them].
let private queryQuota (codes: CodeState) =
    asAccount codes "queryquota" (fun ctx _ _ ->
        let rest, limit = codes.Quota

        writeJson
            ctx
            200
            {|
                errcode = 0
                errmsg = "ok"
                rest = rest
                limit = limit
                speedup_rest = 0
                speedup_limit = 0
            |})

let private domainKeys =
    [
        "requestdomain"
        "wsrequestdomain"
        "uploaddomain"
        "downloaddomain"
        "udpdomain"
        "tcpdomain"
    ]

/// modify_domain: add / delete / set / get; the answer echoes the lists (facts §9.8).
let private modifyDomain (codes: CodeState) =
    asAccount codes "modify_domain" (fun ctx p _ ->
        SimTemplateApi.withBody ctx (fun body ->
            let listOf (name: string) =
                match body.TryGetProperty name with
                | true, v when v.ValueKind = JsonValueKind.Array -> [ for e in v.EnumerateArray() -> e.GetString() ]
                | _ -> []

            let action = prop "action" body

            if not (List.contains action [ "add"; "delete"; "set"; "get" ]) then
                writeError ctx 40097
            else
                let answer = Collections.Generic.Dictionary<string, obj>()
                answer["errcode"] <- 0
                answer["errmsg"] <- "ok"

                codes.Lock(fun () ->
                    for k in domainKeys do
                        let current =
                            match p.Domains.TryGetValue k with
                            | true, v -> v
                            | _ -> []

                        let given = listOf k

                        let updated =
                            match action with
                            | "add" -> current @ (given |> List.filter (fun d -> not (List.contains d current)))
                            | "delete" -> current |> List.filter (fun d -> not (List.contains d given))
                            | "set" -> given
                            | _ -> current

                        p.Domains[k] <- updated
                        answer[k] <- updated
                        answer["invalid_" + k] <- List.empty<string>)

                writeJson ctx 200 answer))

/// The code-management API; answers the state, for the controls (SimCodeControl).
let map (app: IEndpointRouteBuilder) (state: SimState) =
    let codes = CodeState(state)

    let wxa (verb: string) (name: string) (serve: HttpContext -> Task) =
        let d = api state name serve

        if verb = "GET" then
            app.MapGet("/wxa/" + name, d) |> ignore
        else
            app.MapPost("/wxa/" + name, d) |> ignore

    wxa "GET" "gettemplatedraftlist" (SimTemplateApi.draftList codes)
    wxa "GET" "gettemplatelist" (SimTemplateApi.templateList codes)
    wxa "POST" "addtotemplate" (SimTemplateApi.addToTemplate codes)
    wxa "POST" "deletetemplate" (SimTemplateApi.deleteTemplate codes)
    wxa "POST" "commit" (commit codes)
    wxa "POST" "submit_audit" (submitAudit codes)
    wxa "POST" "get_auditstatus" (auditStatus codes)
    wxa "GET" "get_latest_auditstatus" (latestAuditStatus codes)
    wxa "POST" "release" (release codes)
    wxa "GET" "revertcoderelease" (revert codes)
    wxa "GET" "queryquota" (queryQuota codes)
    wxa "POST" "modify_domain" (modifyDomain codes)

    codes

/// Code management of one mini program, for operators who work on one account:
/// `/api/authorizers/{appid}/miniprogram/...` commit, submit-audit, release, revert, audit-status,
/// versions and domains (facts §9.2-§9.8).
module WeChatFs.MiniProgramAccountApi

open System
open System.Net.Http
open System.Text.Json
open System.Text.Json.Nodes
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Domain
open WeChatFs.Http
open WeChatFs.Problems
open WeChatFs.CodeManagement

let private appIdOf (ctx: HttpContext) =
    AuthorizerAppId(string ctx.Request.RouteValues["appid"])

let private answer = MiniProgramApi.writeAnswer
let private body = MiniProgramApi.readBody

/// POST a JSON body as given (submit-audit, domains).
let private passBody (s: Services) (code: CodeClient) (path: string) =
    admin s (fun ctx ->
        task {
            match! body ctx with
            | Error e -> do! problem ctx (InvalidRequest e)
            | Ok b ->
                let! r =
                    code.AsAuthorizer(appIdOf ctx, HttpMethod.Post, path, [], Some(b.ToJsonString()))

                do! answer ctx r
        })

/// commit: `ext_json` may be given as an object (with `{{appid}}`/`{{tenant}}` placeholders) or as
/// the JSON-encoded string WeChat wants (facts §9.2); an object is encoded here.
let commit (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            match! body ctx with
            | Error e -> do! problem ctx (InvalidRequest e)
            | Ok b ->
                let appid = appIdOf ctx

                match b with
                | :? JsonObject as o ->
                    let! tenant =
                        task {
                            let! a = s.Store.GetAuthorizer appid
                            return a |> Option.bind (fun a -> a.Tenant) |> Option.map Ids.tenant
                        }

                    match o["ext_json"] with
                    | :? JsonObject as ext ->
                        o["ext_json"] <- JsonValue.Create(ExtJson.renderExtJson ext (Ids.authorizerAppId appid) tenant)
                    | _ -> ()

                    let! r =
                        code.AsAuthorizer(appid, HttpMethod.Post, "wxa/commit", [], Some(o.ToJsonString()))

                    do! answer ctx r
                | _ -> do! problem ctx (InvalidRequest "a JSON object is required")
        })

let submitAudit (s: Services) (code: CodeClient) = passBody s code "wxa/submit_audit"

let domains (s: Services) (code: CodeClient) = passBody s code "wxa/modify_domain"

let release (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            let! r =
                code.AsAuthorizer(appIdOf ctx, HttpMethod.Post, "wxa/release", [], Some "{}")

            do! answer ctx r
        })

/// revertcoderelease: to the previous release, or `?app_version=N`.
let revert (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            let query =
                match string ctx.Request.Query["app_version"] with
                | "" -> []
                | v -> [ "app_version", v ]

            let! r =
                code.AsAuthorizer(appIdOf ctx, HttpMethod.Get, "wxa/revertcoderelease", query, None)

            do! answer ctx r
        })

/// `?auditid=N`: get_auditstatus of that audit; otherwise get_latest_auditstatus.
let auditStatus (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            let appid = appIdOf ctx

            let! r =
                match Int64.TryParse(string ctx.Request.Query["auditid"]) with
                | true, id ->
                    code.AsAuthorizer(
                        appid,
                        HttpMethod.Post,
                        "wxa/get_auditstatus",
                        [],
                        Some(JsonSerializer.Serialize {| auditid = id |})
                    )
                | _ -> code.AsAuthorizer(appid, HttpMethod.Get, "wxa/get_latest_auditstatus", [], None)

            do! answer ctx r
        })

/// revertcoderelease?action=get_history_version (facts §9.6).
let versions (s: Services) (code: CodeClient) =
    admin s (fun ctx ->
        task {
            let! r =
                code.AsAuthorizer(
                    appIdOf ctx,
                    HttpMethod.Get,
                    "wxa/revertcoderelease",
                    [ "action", "get_history_version" ],
                    None
                )

            do! answer ctx r
        })

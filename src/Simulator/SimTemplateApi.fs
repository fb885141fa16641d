/// The template library of the simulated WeChat (facts §9): drafts and templates, called with the
/// component token; and the body reader the code-management endpoints (SimCodeApi) share.
module WeChatFs.Simulator.SimTemplateApi

open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Simulator.SimApi
open WeChatFs.Simulator.SimMiniPrograms

/// Template-library calls take the component token as access_token= (facts §9).
let private component (codes: CodeState) (serve: HttpContext -> Task) (ctx: HttpContext) =
    match codes.Sim.CheckComponentToken(componentTokenOf ctx) with
    | Error code -> writeError ctx code
    | Ok() -> serve ctx

/// The JSON body, or 44002 (empty post data) without one.
let withBody (ctx: HttpContext) (serve: JsonElement -> Task) =
    task {
        match! readJson ctx with
        | None -> do! fail ctx 44002
        | Some b -> do! serve b
    }

let templateList (codes: CodeState) =
    component codes (fun ctx ->
        let kind = string ctx.Request.Query["template_type"]

        let list =
            codes.Lock(fun () ->
                codes.Templates
                |> Seq.filter (fun kv ->
                    let _, t, _, _, _ = kv.Value
                    kind = "" || kind = string t)
                |> Seq.map (fun kv ->
                    let draft, t, version, desc, at = kv.Value

                    {|
                        create_time = at
                        user_version = version
                        user_desc = desc
                        template_id = kv.Key
                        template_type = t
                        draft_id = draft
                    |})
                |> Array.ofSeq)

        writeJson
            ctx
            200
            {|
                errcode = 0
                errmsg = "ok"
                template_list = list
            |})

let draftList (codes: CodeState) =
    component codes (fun ctx ->
        writeJson
            ctx
            200
            {|
                errcode = 0
                errmsg = "ok"
                draft_list =
                    codes.Drafts
                    |> List.map (fun d ->
                        {|
                            create_time = 1_700_000_000L + d
                            user_version = $"1.0.{d}"
                            user_desc = $"draft {d}"
                            draft_id = d
                        |})
            |})

let addToTemplate (codes: CodeState) =
    component codes (fun ctx ->
        withBody ctx (fun body ->
            match tryInt64Prop "draft_id" body with
            | Some d when List.contains d codes.Drafts ->
                codes.AddTemplate(d, intProp "template_type" 0 body, codes.Sim.Now().ToUnixTimeSeconds())
                |> ignore

                writeOk ctx
            | _ -> fail ctx 85064))

let deleteTemplate (codes: CodeState) =
    component codes (fun ctx ->
        withBody ctx (fun body ->
            match tryInt64Prop "template_id" body with
            | Some t when codes.Lock(fun () -> codes.Templates.Remove t) -> writeOk ctx
            | _ -> fail ctx 85064))

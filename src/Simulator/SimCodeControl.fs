/// The `/sim/miniprograms...` controls for tests and benchmarks:
/// - `POST /sim/miniprograms {count, func_ids?}` adds that many authorized mini programs;
/// - `GET /sim/miniprograms` each one's code, audits, releases and call counts;
/// - `POST /sim/miniprograms/verdict {appid?, verdict, reason?, delay_ms?, push?}` (no appid: default);
/// - `POST /sim/miniprograms/quota {rest, limit?}`, `POST /sim/miniprograms/scan-delay {ms}`;
/// - `POST /sim/miniprograms/templates {draft_id}` a template without the component token;
/// - `POST /sim/miniprograms/latency {ms}` each code-management call's duration, and
///   `GET /sim/miniprograms/concurrency` the most calls that ran at once (`POST` resets it).
module WeChatFs.Simulator.SimCodeControl

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

let private intOf (body: JsonElement) (name: string) =
    match Int32.TryParse(prop name body) with
    | true, n -> Some n
    | _ -> None

let map (app: IEndpointRouteBuilder) (state: SimState) (codes: CodeState) =
    app.MapPost(
        "/sim/miniprograms",
        handler (fun ctx ->
            task {
                let! body = readJson ctx
                let count = body |> Option.bind (fun b -> intOf b "count") |> Option.defaultValue 1

                let funcIds =
                    match body |> Option.map (fun b -> b.TryGetProperty "func_ids") with
                    | Some(true, v) when v.ValueKind = JsonValueKind.Array ->
                        [ for e in v.EnumerateArray() -> e.GetInt32() ]
                    | _ -> defaultPermissions MiniProgram

                let added = state.AddMiniPrograms(count, funcIds)
                do! writeJson ctx 200 {| appids = added |}
            })
    )
    |> ignore

    app.MapGet(
        "/sim/miniprograms",
        handler (fun ctx ->
            let all =
                codes.Lock(fun () ->
                    codes.Programs()
                    |> List.map (fun (appid, p) ->
                        {|
                            appid = appid
                            ext_json = p.Code |> Option.map (fun c -> c.ExtJson) |> Option.toObj
                            template_id = p.Code |> Option.map (fun c -> c.TemplateId) |> Option.toNullable
                            audits =
                                p.Audits
                                |> Seq.map (fun a ->
                                    {|
                                        auditid = a.AuditId
                                        status = a.Status
                                        released = a.Released
                                    |})
                                |> Array.ofSeq
                            releases = p.Releases.Count
                            calls = Collections.Generic.Dictionary<string, int>(p.Calls)
                        |}))

            writeJson ctx 200 all)
    )
    |> ignore

    app.MapPost(
        "/sim/miniprograms/verdict",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some b ->
                    let verdict =
                        {
                            Kind =
                                (match prop "verdict" b with
                                 | "" -> "approve"
                                 | v -> v)
                            Reason = prop "reason" b
                            DelayMs = intOf b "delay_ms" |> Option.defaultValue defaultVerdict.DelayMs
                            Push =
                                match b.TryGetProperty "push" with
                                | true, v when v.ValueKind = JsonValueKind.False -> false
                                | _ -> true
                        }

                    codes.SetVerdict(
                        (match prop "appid" b with
                         | "" -> None
                         | a -> Some a),
                        verdict
                    )

                    do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    app.MapPost(
        "/sim/miniprograms/quota",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some b ->
                    let rest = intOf b "rest" |> Option.defaultValue 0
                    codes.SetQuota(rest, intOf b "limit" |> Option.defaultValue (max rest (snd codes.Quota)))
                    do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    app.MapPost(
        "/sim/miniprograms/scan-delay",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some b ->
                    codes.ScanDelay <- TimeSpan.FromMilliseconds(float (intOf b "ms" |> Option.defaultValue 0))
                    do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    app.MapPost(
        "/sim/miniprograms/templates",
        handler (fun ctx ->
            task {
                let! body = readJson ctx

                let draft =
                    body |> Option.bind (fun b -> intOf b "draft_id") |> Option.defaultValue 1

                let id = codes.AddTemplate(int64 draft, 0, state.Now().ToUnixTimeSeconds())

                do! writeJson ctx 200 {| template_id = id |}
            })
    )
    |> ignore

    app.MapPost(
        "/sim/miniprograms/latency",
        handler (fun ctx ->
            task {
                let! body = readJson ctx
                codes.Latency <- body |> Option.bind (fun b -> intOf b "ms") |> Option.defaultValue 0
                do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    app.MapGet("/sim/miniprograms/concurrency", handler (fun ctx -> writeJson ctx 200 {| max = codes.MostRunning |}))
    |> ignore

    app.MapPost(
        "/sim/miniprograms/concurrency",
        handler (fun ctx ->
            codes.ResetMostRunning()
            writeJson ctx 200 {| max = codes.MostRunning |})
    )
    |> ignore

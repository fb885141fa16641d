/// The simulator's control API under /sim/, for tests and the demo: call counts and injected faults,
/// the clock, pushes and their order, accounts and their authorizations, what was sent to followers.
module WeChatFs.Simulator.SimControl

open System
open System.Net
open System.Threading
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Hosting.Server
open Microsoft.AspNetCore.Hosting.Server.Features
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimApi

let private routeAppId (ctx: HttpContext) = string ctx.Request.RouteValues["appid"]

let private found (ctx: HttpContext) ok =
    if ok then
        writeJson ctx 200 {| ok = true |}
    else
        writeJson
            ctx
            404
            {|
                ok = false
                error = "unknown account"
            |}

/// Maps the control API.
let map (app: IEndpointRouteBuilder) (state: SimState) =
    app.MapGet("/sim/calls", handler (fun ctx -> writeJson ctx 200 (state.Calls())))
    |> ignore

    app.MapPost(
        "/sim/calls/reset",
        handler (fun ctx ->
            state.ResetCalls()
            writeJson ctx 200 {| ok = true |})
    )
    |> ignore

    // {api, errcode?, http_status?, latency_ms?, times?}: the next `times` answers of `api`.
    app.MapPost(
        "/sim/faults",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some body ->
                    let optInt name =
                        match Int32.TryParse(prop name body) with
                        | true, n -> Some n
                        | _ -> None

                    state.InjectFault(
                        prop "api" body,
                        {
                            Errcode = optInt "errcode"
                            HttpStatus = optInt "http_status"
                            LatencyMs = defaultArg (optInt "latency_ms") 0
                        },
                        defaultArg (optInt "times") 1
                    )

                    do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    app.MapPost(
        "/sim/clock/advance",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | Some body ->
                    state.Advance(TimeSpan.FromSeconds(float (intProp "seconds" 0 body)))
                    do! writeJson ctx 200 {| now = state.Now() |}
                | None ->
                    do!
                        writeJson
                            ctx
                            400
                            {|
                                error = "JSON body required: {\"seconds\": n}"
                            |}
            })
    )
    |> ignore

    app.MapPost(
        "/sim/push-ticket",
        handler (fun ctx ->
            task {
                match! Pusher.pushTicket state with
                | Some r -> do! writeJson ctx 200 {| status = r.Status; body = r.Body |}
                | None -> do! writeJson ctx 409 {| error = "no event URL configured" |}
            })
    )
    |> ignore

    // {pre_auth_code, redirect_uri, appid, func_ids?}: what the confirm button does, answered as JSON.
    app.MapPost(
        "/sim/authorize",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some body ->
                    let appid = prop "appid" body

                    let funcIds =
                        match body.TryGetProperty "func_ids" with
                        | true, v when v.ValueKind = Text.Json.JsonValueKind.Array ->
                            [ for e in v.EnumerateArray() -> e.GetInt32() ]
                        | _ ->
                            catalog
                            |> List.tryFind (fun a -> a.AppId = appid)
                            |> Option.map (fun a -> defaultPermissions a.Kind)
                            |> Option.defaultValue []

                    match!
                        AuthPage.confirm state (prop "pre_auth_code" body) (prop "redirect_uri" body) appid funcIds
                    with
                    | Ok(target, code) ->
                        do!
                            writeJson
                                ctx
                                200
                                {|
                                    redirect = target
                                    auth_code = code.Code
                                |}
                    | Error reason -> do! writeJson ctx 400 {| error = reason |}
            })
    )
    |> ignore

    // {order: "before" | "after" | "none"}: when `authorized` is pushed relative to the redirect.
    app.MapPost(
        "/sim/push-order",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | Some body ->
                    state.SetPushOrder(
                        match prop "order" body with
                        | "after" -> PushAfterRedirect
                        | "none" -> NoPush
                        | _ -> PushBeforeRedirect
                    )

                    do! writeJson ctx 200 {| ok = true |}
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
            })
    )
    |> ignore

    app.MapGet(
        "/sim/authorizers",
        handler (fun ctx ->
            let now = state.Now()

            writeJson
                ctx
                200
                (state.Authorizations()
                 |> List.map (fun a ->
                     {|
                         authorizer_appid = a.Account.AppId
                         authorized = a.Authorized
                         refresh_token = a.RefreshToken
                         func_ids = a.FuncIds
                         access_tokens =
                             a.Tokens
                             |> Seq.map (fun t ->
                                 {|
                                     value = t.Value
                                     issued_at = t.IssuedAt
                                     expires_at = t.ExpiresAt
                                     usable = (checkToken now (Some t)).IsOk
                                 |})
                             |> List.ofSeq
                     |})))
    )
    |> ignore

    app.MapPost(
        "/sim/authorizers/{appid}/revoke",
        handler (fun ctx ->
            task {
                let appid = routeAppId ctx

                if state.Revoke appid then
                    let! _ = Pusher.pushUnauthorized state appid
                    do! found ctx true
                else
                    do! found ctx false
            })
    )
    |> ignore

    app.MapPost(
        "/sim/authorizers/{appid}/invalidate-refresh-token",
        handler (fun ctx -> found ctx (state.InvalidateRefreshToken(routeAppId ctx)))
    )
    |> ignore

    app.MapPost(
        "/sim/authorizers/{appid}/rotate-refresh-token",
        handler (fun ctx -> found ctx (state.RotateRefreshTokenNext(routeAppId ctx)))
    )
    |> ignore

    app.MapPost(
        "/sim/authorizers/{appid}/expire-access-token",
        handler (fun ctx -> found ctx (state.ExpireAccessTokens(routeAppId ctx)))
    )
    |> ignore

    app.MapGet(
        "/sim/component-tokens",
        handler (fun ctx ->
            writeJson
                ctx
                200
                (state.ComponentTokens()
                 |> List.map (fun t ->
                     {|
                         value = t.Value
                         issued_at = t.IssuedAt
                         expires_at = t.ExpiresAt
                     |})))
    )
    |> ignore

    // {appid, msg_type, fields: {Name: value, ...}, from_user?, create_time?, tries?}: one message or
    // event as WeChat sends it; answers with what the gateway replied, checked and decrypted.
    app.MapPost(
        "/sim/messages",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some body ->
                    let appid = prop "appid" body

                    match catalog |> List.tryFind (fun a -> a.AppId = appid) with
                    | None -> do! writeJson ctx 404 {| error = "unknown account" |}
                    | Some account ->
                        let fields =
                            match body.TryGetProperty "fields" with
                            | true, f when f.ValueKind = Text.Json.JsonValueKind.Object ->
                                [
                                    for p in f.EnumerateObject() ->
                                        p.Name,
                                        (if p.Value.ValueKind = Text.Json.JsonValueKind.String then
                                             p.Value.GetString()
                                         else
                                             p.Value.GetRawText())
                                ]
                            | _ -> []

                        let createTime =
                            match Int64.TryParse(prop "create_time" body) with
                            | true, t -> t
                            | _ -> state.Now().ToUnixTimeSeconds()

                        let fromUser =
                            match prop "from_user" body with
                            | "" -> "oSIM_USER_0001"
                            | u -> u

                        let xml =
                            SimMessages.messageXml account.UserName fromUser createTime (prop "msg_type" body) fields

                        match! SimMessages.send state appid xml (intProp "tries" 3 body) with
                        | Error e -> do! writeJson ctx 504 {| error = e |}
                        | Ok r ->
                            let reply, replyError =
                                match r.Reply with
                                | SimMessages.NoReply -> null, null
                                | SimMessages.Reply plain -> plain, null
                                | SimMessages.InvalidReply reason -> null, reason

                            do!
                                writeJson
                                    ctx
                                    200
                                    {|
                                        attempts = r.Attempts
                                        status = r.Status
                                        body = r.Body
                                        reply = reply
                                        reply_error = replyError
                                        elapsed_ms = r.Elapsed.TotalMilliseconds
                                    |}
            })
    )
    |> ignore

    // {group?: 1..5}: the full-network release check against that test group; a pass/fail report.
    app.MapPost(
        "/sim/release-test",
        handler (fun ctx ->
            task {
                let! body = readJson ctx

                let group =
                    body
                    |> Option.map (intProp "group" 1)
                    |> Option.defaultValue 1
                    |> max 1
                    |> min 5

                let! cases = SimMessages.releaseTest state group

                do!
                    writeJson
                        ctx
                        200
                        {|
                            group = group
                            passed = cases |> List.forall (fun c -> c.Passed)
                            cases =
                                cases
                                |> List.map (fun c ->
                                    {|
                                        name = c.Name
                                        passed = c.Passed
                                        detail = c.Detail
                                    |})
                        |}
            })
    )
    |> ignore

    app.MapGet("/sim/custom-messages", handler (fun ctx -> writeJson ctx 200 (state.CustomMessages())))
    |> ignore

    app.MapGet("/sim/pushes", handler (fun ctx -> writeJson ctx 200 (state.Pushes())))
    |> ignore

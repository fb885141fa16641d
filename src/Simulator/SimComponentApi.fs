/// WeChat's component API as the simulator serves it (facts §3, §8, §10): the component token, the
/// pre_auth_code, api_query_auth, the authorizer token, info and list, and the calls an account makes
/// with its own token (custom messages, the jsapi_ticket, fast registration).
module WeChatFs.Simulator.SimComponentApi

open System
open System.IO
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState
open WeChatFs.Simulator.SimApi

let private checkAppId (state: SimState) (ctx: HttpContext) (body: JsonElement) (serve: unit -> Task) =
    if prop "component_appid" body <> state.Options.ComponentAppId then
        writeError ctx 61011
    else
        serve ()

let componentToken (state: SimState) (ctx: HttpContext) =
    task {
        match! readJson ctx with
        | None -> do! writeError ctx 47001
        | Some body ->
            match
                state.ComponentToken(
                    prop "component_appid" body,
                    prop "component_appsecret" body,
                    prop "component_verify_ticket" body
                )
            with
            | Error code -> do! writeError ctx code
            | Ok t ->
                do!
                    writeJson
                        ctx
                        200
                        {|
                            component_access_token = t.Value
                            expires_in = 7200
                        |}
    }
    :> Task

/// api_start_push_ticket wants component_secret (facts §3.10); a ticket push follows shortly.
let startPushTicket (state: SimState) (ctx: HttpContext) =
    task {
        match! readJson ctx with
        | None -> do! writeError ctx 47001
        | Some body ->
            if prop "component_appid" body <> state.Options.ComponentAppId then
                do! writeError ctx 61011
            elif prop "component_secret" body <> state.Options.ComponentAppSecret then
                do! writeError ctx 40125
            else
                do! writeOk ctx

                Task.Run(fun () ->
                    task {
                        do! Task.Delay 100
                        let! _ = Pusher.pushTicket state
                        ()
                    }
                    :> Task)
                |> ignore
    }
    :> Task

let createPreAuthCode (state: SimState) =
    withComponentToken state (fun ctx body ->
        checkAppId state ctx body (fun () ->
            let code, expiresIn = state.CreatePreAuthCode()

            writeJson
                ctx
                200
                {|
                    pre_auth_code = code
                    expires_in = expiresIn
                |}))

let private funcInfo (ids: int list) =
    ids |> List.map (fun id -> {| funcscope_category = {| id = id |} |})

let queryAuth (state: SimState) =
    withComponentToken state (fun ctx body ->
        checkAppId state ctx body (fun () ->
            match state.QueryAuth(prop "authorization_code" body) with
            | Error code -> writeError ctx code
            | Ok(a, token) ->
                writeJson
                    ctx
                    200
                    {|
                        authorization_info =
                            {|
                                authorizer_appid = a.Account.AppId
                                authorizer_access_token = token.Value
                                expires_in = 7200
                                authorizer_refresh_token = a.RefreshToken
                                func_info = funcInfo a.FuncIds
                            |}
                    |}))

let authorizerToken (state: SimState) =
    withComponentToken state (fun ctx body ->
        checkAppId state ctx body (fun () ->
            match state.AuthorizerToken(prop "authorizer_appid" body, prop "authorizer_refresh_token" body) with
            | Error code -> writeError ctx code
            | Ok(a, token) ->
                writeJson
                    ctx
                    200
                    {|
                        authorizer_access_token = token.Value
                        expires_in = 7200
                        authorizer_refresh_token = a.RefreshToken
                    |}))

/// api_get_authorizer_info (facts §3.5); MiniProgramInfo only for mini programs.
let authorizerInfo (state: SimState) =
    withComponentToken state (fun ctx body ->
        checkAppId state ctx body (fun () ->
            match state.Authorization(prop "authorizer_appid" body) with
            | Some a when a.Authorized ->
                let acct = a.Account

                let info =
                    dict
                        [
                            "nick_name", box acct.NickName
                            "head_img", box $"http://wx.qlogo.cn/mmopen/sim/{acct.AppId}/0"
                            "service_type_info", box {| id = acct.ServiceType |}
                            "verify_type_info", box {| id = acct.VerifyType |}
                            "user_name", box acct.UserName
                            "principal_name", box acct.Principal
                            "alias", box ""
                            "qrcode_url", box $"http://mmbiz.qpic.cn/sim/{acct.AppId}"
                            "account_status", box 1
                            "business_info",
                            box
                                {|
                                    open_store = 0
                                    open_scan = 0
                                    open_pay = 0
                                    open_card = 0
                                    open_shake = 0
                                |}
                        ]

                let info =
                    match acct.Kind with
                    | MiniProgram ->
                        let d = Collections.Generic.Dictionary<string, obj>(info)

                        d["MiniProgramInfo"] <-
                            {|
                                network =
                                    {|
                                        RequestDomain = [| "https://api.example.com" |]
                                        WsRequestDomain = Array.empty<string>
                                        UploadDomain = Array.empty<string>
                                        DownloadDomain = Array.empty<string>
                                    |}
                                categories = [| {| first = "工具"; second = "效率" |} |]
                                visit_status = 0
                            |}

                        d :> Collections.Generic.IDictionary<string, obj>
                    | OfficialAccount -> info

                writeJson
                    ctx
                    200
                    {|
                        authorizer_info = info
                        authorization_info =
                            {|
                                authorizer_appid = acct.AppId
                                authorizer_refresh_token = a.RefreshToken
                                func_info = funcInfo a.FuncIds
                            |}
                    |}
            | _ -> writeError ctx 61003))

/// api_get_authorizer_list (facts §3.8): `refresh_token`, at most 500 a page, authorized accounts only.
let authorizerList (state: SimState) =
    withComponentToken state (fun ctx body ->
        checkAppId state ctx body (fun () ->
            let all =
                state.Authorizations()
                |> List.filter (fun a -> a.Authorized)
                |> List.sortBy (fun a -> a.Account.AppId)

            let offset = max 0 (intProp "offset" 0 body)
            let count = intProp "count" 500 body |> max 1 |> min 500

            writeJson
                ctx
                200
                {|
                    total_count = all.Length
                    list =
                        all
                        |> List.skip (min offset all.Length)
                        |> List.truncate count
                        |> List.map (fun a ->
                            {|
                                authorizer_appid = a.Account.AppId
                                refresh_token = a.RefreshToken
                                auth_time = a.AuthTime.ToUnixTimeSeconds()
                            |})
                |}))

/// cgi-bin/message/custom/send (facts §10): recorded for the tests and the release report.
let customSend (state: SimState) =
    withAuthorizerToken state (fun ctx a ->
        task {
            match! readJson ctx with
            | None -> do! writeError ctx 47001
            | Some body ->
                let msgType = prop "msgtype" body

                let content =
                    match body.TryGetProperty "text" with
                    | true, t -> prop "content" t
                    | _ -> ""

                state.RecordCustomMessage
                    {
                        AppId = a.Account.AppId
                        ToUser = prop "touser" body
                        MsgType = msgType
                        Content = content
                        At = state.Now()
                    }

                do! writeOk ctx
        }
        :> Task)

/// cgi-bin/ticket/getticket?type=jsapi (facts §8).
let getTicket (state: SimState) =
    withAuthorizerToken state (fun ctx a ->
        writeJson
            ctx
            200
            {|
                errcode = 0
                errmsg = "ok"
                ticket = $"sim_jsapi_{a.Account.AppId}_{state.Now().ToUnixTimeSeconds() / 7200L}"
                expires_in = 7200
            |})

/// The legal person's WeChat id with which fast registration fails verification in the simulator
/// (status -1, "open verity failed"), to exercise that path.
let fastRegisterFailingWechat = "verify-fails"

/// fastregisterweapp?action=create (facts §1.3): accepted at once; the outcome follows a moment later
/// as a notify_third_fasteregister push, with the new mini program's appid and an auth code on success.
let fastRegisterWeapp (state: SimState) =
    withComponentToken state (fun ctx body ->
        let info: Pusher.FastRegisterInfo =
            {
                Name = prop "name" body
                Code = prop "code" body
                CodeType = intProp "code_type" 0 body
                LegalPersonaWechat = prop "legal_persona_wechat" body
                LegalPersonaName = prop "legal_persona_name" body
                ComponentPhone = prop "component_phone" body
            }

        let complete =
            info.Name <> ""
            && info.Code <> ""
            && info.LegalPersonaWechat <> ""
            && info.LegalPersonaName <> ""
            && List.contains info.CodeType [ 1; 2; 3 ]

        if string ctx.Request.Query["action"] <> "create" || not complete then
            writeError ctx 40097
        else
            task {
                do! writeOk ctx

                Task.Run(fun () ->
                    task {
                        do! Task.Delay 100

                        let! _ =
                            if info.LegalPersonaWechat = fastRegisterFailingWechat then
                                Pusher.pushFastRegister state -1 "open verity failed" None info
                            else
                                let code = state.FastRegister info.Name
                                Pusher.pushFastRegister state 0 "OK" (Some code) info

                        ()
                    }
                    :> Task)
                |> ignore
            }
            :> Task)

/// How the simulated WeChat answers (facts §0): JSON in, JSON out, errors as HTTP 200 with errcode
/// and an errmsg carrying a fake rid, tokens in the query string, every call counted and open to
/// injected faults. The endpoints themselves are in SimComponentApi, SimCodeApi and the others.
module WeChatFs.Simulator.SimApi

open System
open System.IO
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState

let private errmsgs =
    dict
        [
            40001, "invalid credential, access_token is invalid or not latest"
            40003, "invalid openid"
            40029, "invalid code"
            40030, "invalid refresh_token"
            40163, "code been used"
            42002, "refresh_token expired"
            48001, "api unauthorized"
            40097, "invalid args"
            40125, "invalid appsecret"
            41001, "access_token missing"
            41004, "appsecret missing"
            42001, "access_token expired"
            47001, "data format error"
            61003, "component is not authorized by this account"
            61005, "component ticket is expired"
            61006, "component ticket is invalid"
            61009, "code is invalid"
            61010, "code is expired"
            61011, "invalid component"
            61023, "refresh_token is invalid"
        ]

let writeJson (ctx: HttpContext) (status: int) (body: obj) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "application/json; charset=utf-8"
    ctx.Response.WriteAsync(JsonSerializer.Serialize body)

/// `{"errcode": N, "errmsg": "... rid: ..."}` with HTTP 200, as WeChat answers errors (facts §0).
let writeError (ctx: HttpContext) (code: int) =
    let text =
        match errmsgs.TryGetValue code with
        | true, t -> t
        | _ -> "system error"

    writeJson
        ctx
        200
        {|
            errcode = code
            errmsg = $"{text} rid: {Guid.NewGuid().ToString().Substring(0, 23)}"
        |}

let writeOk (ctx: HttpContext) =
    writeJson ctx 200 {| errcode = 0; errmsg = "ok" |}

let readJson (ctx: HttpContext) =
    task {
        use reader = new StreamReader(ctx.Request.Body)
        let! text = reader.ReadToEndAsync()

        try
            return Some(JsonDocument.Parse(text).RootElement.Clone())
        with :? JsonException ->
            return None
    }

let prop (name: string) (e: JsonElement) =
    match e.TryGetProperty name with
    | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
    | true, v when v.ValueKind = JsonValueKind.Number -> v.GetRawText()
    | _ -> ""

let intProp (name: string) (fallback: int) (e: JsonElement) =
    match Int32.TryParse(prop name e) with
    | true, n -> n
    | _ -> fallback

/// A whole-number property, if it is one.
let tryInt64Prop (name: string) (e: JsonElement) =
    match Int64.TryParse(prop name e) with
    | true, n -> Some n
    | _ -> None

/// Component APIs take the token as component_access_token= or access_token= (facts §0, §14.1).
let componentTokenOf (ctx: HttpContext) =
    let q = ctx.Request.Query
    let a = string q["component_access_token"]
    if a <> "" then a else string q["access_token"]

/// Counts the call, then plays an injected fault if one is queued: latency, an HTTP status or an errcode.
let api (state: SimState) (name: string) (serve: HttpContext -> Task) =
    RequestDelegate(fun ctx ->
        task {
            state.Count name

            match state.NextFault name with
            | Some f ->
                if f.LatencyMs > 0 then
                    do! Task.Delay f.LatencyMs

                match f.HttpStatus, f.Errcode with
                | Some status, _ ->
                    ctx.Response.StatusCode <- status
                    do! ctx.Response.WriteAsync "simulated failure"
                | None, Some code -> do! writeError ctx code
                | None, None -> do! serve ctx
            | None -> do! serve ctx
        }
        :> Task)

/// Runs `serve` with the request's JSON body, after the component token check.
let withComponentToken (state: SimState) (serve: HttpContext -> JsonElement -> Task) (ctx: HttpContext) =
    task {
        match state.CheckComponentToken(componentTokenOf ctx) with
        | Error code -> do! writeError ctx code
        | Ok() ->
            match! readJson ctx with
            | None -> do! writeError ctx 47001
            | Some body -> do! serve ctx body
    }
    :> Task

/// Authorizer-token APIs: the token says which account acts (facts §0, §12).
let withAuthorizerToken (state: SimState) (serve: HttpContext -> Authorization -> Task) (ctx: HttpContext) =
    match state.CheckAuthorizerToken(string ctx.Request.Query["access_token"]) with
    | Error code -> writeError ctx code
    | Ok a -> serve ctx a

/// An endpoint's handler.
let handler (f: HttpContext -> Task) = RequestDelegate(fun ctx -> f ctx)

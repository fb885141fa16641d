/// The one mapping from an API error to its answer. Every refusal the HTTP API gives is a case of
/// `ApiError`; `problem` writes it as RFC 7807 problem details (status, title, detail and the extra
/// fields clients read, such as errcode, meaning, action and field). Handlers return or route errors
/// as values; the statuses and texts live here only, so an answer cannot drift between two routes.
module WeChatFs.Problems

open System
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open WeChatFs.Domain
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon

/// What a 404 is about.
[<RequireQualifiedAccess>]
type Missing =
    | Authorizer
    | FuncKey
    | WxTkId
    | Follower
    | Deployment
    | Merchant
    | RedPacket
    | VerificationFile
    | Delivery

/// Which guard refused a call without the right key.
[<RequireQualifiedAccess>]
type Guard =
    /// The internal API: `WeChatFs:Admin:ApiKey`.
    | AdminApi
    /// The metrics endpoint, which may also be opened to anonymous scrapers.
    | Metrics

/// A body over a route's limit.
[<RequireQualifiedAccess>]
type Oversize =
    /// A proxy route's body over `WeChatFs:Proxy:MaxBodyBytes`.
    | ProxyBody of limit: int64
    /// A domain verification file's content.
    | VerificationFile of limit: int

type ApiError =
    /// 400 "Bad request": the request cannot be read or lacks something.
    | BadRequest of detail: string
    /// 400 "Bad request" about one named field.
    | BadField of field: string * detail: string
    /// 400 "Bad request" with every field's problem (the first one also as `field`).
    | InvalidFields of RedPacks.FieldError list
    /// 400 "Invalid request": the mini-program API's wording for a body it cannot use.
    | InvalidRequest of detail: string
    /// 400 "Invalid deployment" with each problem in `errors`.
    | InvalidDeployment of errors: string list
    /// 400 "Bad proxy path".
    | BadProxyPath of detail: string
    /// 400: a red packet is only sent with an Idempotency-Key.
    | IdempotencyKeyRequired
    /// 422: the key already named another red packet (its id).
    | IdempotencyKeyReused of redPacketId: RedPackId
    /// 401 with `WWW-Authenticate` set by the caller.
    | Unauthorized of Guard
    | NotFound of Missing
    /// 403/404: a web page on behalf of an account that the platform refuses.
    | OAuthRefused of OAuth.Refusal
    /// 409: a delivered message is not sent again.
    | AlreadyDelivered
    /// 413
    | Oversized of Oversize
    /// 500: a write that could not be read back.
    | NotStored of detail: string
    | WeChat of WeChatError
    | Token of TokenError
    | Authorization of AuthorizationError
    | AuthorizerToken of AuthorizerTokenError
    | Call of CodeManagement.CallError
    | JsApi of JsApiTickets.JsApiError

/// Status, title and explanation of an OAuth refusal: the same for followers' pages and for
/// problem details.
let refusal (r: OAuth.Refusal) =
    match r with
    | OAuth.UnknownFuncKey -> 404, "Unknown page", "no funcKey route of this name is configured on the platform"
    | OAuth.UnknownAccount -> 404, "Unknown account", "this official account has not authorized the platform"
    | OAuth.AccountNotAuthorized status ->
        403,
        "Account not authorized",
        $"this official account's authorization is {AuthorizerStatus.toText status}; the merchant must authorize the platform again"
    | OAuth.TenantMismatch _ -> 403, "Not allowed for this account", "this funcKey route belongs to another tenant"

/// The WeChat error fields of a problem: errcode, its meaning and the action it calls for.
let errcodeDetails (code: int) : (string * obj) list =
    match ErrorGuide.tryFind code with
    | Some e -> [ "errcode", box code; "meaning", box e.Meaning; "action", box e.Action ]
    | None -> [ "errcode", box code; "meaning", box (ErrorGuide.explain code) ]

/// One answer: status, title, detail and the extra fields.
type ProblemAnswer =
    {
        Status: int
        Title: string
        Detail: string
        Extra: (string * obj) list
    }

let private answer status title detail extra =
    {
        Status = status
        Title = title
        Detail = detail
        Extra = extra
    }

let private missing (m: Missing) =
    match m with
    | Missing.Authorizer -> "Unknown authorizer", "no account with this appid has authorized the platform"
    | Missing.FuncKey -> "Unknown funcKey", "no route of this name"
    | Missing.WxTkId -> "Unknown wxTkId", "the tracking token is unknown or has expired"
    | Missing.Follower -> "Unknown follower", "no follower of this account has signed in here"
    | Missing.Deployment -> "Unknown deployment", "no deployment has this id"
    | Missing.Merchant -> "Not found", "no such merchant"
    | Missing.RedPacket -> "Not found", "no such red packet"
    | Missing.VerificationFile -> "Unknown file", "no verification file of this name"
    | Missing.Delivery -> "Unknown delivery", "no delivery has this id"

let private weChat (err: WeChatError) =
    match err with
    | ApiError(code, _) -> answer 502 "WeChat refused the call" (describeError err) (errcodeDetails code)
    | HttpStatus _
    | Transport _
    | InvalidResponse _ -> answer 502 "WeChat could not be reached" (describeError err) []

let private token (err: TokenError) =
    match err with
    | NoTicket -> answer 503 "No component_verify_ticket yet" (describeTokenError err) []
    | RefreshBusy -> answer 503 "Token refresh in progress" (describeTokenError err) []
    // 61005/61006: nothing to do but wait for WeChat's next push, as when no ticket arrived yet.
    | RefreshFailed(ApiError(code, _) as e) when classifyErrcode code = TicketRejected ->
        answer 503 "Waiting for a new component_verify_ticket" (describeError e) (errcodeDetails code)
    | RefreshFailed e -> weChat e

let private authorizerToken (e: AuthorizerTokenError) =
    match e with
    | UnknownAuthorizer ->
        let title, detail = missing Missing.Authorizer
        answer 404 title detail []
    | Unusable(status, reason) ->
        answer
            409
            $"Authorizer is {AuthorizerStatus.toText status}"
            (if reason = "" then
                 "the merchant must authorize the platform again"
             else
                 reason)
            [ "status_code", box (AuthorizerStatus.toText status) ]
    | ComponentTokenUnavailable t -> token t
    | AuthorizerRefreshFailed w -> weChat w
    | AuthorizerRefreshBusy ->
        answer
            503
            "Token refresh in progress"
            "the token is being refreshed or backing off after a failure; try again shortly"
            []

let private fields (errors: RedPacks.FieldError list) =
    let detail =
        errors |> List.map (fun e -> $"{e.Field} {e.Problem}") |> String.concat "; "

    let listed =
        errors
        |> List.map (fun e ->
            {|
                field = e.Field
                problem = e.Problem
            |})

    match errors with
    | first :: _ -> answer 400 "Bad request" detail [ "field", box first.Field; "errors", box listed ]
    | [] -> answer 400 "Bad request" detail [ "errors", box listed ]

/// The answer an error gets: a total function, so every case has exactly one answer.
let describe (e: ApiError) : ProblemAnswer =
    match e with
    | BadRequest detail -> answer 400 "Bad request" detail []
    | BadField(field, detail) -> answer 400 "Bad request" detail [ "field", box field ]
    | InvalidFields errors -> fields errors
    | InvalidRequest detail -> answer 400 "Invalid request" detail []
    | InvalidDeployment errors ->
        answer 400 "Invalid deployment" (String.Join("; ", errors)) [ "errors", box (Array.ofList errors) ]
    | BadProxyPath detail -> answer 400 "Bad proxy path" detail []
    | IdempotencyKeyRequired ->
        answer
            400
            "Idempotency-Key required"
            "send an Idempotency-Key header (at most 255 characters): the same key always answers the same red packet and never sends a second"
            [ "field", box "Idempotency-Key" ]
    | IdempotencyKeyReused id ->
        answer
            422
            "Idempotency-Key reused"
            $"this Idempotency-Key belongs to red packet {Ids.redPackId id}, sent with a different request; use a new key for a new packet"
            [ "field", box "Idempotency-Key"; "id", box (Ids.redPackId id) ]
    | Unauthorized Guard.AdminApi ->
        answer
            401
            "Unauthorized"
            "send Authorization: Bearer <WeChatFs:Admin:ApiKey>; with no key configured the internal API refuses every call"
            []
    | Unauthorized Guard.Metrics ->
        answer
            401
            "Unauthorized"
            "send Authorization: Bearer <WeChatFs:Admin:ApiKey>, or set WeChatFs:Metrics:Anonymous to true"
            []
    | NotFound m ->
        let title, detail = missing m
        answer 404 title detail []
    | OAuthRefused r ->
        let status, title, detail = refusal r
        answer status title detail []
    | AlreadyDelivered -> answer 409 "Already delivered" "a delivered message is not sent again" []
    | Oversized(Oversize.ProxyBody limit) ->
        answer
            413
            "Body too large"
            $"the proxies pass on bodies of at most {limit} bytes (WeChatFs:Proxy:MaxBodyBytes)"
            []
    | Oversized(Oversize.VerificationFile limit) ->
        answer 413 "Too large" $"a verification file holds at most {limit} bytes" [ "field", box "content" ]
    | NotStored detail -> answer 500 "Not stored" detail []
    | WeChat w -> weChat w
    | Token t -> token t
    | Authorization(ComponentUnavailable t) -> token t
    | Authorization(WeChatRefused w) -> weChat w
    | Authorization ExchangeBusy ->
        answer 503 "Authorization in progress" "another instance is exchanging this authorization code" []
    | AuthorizerToken t -> authorizerToken t
    | Call(CodeManagement.NoAuthorizerToken t) -> authorizerToken t
    | Call(CodeManagement.NoComponentToken t) -> token t
    | Call(CodeManagement.WeChatFailed w) -> weChat w
    | JsApi(JsApiTickets.AuthorizerUnavailable t) -> authorizerToken t
    | JsApi(JsApiTickets.TicketRefused w) -> weChat w
    | JsApi JsApiTickets.TicketBusy ->
        answer 503 "Ticket refresh in progress" "another instance is fetching the ticket" []

/// RFC 7807 problem details. Prefer `problem`; this raw writer stays for answers not yet named.
let writeProblem (ctx: HttpContext) (status: int) (title: string) (detail: string) (extra: (string * obj) list) =
    let body = Collections.Generic.Dictionary<string, obj>()
    body["type"] <- "about:blank"
    body["title"] <- title
    body["status"] <- status
    body["detail"] <- detail

    for k, v in extra do
        body[k] <- v

    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "application/problem+json; charset=utf-8"
    ctx.Response.WriteAsync(JsonSerializer.Serialize body)

/// The one way an error becomes a response.
let problem (ctx: HttpContext) (e: ApiError) : Task =
    let a = describe e
    writeProblem ctx a.Status a.Title a.Detail a.Extra

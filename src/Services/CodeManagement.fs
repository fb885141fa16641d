/// WeChat's code-management calls (facts §9): the template library with the component token, and
/// commit / submit_audit / audit status / release / revert / queryquota / modify_domain with the
/// mini program's token. A refused token (40001/40014/42001) is replaced and the call made once more.
module WeChatFs.CodeManagement

open System
open System.Net.Http
open System.Text
open System.Text.Json
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.Wire
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers

type CallError =
    | NoAuthorizerToken of AuthorizerTokenError
    | NoComponentToken of TokenError
    | WeChatFailed of WeChatError

let errcodeOfCall =
    function
    | WeChatFailed(ApiError(code, _)) -> Some code
    | _ -> None

let describeCall =
    function
    | NoAuthorizerToken UnknownAuthorizer -> "the account never authorized the platform"
    | NoAuthorizerToken(Unusable(status, reason)) -> $"the account is {AuthorizerStatus.toText status} {reason}".Trim()
    | NoAuthorizerToken(ComponentTokenUnavailable e)
    | NoComponentToken e -> describeTokenError e
    | NoAuthorizerToken(AuthorizerRefreshFailed e) -> describeError e
    | NoAuthorizerToken AuthorizerRefreshBusy -> "the account's token is being refreshed"
    | WeChatFailed e -> describeError e

/// The account no longer authorizes the platform: its targets are skipped, not failed.
let isUnauthorized =
    function
    | NoAuthorizerToken UnknownAuthorizer
    | NoAuthorizerToken(Unusable _) -> true
    | WeChatFailed(ApiError(61003, _)) -> true
    | _ -> false

type AuditInfo =
    {
        AuditId: int64 option
        Status: int
        Reason: string
        Screenshots: string
        SubmittedAt: int64 option
    }

let private int64Prop (name: string) (e: JsonElement) =
    stringProp name e
    |> Option.bind (fun v ->
        match Int64.TryParse v with
        | true, n -> Some n
        | _ -> None)

let private readJson (raw: RawResponse) =
    if raw.Status < 200 || raw.Status > 299 then
        Error(WeChatFailed(HttpStatus raw.Status))
    else
        try
            use doc = JsonDocument.Parse(ReadOnlyMemory raw.Body)
            let root = doc.RootElement.Clone()

            match errcodeOf root with
            | Some(code, msg) -> Error(WeChatFailed(ApiError(code, msg)))
            | None -> Ok root
        with :? JsonException as ex ->
            Error(WeChatFailed(InvalidResponse ex.Message))

type CodeClient(client: Client, authorizers: AuthorizerService, components: ComponentTokenService) =
    let bodyOf (body: string option) =
        body |> Option.map Encoding.UTF8.GetBytes

    /// One call with the mini program's token, once more with a fresh token if it was refused.
    member _.AsAuthorizer(appid: AuthorizerAppId, method: HttpMethod, path: string, query, body: string option) =
        let once () =
            task {
                match! authorizers.GetToken appid with
                | Error e -> return Error(NoAuthorizerToken e), None
                | Ok t ->
                    let! sent =
                        client.ForwardAsAuthorizer(method, path, query, bodyOf body, Some "application/json", t.Token)

                    match sent with
                    | Error e -> return Error(WeChatFailed e), None
                    | Ok(raw, _) -> return readJson raw, Some t.Token
            }

        task {
            match! once () with
            | Error(WeChatFailed(ApiError(code, _))), Some token when classifyErrcode code = TokenRejected ->
                let! _ = authorizers.Invalidate(appid, token)
                let! second, _ = once ()
                return second
            | result, _ -> return result
        }

    /// The template library takes the component token as `access_token=` (facts §9).
    member _.AsComponent(method: HttpMethod, path: string, query, body: string option) =
        task {
            let! result =
                components.WithToken(fun token ->
                    task {
                        let! sent =
                            client.Forward(
                                method,
                                path,
                                query,
                                bodyOf body,
                                Some "application/json",
                                ("access_token", Ids.componentToken token)
                            )

                        match sent with
                        | Error e -> return Error e
                        | Ok(raw, _) ->
                            match readJson raw with
                            | Ok root -> return Ok(Ok root)
                            | Error(WeChatFailed(ApiError(code, _) as e)) when classifyErrcode code = TokenRejected ->
                                return Error e
                            | Error other -> return Ok(Error other)
                    })

            match result with
            | Ok inner -> return inner
            | Error(ComponentTokenFailed e) -> return Error(NoComponentToken e)
            | Error(WeChatCallFailed e) -> return Error(WeChatFailed e)
        }

    /// commit: ext_json as a JSON-encoded string (facts §9.2).
    member this.Commit(appid, templateId: int64, extJson: string, userVersion: string, userDesc: string) =
        let body =
            JsonSerializer.Serialize
                {|
                    template_id = templateId
                    ext_json = extJson
                    user_version = userVersion
                    user_desc = userDesc
                |}

        task {
            let! r = this.AsAuthorizer(appid, HttpMethod.Post, "wxa/commit", [], Some body)
            return r |> Result.map ignore
        }

    member this.SubmitAudit(appid, body: string) =
        task {
            let! r = this.AsAuthorizer(appid, HttpMethod.Post, "wxa/submit_audit", [], Some body)

            return
                r
                |> Result.bind (fun root ->
                    match int64Prop "auditid" root with
                    | Some id -> Ok id
                    | None -> Error(WeChatFailed(InvalidResponse "auditid is missing")))
        }

    member this.AuditStatus(appid, auditId: int64) =
        task {
            let! r =
                this.AsAuthorizer(
                    appid,
                    HttpMethod.Post,
                    "wxa/get_auditstatus",
                    [],
                    Some(JsonSerializer.Serialize {| auditid = auditId |})
                )

            return r |> Result.map (fun root -> this.ReadAudit root)
        }

    member this.LatestAuditStatus(appid) =
        task {
            let! r =
                this.AsAuthorizer(appid, HttpMethod.Get, "wxa/get_latest_auditstatus", [], None)

            return r |> Result.map (fun root -> this.ReadAudit root)
        }

    /// get_auditstatus / get_latest_auditstatus: `ScreenShot` (old) or `screenshot` (new), facts §9.5.
    member _.ReadAudit(root: JsonElement) =
        {
            AuditId = int64Prop "auditid" root
            Status = intProp "status" root |> Option.defaultValue 2
            Reason = stringProp "reason" root |> Option.defaultValue ""
            Screenshots =
                stringProp "screenshot" root
                |> Option.orElse (stringProp "ScreenShot" root)
                |> Option.defaultValue ""
            SubmittedAt = int64Prop "submit_audit_time" root
        }

    /// release wants a body, `{}` at least (facts §9.6).
    member this.Release(appid) =
        task {
            let! r = this.AsAuthorizer(appid, HttpMethod.Post, "wxa/release", [], Some "{}")
            return r |> Result.map ignore
        }

    /// wxa/queryquota: (rest, limit) of audit submissions, when the server offers it.
    member this.QueryQuota(appid) =
        task {
            let! r = this.AsAuthorizer(appid, HttpMethod.Get, "wxa/queryquota", [], None)
            return r |> Result.map (fun root -> intProp "rest" root, intProp "limit" root)
        }

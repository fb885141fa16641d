/// Calls to WeChat's API (facts §3, §10). Each returns a Result: an errcode answer, a non-2xx status
/// or a broken connection are values the caller decides about. Tokens travel in the query string, as
/// WeChat wants, so no URL is ever logged here.
module WeChatFs.WeChatClient

open System
open System.Net.Http
open System.Text
open System.Text.Json
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.Wire

type WeChatError =
    /// WeChat answered with an errcode other than 0.
    | ApiError of code: int * message: string
    | HttpStatus of status: int
    | Transport of reason: string
    | InvalidResponse of reason: string

let describeError =
    function
    | ApiError(code, msg) -> $"errcode {code} ({msg}): {ErrorGuide.explain code}"
    | HttpStatus s -> $"WeChat answered HTTP {s}"
    | Transport reason -> $"could not reach WeChat: {reason}"
    | InvalidResponse reason -> $"WeChat's answer could not be read: {reason}"

let errcodeOfError =
    function
    | ApiError(code, _) -> Some code
    | _ -> None

/// How an error bears on the token, ticket or refresh token used (Domain.classifyErrcode), with
/// transport problems and 5xx answers counted as transient.
let failureKind =
    function
    | ApiError(code, _) -> classifyErrcode code
    | HttpStatus s when s >= 500 -> Transient
    | Transport _ -> Transient
    | HttpStatus _
    | InvalidResponse _ -> Permanent

type QueryAuthResult =
    {
        AuthorizerAppId: AuthorizerAppId
        AccessToken: (AuthorizerAccessToken * int) option
        RefreshToken: AuthorizerRefreshToken option
        FuncIds: int list
    }

type AuthorizerInfo =
    {
        Profile: AuthorizerProfile
        FuncIds: int list
        RefreshToken: AuthorizerRefreshToken option
    }

type ListedAuthorizer =
    {
        AppId: AuthorizerAppId
        RefreshToken: AuthorizerRefreshToken option
        AuthTime: int64
    }

/// A raw answer, for the proxy: status, content type and body as WeChat sent them.
type RawResponse =
    {
        Status: int
        ContentType: string
        Body: byte[]
    }

let private json (o: obj) =
    new StringContent(JsonSerializer.Serialize o, Encoding.UTF8, "application/json")

type Client(http: HttpClient, apiBase: Uri, componentAppId: ComponentAppId, appSecret: string) =
    let appId = Ids.componentAppId componentAppId

    let url (path: string) (query: (string * string) list) =
        let q =
            query
            |> List.map (fun (k, v) -> $"{Uri.EscapeDataString k}={Uri.EscapeDataString v}")
            |> String.concat "&"

        let sep = if q = "" then "" else "?"
        Uri(apiBase.ToString().TrimEnd('/') + path + sep + q)

    let send (request: HttpRequestMessage) =
        task {
            try
                use! response = http.SendAsync request
                let! body = response.Content.ReadAsByteArrayAsync()
                return Ok(response, body)
            with
            | :? HttpRequestException as ex -> return Error(Transport ex.Message)
            | :? TaskCanceledException -> return Error(Transport "timed out")
        }

    /// POST JSON, read a JSON answer, turn errcode into ApiError, hand the root to `read`.
    let postJson (path: string) query (body: obj) (read: JsonElement -> Result<'a, WeChatError>) =
        task {
            use request = new HttpRequestMessage(HttpMethod.Post, url path query)
            request.Content <- json body
            let! sent = send request

            match sent with
            | Error e -> return Error e
            | Ok(response, bytes) when not response.IsSuccessStatusCode ->
                return Error(HttpStatus(int response.StatusCode))
            | Ok(_, bytes) ->
                try
                    use doc = JsonDocument.Parse(ReadOnlyMemory bytes)

                    match errcodeOf doc.RootElement with
                    | Some(code, msg) -> return Error(ApiError(code, msg))
                    | None -> return read doc.RootElement
                with :? JsonException as ex ->
                    return Error(InvalidResponse ex.Message)
        }

    let required name (read: JsonElement -> 'a option) root =
        match read root with
        | Some v -> Ok v
        | None -> Error(InvalidResponse $"{name} is missing")

    let componentQuery token =
        [ "component_access_token", Ids.componentToken token ]

    member _.ComponentAppId = componentAppId

    /// GET a JSON API (sns/*, cgi-bin/ticket/getticket); an errcode becomes ApiError, the root goes to `read`.
    member _.GetJson(path: string, query: (string * string) list, read: JsonElement -> Result<'a, WeChatError>) =
        task {
            use request = new HttpRequestMessage(HttpMethod.Get, url path query)

            match! send request with
            | Error e -> return Error e
            | Ok(response, _) when not response.IsSuccessStatusCode -> return Error(HttpStatus(int response.StatusCode))
            | Ok(_, bytes) ->
                try
                    use doc = JsonDocument.Parse(ReadOnlyMemory bytes)

                    match errcodeOf doc.RootElement with
                    | Some(code, msg) -> return Error(ApiError(code, msg))
                    | None -> return read doc.RootElement
                with :? JsonException as ex ->
                    return Error(InvalidResponse ex.Message)
        }

    /// api_component_token: the ticket buys a token valid `expires_in` seconds.
    member _.ComponentToken(VerifyTicket ticket) =
        postJson
            "/cgi-bin/component/api_component_token"
            []
            {|
                component_appid = appId
                component_appsecret = appSecret
                component_verify_ticket = ticket
            |}
            (fun root ->
                required "component_access_token" (stringProp "component_access_token") root
                |> Result.map (fun t -> ComponentAccessToken t, defaultArg (intProp "expires_in" root) 7200))

    /// api_start_push_ticket: note `component_secret`, not `component_appsecret` (facts §3.10).
    member _.StartPushTicket() =
        postJson
            "/cgi-bin/component/api_start_push_ticket"
            []
            {|
                component_appid = appId
                component_secret = appSecret
            |}
            (fun _ -> Ok())

    member _.CreatePreAuthCode(token: ComponentAccessToken) =
        postJson
            "/cgi-bin/component/api_create_preauthcode"
            (componentQuery token)
            {| component_appid = appId |}
            (fun root ->
                required "pre_auth_code" (stringProp "pre_auth_code") root
                |> Result.map (fun c -> PreAuthCode c, defaultArg (intProp "expires_in" root) 600))

    member _.QueryAuth(token: ComponentAccessToken, AuthorizationCode code) =
        postJson
            "/cgi-bin/component/api_query_auth"
            (componentQuery token)
            {|
                component_appid = appId
                authorization_code = code
            |}
            (fun root ->
                required "authorization_info" (objProp "authorization_info") root
                |> Result.bind (fun info ->
                    let appidOf i =
                        stringProp "authorizer_appid" i |> Option.orElse (stringProp "appid" i)

                    required "authorizer_appid" appidOf info
                    |> Result.map (fun appid ->
                        {
                            AuthorizerAppId = AuthorizerAppId appid
                            AccessToken =
                                stringProp "authorizer_access_token" info
                                |> Option.map (fun t ->
                                    AuthorizerAccessToken t, defaultArg (intProp "expires_in" info) 7200)
                            RefreshToken =
                                stringProp "authorizer_refresh_token" info |> Option.map AuthorizerRefreshToken
                            FuncIds = funcIds info
                        })))

    member _.AuthorizerToken(token: ComponentAccessToken, AuthorizerAppId authorizer, AuthorizerRefreshToken refresh) =
        postJson
            "/cgi-bin/component/api_authorizer_token"
            (componentQuery token)
            {|
                component_appid = appId
                authorizer_appid = authorizer
                authorizer_refresh_token = refresh
            |}
            (fun root ->
                required "authorizer_access_token" (stringProp "authorizer_access_token") root
                |> Result.map (fun t ->
                    AuthorizerAccessToken t,
                    defaultArg (intProp "expires_in" root) 7200,
                    // The refresh token normally stays; when WeChat rotates it, the new one must be kept.
                    stringProp "authorizer_refresh_token" root
                    |> Option.defaultValue refresh
                    |> AuthorizerRefreshToken))

    member _.GetAuthorizerInfo(token: ComponentAccessToken, AuthorizerAppId authorizer) =
        postJson
            "/cgi-bin/component/api_get_authorizer_info"
            (componentQuery token)
            {|
                component_appid = appId
                authorizer_appid = authorizer
            |}
            (fun root ->
                required "authorizer_info" (objProp "authorizer_info") root
                |> Result.map (fun info ->
                    let idOf name =
                        objProp name info |> Option.bind (intProp "id") |> Option.defaultValue 0

                    let auth = objProp "authorization_info" root

                    {
                        Profile =
                            {
                                NickName = stringProp "nick_name" info |> Option.defaultValue ""
                                HeadImg = stringProp "head_img" info |> Option.defaultValue ""
                                UserName = stringProp "user_name" info |> Option.defaultValue ""
                                PrincipalName = stringProp "principal_name" info |> Option.defaultValue ""
                                ServiceTypeId = idOf "service_type_info"
                                VerifyTypeId = idOf "verify_type_info"
                                // MiniProgramInfo is present only for mini programs (facts §3.5).
                                Kind =
                                    if (objProp "MiniProgramInfo" info).IsSome then
                                        MiniProgram
                                    else
                                        OfficialAccount
                            }
                        FuncIds = auth |> Option.map funcIds |> Option.defaultValue []
                        RefreshToken =
                            auth
                            |> Option.bind (stringProp "authorizer_refresh_token")
                            |> Option.map AuthorizerRefreshToken
                    }))

    /// api_get_authorizer_list: `refresh_token` here, not `authorizer_refresh_token` (facts §3.8).
    member _.GetAuthorizerList(token: ComponentAccessToken, offset: int, count: int) =
        postJson
            "/cgi-bin/component/api_get_authorizer_list"
            (componentQuery token)
            {|
                component_appid = appId
                offset = offset
                count = count
            |}
            (fun root ->
                let items =
                    arrayProp "list" root
                    |> List.choose (fun item ->
                        stringProp "authorizer_appid" item
                        |> Option.map (fun a ->
                            {
                                AppId = AuthorizerAppId a
                                RefreshToken = stringProp "refresh_token" item |> Option.map AuthorizerRefreshToken
                                AuthTime =
                                    stringProp "auth_time" item
                                    |> Option.bind (fun v ->
                                        match Int64.TryParse v with
                                        | true, n -> Some n
                                        | _ -> None)
                                    |> Option.defaultValue 0L
                            }))

                Ok(defaultArg (intProp "total_count" root) items.Length, items))

    /// cgi-bin/message/custom/send with a text (facts §10).
    member _.SendCustomText(token: AuthorizerAccessToken, openId: string, content: string) =
        postJson
            "/cgi-bin/message/custom/send"
            [ "access_token", Ids.authorizerToken token ]
            {|
                touser = openId
                msgtype = "text"
                text = {| content = content |}
            |}
            (fun _ -> Ok())

    /// The proxy's call: any method and path under the API base, with `token` added to the query.
    /// Returns WeChat's answer as it came, plus the errcode if the body is a JSON error.
    member _.Forward(method: HttpMethod, path: string, query, body: byte[] option, contentType, token) =
        task {
            let tokenName, tokenValue = token

            let query =
                (query |> List.filter (fun (k, _) -> not (ProxyPath.isTokenParameter k)))
                @ [ tokenName, tokenValue ]

            use request = new HttpRequestMessage(method, url ("/" + path.TrimStart '/') query)

            match body with
            | Some b when b.Length > 0 || method <> HttpMethod.Get ->
                let content = new ByteArrayContent(b)

                content.Headers.TryAddWithoutValidation("Content-Type", defaultArg contentType "application/json")
                |> ignore

                request.Content <- content
            | _ -> ()

            let! sent = send request

            return
                sent
                |> Result.map (fun (response, bytes) ->
                    let ct =
                        match response.Content.Headers.ContentType with
                        | null -> "application/json"
                        | h -> h.ToString()

                    let code =
                        if bytes.Length > 0 && bytes[0] = byte '{' then
                            try
                                use doc = JsonDocument.Parse(ReadOnlyMemory bytes)
                                errcodeOf doc.RootElement |> Option.map fst
                            with :? JsonException ->
                                None
                        else
                            None

                    {
                        Status = int response.StatusCode
                        ContentType = ct
                        Body = bytes
                    },
                    code)
        }

    /// Acts for an authorizer: `access_token=` carries the authorizer's token.
    member this.ForwardAsAuthorizer(method, path, query, body, contentType, token: AuthorizerAccessToken) =
        this.Forward(method, path, query, body, contentType, ("access_token", Ids.authorizerToken token))

    /// Acts as the platform: `component_access_token=` carries the component token.
    member this.ForwardAsComponent(method, path, query, body, contentType, token: ComponentAccessToken) =
        this.Forward(method, path, query, body, contentType, ("component_access_token", Ids.componentToken token))

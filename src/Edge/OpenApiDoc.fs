/// The API document at `/openapi/v1.json` (ASP.NET Core's OpenAPI support) and its reference page at
/// `/docs`. The handlers are plain RequestDelegates, which the generator leaves out, so a document
/// transformer adds every mapped `/api` route from the endpoint data source (with its path
/// parameters), then the description of each route this file knows: bodies with examples, problem
/// details, the bearer scheme. A route added later is in the document from the start, described
/// generically until an entry here describes it.
module WeChatFs.OpenApiDoc

open System
open System.Collections.Generic
open System.Net.Http
open System.Text.Json.Nodes
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.OpenApi
open Microsoft.AspNetCore.Routing
open Microsoft.AspNetCore.Routing.Patterns
open Microsoft.Extensions.DependencyInjection
open Microsoft.OpenApi
open Scalar.AspNetCore

/// One route's description: what it does, its JSON bodies as examples (the schema is read from them).
type RouteDoc =
    {
        Summary: string
        Tag: string
        Query: (string * string) list
        Request: string option
        Status: int
        Response: string option
    }

let private doc tag summary status response =
    {
        Summary = summary
        Tag = tag
        Query = []
        Request = None
        Status = status
        Response = response
    }

let private authorizerExample =
    """{"authorizer_appid":"wxsimoa00000000001","tenant":"shop-1","status":"authorized","status_reason":"the refresh token was refused","kind":"official_account","nick_name":"Demo Shop","head_img":"https://wx.qlogo.cn/head","user_name":"gh_0000000001","principal_name":"Demo Co., Ltd.","service_type":2,"verify_type":0,"func_info":[1,15,18],"has_refresh_token":true,"access_token_expires_at":"2026-11-30T12:00:00+00:00","access_token_valid":true,"authorized_at":"2026-11-30T10:00:00+00:00","updated_at":"2026-11-30T10:00:00+00:00"}"""

let private deliveryExample =
    """{"id":"0193a0c0f00d7000a000000000000001","kind":"text","authorizer_appid":"wxsimoa00000000001","tenant":"shop-1","received_at":"2026-11-30T10:00:00+00:00","status":"dead","attempts":10,"next_attempt_at":"2026-11-30T10:05:00+00:00","last_error":"HTTP 500","delivered_at":"2026-11-30T10:06:00+00:00"}"""

let private tokenExample name =
    $$"""{"{{name}}":"TOKEN","expires_at":"2026-11-30T12:00:00+00:00"}"""

let private proxyDoc tag summary =
    { doc tag summary 200 None with
        Request = None
    }

/// Keyed by method and route pattern, as mapped in Api.fs.
let known: Map<string * string, RouteDoc> =
    Map.ofList
        [
            ("GET", "/api/component/status"),
            doc
                "component"
                "The ticket's age, the component token's expiry and the last WeChat error"
                200
                (Some
                    """{"component_appid":"wxsimcomponent0001","store":"sqlite","ticket":{"received_at":"2026-11-30T10:00:00+00:00","age_seconds":120,"fresh":true},"token":{"expires_at":"2026-11-30T12:00:00+00:00","seconds_left":7000,"valid":true,"refresh_due":false},"last_error":{"errcode":61005,"message":"ticket expired","meaning":"the component_verify_ticket has expired","at":"2026-11-30T09:00:00+00:00"}}""")
            ("GET", "/api/component/access-token"),
            doc
                "component"
                "The component_access_token, fetched or refreshed when due"
                200
                (Some(tokenExample "component_access_token"))
            ("POST", "/api/component/access-token/invalidate"),
            { doc
                  "component"
                  "Reports a component token WeChat refused; it is dropped only if still current"
                  200
                  (Some """{"invalidated":true}""") with
                Request = Some """{"component_access_token":"TOKEN"}"""
            }
            ("GET", "/api/component/wechat/{path}"),
            proxyDoc
                "component"
                "Calls WeChat's API with the component token attached (retried once on 40001/40014/42001)"
            ("POST", "/api/component/wechat/{path}"),
            proxyDoc
                "component"
                "Calls WeChat's API with the component token attached (retried once on 40001/40014/42001)"
            ("POST", "/api/authorization-links"),
            { doc
                  "authorizers"
                  "Makes an authorization link for a tenant (a page on this gateway, and WeChat's PC and mobile links)"
                  200
                  (Some
                      """{"authorize_page_url":"https://gateway.example.com/wechat/component/authorize?tenant=shop-1","pc_url":"https://mp.weixin.qq.com/cgi-bin/componentloginpage?...","mobile_url":"https://open.weixin.qq.com/wxaopen/safe/bindcomponent?...","expires_at":"2026-11-30T11:00:00+00:00"}""") with
                Request = Some """{"tenant":"shop-1","auth_type":"3","biz_appid":"wx0000000000000001"}"""
            }
            ("GET", "/api/authorizers"),
            { doc
                  "authorizers"
                  "Authorized accounts, filtered by tenant and status, paged"
                  200
                  (Some("""{"total":1,"items":[""" + authorizerExample + "]}")) with
                Query =
                    [
                        "tenant", "only this tenant's accounts"
                        "status", "authorized, revoked or needs_reauthorization"
                        "offset", "skip this many (default 0)"
                        "limit", "at most this many (default 100, at most 500)"
                    ]
            }
            ("POST", "/api/authorizers/sync"),
            doc
                "authorizers"
                "Imports every account WeChat lists as authorized (api_get_authorizer_list)"
                200
                (Some """{"total":3,"imported":1,"updated":2}""")
            ("GET", "/api/authorizers/{appid}"),
            doc "authorizers" "One account: status, profile, permissions, token expiry" 200 (Some authorizerExample)
            ("GET", "/api/authorizers/{appid}/access-token"),
            doc
                "authorizers"
                "The account's authorizer_access_token, refreshed when due"
                200
                (Some(tokenExample "authorizer_access_token"))
            ("POST", "/api/authorizers/{appid}/refresh"),
            doc "authorizers" "Refreshes the account's token now" 200 (Some(tokenExample "authorizer_access_token"))
            ("GET", "/api/authorizers/{appid}/wechat/{path}"),
            proxyDoc "authorizers" "Calls WeChat's API acting for the account"
            ("POST", "/api/authorizers/{appid}/wechat/{path}"),
            proxyDoc "authorizers" "Calls WeChat's API acting for the account"
            ("GET", "/api/deliveries"),
            { doc
                  "deliveries"
                  "Webhook deliveries by status, newest first, paged by offset or by cursor"
                  200
                  (Some(
                      """{"total":2,"items":["""
                      + deliveryExample
                      + """],"next_before":"1764496800000.0193a0c0f00d7000a000000000000001","previous_after":null}"""
                  )) with
                Query =
                    [
                        "status", "pending, delivered or dead"
                        "offset", "skip this many (default 0)"
                        "before",
                        "instead of offset: the next_before of the page before (a page by cursor costs the same at any depth)"
                        "after",
                        "instead of offset: the previous_after of the page after (the newer items nearest to it, or the first page whole when fewer precede it)"
                        "limit", "at most this many (default 100, at most 500)"
                    ]
            }
            ("GET", "/api/deliveries/{id}"),
            doc "deliveries" "One delivery: attempts, last error, next attempt" 200 (Some deliveryExample)
            ("POST", "/api/deliveries/{id}/retry"),
            doc
                "deliveries"
                "Puts a dead (or waiting) delivery back in line now"
                202
                (Some """{"id":"0193a0c0f00d7000a000000000000001","retried":true}""")
        ]

/// `/api/authorizers/{appid}/wechat/{**path}` as OpenAPI writes it, and its parameter names.
let openApiPath (pattern: RoutePattern) =
    let segment (s: RoutePatternPathSegment) =
        s.Parts
        |> Seq.map (fun part ->
            match part with
            | :? RoutePatternLiteralPart as l -> l.Content
            | :? RoutePatternParameterPart as p -> "{" + p.Name + "}"
            | :? RoutePatternSeparatorPart as sep -> sep.Content
            | _ -> "")
        |> String.concat ""

    let path = "/" + (pattern.PathSegments |> Seq.map segment |> String.concat "/")
    path, pattern.Parameters |> Seq.map (fun p -> p.Name) |> List.ofSeq

/// A schema read from an example: types and properties as the example shows them.
let rec schemaOf (node: JsonNode) : IOpenApiSchema =
    match node with
    | null -> OpenApiSchema(Type = Nullable(JsonSchemaType.Null))
    | :? JsonObject as o ->
        let props = Dictionary<string, IOpenApiSchema>()

        for kv in o do
            props[kv.Key] <- schemaOf kv.Value

        OpenApiSchema(Type = Nullable JsonSchemaType.Object, Properties = props)
    | :? JsonArray as a ->
        OpenApiSchema(
            Type = Nullable JsonSchemaType.Array,
            Items = (if a.Count > 0 then schemaOf a[0] else OpenApiSchema())
        )
    | v ->
        match v.GetValueKind() with
        | Text.Json.JsonValueKind.Number -> OpenApiSchema(Type = Nullable JsonSchemaType.Number)
        | Text.Json.JsonValueKind.True
        | Text.Json.JsonValueKind.False -> OpenApiSchema(Type = Nullable JsonSchemaType.Boolean)
        | _ -> OpenApiSchema(Type = Nullable JsonSchemaType.String)

let private problemSchema () =
    schemaOf (
        JsonNode.Parse
            """{"type":"about:blank","title":"Unknown authorizer","status":404,"detail":"no account with this appid has authorized the platform","errcode":61003,"meaning":"the authorizer has withdrawn the authorization","action":"ask the merchant to authorize again"}"""
    )

let private media (mediaType: string) (example: string) =
    let content = Dictionary<string, OpenApiMediaType>()
    let node = JsonNode.Parse example
    content[mediaType] <- OpenApiMediaType(Schema = schemaOf node, Example = node)
    content

let private problemResponse (description: string) =
    let content = Dictionary<string, OpenApiMediaType>()
    content["application/problem+json"] <- OpenApiMediaType(Schema = problemSchema ())
    OpenApiResponse(Description = description, Content = content)

let private describe (document: OpenApiDocument) (method: string) (path: string) (op: OpenApiOperation) =
    let entry = known |> Map.tryFind (method, path)

    if isNull op.Responses then
        op.Responses <- OpenApiResponses()

    match entry with
    | Some d ->
        op.Summary <- d.Summary
        op.Tags <- HashSet<OpenApiTagReference>([ OpenApiTagReference(d.Tag, document) ])

        for name, description in d.Query do
            op.Parameters.Add(
                OpenApiParameter(
                    Name = name,
                    In = Nullable ParameterLocation.Query,
                    Required = false,
                    Description = description,
                    Schema = OpenApiSchema(Type = Nullable JsonSchemaType.String)
                )
            )

        match d.Request with
        | Some example ->
            op.RequestBody <- OpenApiRequestBody(Required = true, Content = media "application/json" example)
        | None -> ()

        match d.Response with
        | Some example ->
            op.Responses[string d.Status] <-
                OpenApiResponse(Description = d.Summary, Content = media "application/json" example)
        | None -> op.Responses[string d.Status] <- OpenApiResponse(Description = "WeChat's answer, as it came")
    | None ->
        if op.Responses.Count = 0 then
            op.Responses["200"] <- OpenApiResponse(Description = "Success")

    op.Responses["400"] <- problemResponse "The request is invalid"
    op.Responses["401"] <- problemResponse "No or wrong bearer key (WeChatFs:Admin:ApiKey)"
    op.Responses["404"] <- problemResponse "Unknown account or record"
    op.Responses["502"] <- problemResponse "WeChat refused the call or could not be reached (errcode, meaning, action)"
    op.Responses["503"] <- problemResponse "No component token yet, or a refresh is in progress"

    let requirement = OpenApiSecurityRequirement()
    requirement[OpenApiSecuritySchemeReference("Bearer", document)] <- List<string>()
    op.Security <- List<OpenApiSecurityRequirement>([ requirement ])

/// Adds every `/api` route the app maps that the generator left out, then describes each.
let addApiRoutes (endpoints: EndpointDataSource) (document: OpenApiDocument) =
    if isNull document.Components then
        document.Components <- OpenApiComponents()

    if isNull document.Components.SecuritySchemes then
        document.Components.SecuritySchemes <- Dictionary<string, IOpenApiSecurityScheme>()

    document.Components.SecuritySchemes["Bearer"] <-
        OpenApiSecurityScheme(
            Type = Nullable SecuritySchemeType.Http,
            Scheme = "bearer",
            Description = "WeChatFs:Admin:ApiKey"
        )

    if isNull document.Paths then
        document.Paths <- OpenApiPaths()

    for endpoint in endpoints.Endpoints do
        match endpoint with
        | :? RouteEndpoint as route when
            not (isNull route.RoutePattern.RawText)
            && route.RoutePattern.RawText.TrimStart('/').StartsWith("api/", StringComparison.Ordinal)
            ->
            let path, parameters = openApiPath route.RoutePattern

            let methods =
                match route.Metadata.GetMetadata<IHttpMethodMetadata>() with
                | null -> [ "GET"; "POST" ] // mapped for any method: a proxy
                | m when m.HttpMethods.Count = 0 -> [ "GET"; "POST" ]
                | m -> List.ofSeq m.HttpMethods

            let item =
                match document.Paths.TryGetValue path with
                | true, (:? OpenApiPathItem as existing) -> existing
                | _ ->
                    let created = OpenApiPathItem()
                    document.Paths[path] <- created
                    created

            if isNull item.Operations then
                item.Operations <- Dictionary<HttpMethod, OpenApiOperation>()

            for m in methods do
                let key = HttpMethod(m)

                let op =
                    match item.Operations.TryGetValue key with
                    | true, op -> op
                    | _ ->
                        let op = OpenApiOperation()
                        item.Operations[key] <- op
                        op

                if isNull op.Parameters then
                    op.Parameters <- List<IOpenApiParameter>()

                for name in parameters do
                    if
                        not (
                            op.Parameters
                            |> Seq.exists (fun p -> p.Name = name && p.In = Nullable ParameterLocation.Path)
                        )
                    then
                        op.Parameters.Add(
                            OpenApiParameter(
                                Name = name,
                                In = Nullable ParameterLocation.Path,
                                Required = true,
                                Schema = OpenApiSchema(Type = Nullable JsonSchemaType.String)
                            )
                        )

                describe document m path op
        | _ -> ()

/// services.AddOpenApi with the transformer above.
let addServices (services: IServiceCollection) =
    services.AddOpenApi(fun options ->
        options.AddDocumentTransformer(fun document context _ ->
            document.Info <-
                OpenApiInfo(
                    Title = "WeChatFs internal API",
                    Version = "v1",
                    Description =
                        "Tokens, authorizers, deliveries and WeChat's API acting for each account. Every call needs Authorization: Bearer <WeChatFs:Admin:ApiKey>. Errors are RFC 7807 problem details, with WeChat's errcode, its meaning and the action it calls for where WeChat is involved."
                )

            addApiRoutes (context.ApplicationServices.GetRequiredService<EndpointDataSource>()) document
            Task.CompletedTask)
        |> ignore)
    |> ignore

/// GET /openapi/v1.json and GET /docs (the reference page, served with its script from this gateway).
let map (app: IEndpointRouteBuilder) =
    app.MapOpenApi() |> ignore

    app.MapScalarApiReference(
        "/docs",
        fun (options: ScalarOptions) ->
            options
                .WithTitle("WeChatFs API")
                .WithOpenApiRoutePattern("/openapi/{documentName}.json")
                .AddPreferredSecuritySchemes([ "Bearer" ])
            |> ignore
    )
    |> ignore

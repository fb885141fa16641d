/// The API document: every `/api` route the running app maps is in `/openapi/v1.json` with its path
/// parameters, and the documented examples have the shape of the handlers' real answers.
module WeChatFs.Tests.OpenApiDocTests

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Text.RegularExpressions
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.Extensions.DependencyInjection
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Tests.Harness

let private shop = "wxsimoa00000000001"

let private document (pair: Pair) =
    task {
        let! r = pair.Http.GetAsync(pair.Gateway.Url "/openapi/v1.json")
        Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
        return! json r
    }

/// `/api/authorizers/{appid}/wechat/{**path}` as OpenAPI writes it: `{name}` whatever the route's
/// catch-all, optional or constraint marks.
let private openApiPathOf (raw: string) =
    let path = Regex.Replace(raw, "\\{\\**([A-Za-z_][A-Za-z0-9_]*)[^}]*\\}", "{$1}")

    let names =
        Regex.Matches(path, "\\{([^}]+)\\}")
        |> Seq.map (fun m -> m.Groups[1].Value)
        |> List.ofSeq

    (if path.StartsWith "/" then path else "/" + path), names

/// Where an answer differs from the documented example: a property missing on either side, or of
/// another JSON kind (null stands for any kind: optional fields are null when absent).
let rec private mismatches (where: string) (example: JsonElement) (actual: JsonElement) =
    match example.ValueKind, actual.ValueKind with
    | JsonValueKind.Object, JsonValueKind.Object ->
        let names (e: JsonElement) =
            e.EnumerateObject() |> Seq.map (fun p -> p.Name) |> Set.ofSeq

        let documented, answered = names example, names actual

        [
            for n in Set.difference documented answered -> $"{where}.{n} documented but not answered"
            for n in Set.difference answered documented -> $"{where}.{n} answered but not documented"
            for n in Set.intersect documented answered do
                yield! mismatches $"{where}.{n}" (example.GetProperty n) (actual.GetProperty n)
        ]
    | JsonValueKind.Array, JsonValueKind.Array ->
        if example.GetArrayLength() > 0 && actual.GetArrayLength() > 0 then
            mismatches $"{where}[0]" example[0] actual[0]
        else
            []
    | _, JsonValueKind.Null
    | JsonValueKind.Null, _ -> []
    | (JsonValueKind.True | JsonValueKind.False), (JsonValueKind.True | JsonValueKind.False) -> []
    | e, a when e = a -> []
    | e, a -> [ $"{where}: documented {e}, answered {a}" ]

let private exampleOf (doc: JsonElement) (path: string) (method: string) (status: string) =
    doc
        .GetProperty("paths")
        .GetProperty(path)
        .GetProperty(method)
        .GetProperty("responses")
        .GetProperty(status)
        .GetProperty("content")
        .GetProperty("application/json")
        .GetProperty("example")


let tests =
    testSequencedGroup "OpenApiDoc"
    <| testList
        "OpenApiDoc"
        [
            testCaseTask "every mapped api route is in the document with its methods and path parameters"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! doc = document pair
                    let paths = doc.GetProperty "paths"
                    let source = pair.Gateway.App.Services.GetRequiredService<EndpointDataSource>()

                    let routes =
                        source.Endpoints
                        |> Seq.choose (function
                            | :? RouteEndpoint as e when e.RoutePattern.RawText.TrimStart('/').StartsWith "api/" ->
                                Some e
                            | _ -> None)
                        |> List.ofSeq

                    // The gateway maps more than a dozen; an empty list would prove nothing.
                    Expect.isTrue (routes.Length >= 14) ($"only {routes.Length} api routes found")

                    for route in routes do
                        let path, names = openApiPathOf route.RoutePattern.RawText

                        let methods =
                            match route.Metadata.GetMetadata<IHttpMethodMetadata>() with
                            | null -> [ "get" ]
                            | m when m.HttpMethods.Count = 0 -> [ "get" ]
                            | m -> m.HttpMethods |> Seq.map (fun x -> x.ToLowerInvariant()) |> List.ofSeq

                        match paths.TryGetProperty path with
                        | false, _ -> Expect.isTrue false ($"{path} is not in the document")
                        | true, item ->
                            for m in methods do
                                match item.TryGetProperty m with
                                | false, _ -> Expect.isTrue false ($"{m} {path} is not in the document")
                                | true, op ->
                                    let declared =
                                        match op.TryGetProperty "parameters" with
                                        | true, ps ->
                                            ps.EnumerateArray()
                                            |> Seq.filter (fun p -> str p "in" = "path")
                                            |> Seq.map (fun p -> str p "name")
                                            |> Set.ofSeq
                                        | _ -> Set.empty

                                    Expect.equal declared (Set.ofList names) $"{m} {path} declares its path parameters"

                                    Expect.isTrue
                                        (op.TryGetProperty("security") |> fst)
                                        ($"{m} {path} names no security")

                                    let responses = op.GetProperty "responses"
                                    Expect.isTrue (responses.TryGetProperty("401") |> fst) ($"{m} {path} has no 401")

                    let scheme =
                        doc.GetProperty("components").GetProperty("securitySchemes").GetProperty("Bearer")

                    Expect.equal (str scheme "scheme") "bearer" "str scheme 'scheme'"
                    Expect.equal (str scheme "type") "http" "str scheme 'type'"
                }

            testCaseTask "the documented examples have the shape of the real answers"
            <| fun () ->
                task {
                    let! hook = startWebhook ()
                    use _ = hook
                    let! pair = startPairWith (simulatorOptions ()) (webhookSettings hook)
                    use _ = pair
                    let! _ = pushTicket pair

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! s, _ = componentToken pair
                                return s = HttpStatusCode.OK
                            })

                    let! _ = AuthorizerApiTests.authorizeVia pair "shop-doc" shop
                    let! _ = sendMessage pair shop "text" [ "Content", "documented"; "MsgId", "88001" ]

                    let! _ =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=delivered"
                                let! root = json r
                                return root.GetProperty("total").GetInt32() >= 1
                            })

                    let! doc = document pair
                    let! deliveries = pair.Gateway.Api.GetAsync "/api/deliveries"
                    let! deliveriesRoot = json deliveries
                    let deliveryId = str (deliveriesRoot.GetProperty("items")[0]) "id"

                    let cases =
                        [
                            "/api/component/status", "/api/component/status", "get", "200", None
                            "/api/component/access-token", "/api/component/access-token", "get", "200", None
                            "/api/authorizers", "/api/authorizers", "get", "200", None
                            "/api/authorizers/{appid}", $"/api/authorizers/{shop}", "get", "200", None
                            "/api/authorizers/{appid}/access-token",
                            $"/api/authorizers/{shop}/access-token",
                            "get",
                            "200",
                            None
                            "/api/deliveries", "/api/deliveries", "get", "200", None
                            "/api/deliveries/{id}", $"/api/deliveries/{deliveryId}", "get", "200", None
                            "/api/authorization-links",
                            "/api/authorization-links",
                            "post",
                            "200",
                            Some(box {| tenant = "shop-doc" |})
                        ]

                    for documented, url, method, status, body in cases do
                        let! r =
                            match body with
                            | Some b -> postJson pair.Gateway.Api url b
                            | None -> pair.Gateway.Api.GetAsync(url: string)

                        Expect.equal (int r.StatusCode) (int status) "int r.StatusCode"
                        let! actual = json r

                        let differences =
                            mismatches documented (exampleOf doc documented method status) actual

                        Expect.isTrue (List.isEmpty differences) (String.Join("\n", differences))
                }

            testCaseTask "the reference page is served, with its script from the gateway itself"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    use client = new HttpClient()
                    let! r = client.GetAsync(pair.Gateway.Url "/docs/")
                    let! html = r.Content.ReadAsStringAsync()
                    Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
                    // The page loads the document from this gateway (relative to /docs/, resolved by the script).
                    Expect.stringContains html ("\"url\":\"openapi/v1.json\"") "html"

                    let sources =
                        Regex.Matches(html, "<script[^>]*src=\"([^\"]+)\"")
                        |> Seq.map (fun m -> m.Groups[1].Value)
                        |> List.ofSeq

                    Expect.isNonEmpty sources "sources"

                    for src in sources do
                        Expect.isFalse (src.StartsWith "http" || src.StartsWith "//") ($"script from elsewhere: {src}")
                        let! script = client.GetAsync(Uri(Uri(pair.Gateway.Url "/docs/"), src))
                        Expect.equal script.StatusCode HttpStatusCode.OK "script.StatusCode"
                }

        ]

/// The red-packet API: merchants (`PUT/GET /api/merchants[/{mch_id}]`) and packets
/// (`POST /api/redpacks` with an Idempotency-Key, `GET /api/redpacks[/{id}]`). Secrets go in, never out.
module WeChatFs.RedPackApi

open System
open System.Net.Sockets
open System.Security.Cryptography
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open System.Threading.Tasks
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open WeChatFs.Http
open WeChatFs.Problems
open WeChatFs.RedPacks
open WeChatFs.RedPackStore
open WeChatFs.RedPackService
open WeChatFs.RedPackView

let private merchantView (m: Merchant) =
    {|
        mch_id = PayIds.mchId m.MchId
        tenant = m.Tenant |> Option.map Domain.Ids.tenant |> Option.toObj
        send_name = m.SendName
        bound_appids = m.BoundAppIds |> List.map Domain.Ids.authorizerAppId
        certificate_subject = m.CertSubject
        certificate_expires_at = m.CertNotAfter
        created_at = m.CreatedAt
        updated_at = m.UpdatedAt
    |}

/// One field's problem, answered like the service's own field checks.
let private badField field text =
    InvalidFields [ { Field = field; Problem = text } ]

/// A red packet that cannot be sent, as the API answers it.
let private sendError (e: SendError) : ApiError =
    match e with
    | Invalid errors -> InvalidFields errors
    | UnknownMerchant m -> badField "mch_id" $"'{m}' is not a known merchant; PUT /api/merchants/{m} first"
    | NotBound(m, appid) ->
        badField
            "authorizer_appid"
            $"{appid} is not bound to merchant {m} (bound_appids); bind it in WeChat Pay's console, then PUT the merchant again"
    | Tracking TrackingNotSupported -> badField "wx_tk_id" "wx_tk_id is not supported yet; send the openid"
    | Tracking(UnknownTrackingToken reason) -> badField "wx_tk_id" reason
    | KeyReused id -> IdempotencyKeyReused id

/// The JSON body as an object, or None (the caller answers 400).
let private readObject (ctx: HttpContext) =
    task {
        try
            let! doc = JsonDocument.ParseAsync ctx.Request.Body

            if doc.RootElement.ValueKind = JsonValueKind.Object then
                return Some doc.RootElement
            else
                return None
        with :? JsonException ->
            return None
    }

let private optString (e: JsonElement) (name: string) =
    match e.TryGetProperty name with
    | true, v when v.ValueKind = JsonValueKind.String && v.GetString() <> "" -> Some(v.GetString())
    | _ -> None

let private stringList (e: JsonElement) (name: string) =
    match e.TryGetProperty name with
    | true, v when v.ValueKind = JsonValueKind.Array ->
        [
            for x in v.EnumerateArray() do
                if x.ValueKind = JsonValueKind.String then
                    x.GetString()
        ]
    | _ -> []

/// PUT /api/merchants/{mch_id}
let putMerchant (s: Services) (service: RedPackService) =
    admin s (fun ctx ->
        task {
            let mch = string ctx.Request.RouteValues["mch_id"]

            match! readObject ctx with
            | None -> do! problem ctx (BadRequest "a JSON object is required")
            | Some body ->
                let now = s.Clock.GetUtcNow()

                let credentials =
                    match optString body "pkcs12_base64" with
                    | Some p12 -> Merchants.ofPkcs12 now p12 (defaultArg (optString body "pkcs12_password") mch)
                    | None ->
                        Merchants.ofPem
                            now
                            (defaultArg (optString body "certificate_pem") "")
                            (defaultArg (optString body "private_key_pem") "")

                let credentialField =
                    if (optString body "pkcs12_base64").IsSome then
                        "pkcs12_base64"
                    else
                        "certificate_pem"

                match Merchants.checkMchId mch, Merchants.checkApiKey (defaultArg (optString body "api_key") "") with
                | Error e, _ -> do! problem ctx (badField "mch_id" (Merchants.describeCredentialError e))
                | _, Error e -> do! problem ctx (badField "api_key" (Merchants.describeCredentialError e))
                | Ok mchId, Ok apiKey ->
                    match credentials, optString body "send_name", stringList body "bound_appids" with
                    | Error e, _, _ -> do! problem ctx (badField credentialField (Merchants.describeCredentialError e))
                    | _, None, _ -> do! problem ctx (badField "send_name" "is required")
                    | _, Some name, _ when name.Length > 32 ->
                        do! problem ctx (badField "send_name" "is longer than 32 characters")
                    | _, _, [] ->
                        do!
                            problem
                                ctx
                                (badField
                                    "bound_appids"
                                    "lists no account; give the appids bound in WeChat Pay's console")
                    | Ok c, Some name, bound ->
                        let! existing = service.Store.GetMerchant mchId

                        let m =
                            {
                                MchId = mchId
                                Tenant = optString body "tenant" |> Option.map Domain.TenantId
                                SendName = name
                                BoundAppIds = List.distinct bound |> List.map Domain.AuthorizerAppId
                                ApiKey = apiKey
                                CertificatePem = c.CertificatePem
                                PrivateKeyPem = c.PrivateKeyPem
                                CertSubject = c.Subject
                                CertNotAfter = c.NotAfter
                                CreatedAt = existing |> Option.map (fun e -> e.CreatedAt) |> Option.defaultValue now
                                UpdatedAt = now
                            }

                        do! service.Store.PutMerchant m
                        s.Logger.LogInformation("merchant {MchId} stored", mch)
                        do! writeJson ctx (if existing.IsSome then 200 else 201) (merchantView m)
        })

/// GET /api/merchants
let listMerchants (s: Services) (service: RedPackService) =
    admin s (fun ctx ->
        task {
            let! all = service.Store.ListMerchants()

            do!
                writeJson
                    ctx
                    200
                    {|
                        items = all |> List.map merchantView
                    |}
        })

/// GET /api/merchants/{mch_id}
let getMerchant (s: Services) (service: RedPackService) =
    admin s (fun ctx ->
        task {
            match! service.Store.GetMerchant(MchId(string ctx.Request.RouteValues["mch_id"])) with
            | Some m -> do! writeJson ctx 200 (merchantView m)
            | None -> do! problem ctx (ApiError.NotFound Missing.Merchant)
        })

/// Chinese err_code_des and names as they are, not as \u escapes.
let private relaxed =
    JsonSerializerOptions(Encoder = Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)

let private writePack (ctx: HttpContext) (status: int) (r: RedPackRecord) =
    ctx.Response.StatusCode <- status
    ctx.Response.ContentType <- "application/json; charset=utf-8"
    ctx.Response.WriteAsync((view r).ToJsonString relaxed)

/// 201 once decided (sent, received, refunded, failed); 202 while not.
let private statusFor (r: RedPackRecord) =
    match r.Packet.Status with
    | RedPackState.Sent _
    | RedPackState.Received _
    | RedPackState.Refunded _
    | RedPackState.Failed _ -> 201
    | RedPackState.Created
    | RedPackState.Sending
    | RedPackState.Undecided _ -> 202

let private callerIp (ctx: HttpContext) =
    match ctx.Connection.LocalIpAddress with
    | null -> "127.0.0.1"
    | ip when ip.IsIPv4MappedToIPv6 -> string (ip.MapToIPv4())
    | ip when ip.AddressFamily = AddressFamily.InterNetwork -> string ip
    | _ -> "127.0.0.1"

/// POST /api/redpacks (Idempotency-Key required)
let sendRedPack (s: Services) (service: RedPackService) =
    admin s (fun ctx ->
        task {
            let key = string ctx.Request.Headers["Idempotency-Key"]

            if String.IsNullOrWhiteSpace key || key.Length > 255 then
                do! problem ctx IdempotencyKeyRequired
            else
                match! readObject ctx with
                | None -> do! problem ctx (BadRequest "a JSON object is required")
                | Some body ->
                    let amount =
                        match body.TryGetProperty "amount_fen" with
                        | true, v when v.ValueKind = JsonValueKind.Number ->
                            match v.TryGetInt64() with
                            | true, n -> Some n
                            | _ -> None
                        | _ -> None

                    let recipient =
                        match optString body "openid", optString body "wx_tk_id" with
                        | Some o, None -> Ok(OpenId o)
                        | None, Some t -> Ok(TrackingToken t)
                        | Some _, Some _ -> Error "give openid or wx_tk_id, not both"
                        | None, None -> Error "is required (or wx_tk_id)"

                    match optString body "mch_id", recipient, amount with
                    | None, _, _ -> do! problem ctx (badField "mch_id" "is required")
                    | _, Error e, _ -> do! problem ctx (badField "openid" e)
                    | _, _, None -> do! problem ctx (badField "amount_fen" "is required, a whole number of fen")
                    | Some mch, Ok recipient, Some amount ->
                        let request =
                            {
                                MchId = MchId mch
                                AuthorizerAppId = defaultArg (optString body "authorizer_appid") ""
                                Recipient = recipient
                                AmountFen = amount
                                Wishing = defaultArg (optString body "wishing") ""
                                ActName = defaultArg (optString body "act_name") ""
                                Remark = defaultArg (optString body "remark") ""
                                SendName = optString body "send_name"
                                SceneId = optString body "scene_id"
                                RiskInfo = optString body "risk_info"
                                ClientIp = optString body "client_ip"
                            }

                        // What the request asks for, so a reused key with another request is told apart.
                        let hash =
                            SHA256.HashData(Encoding.UTF8.GetBytes(sprintf "%A" request))
                            |> Convert.ToHexStringLower

                        match! service.Send(request, key, hash, callerIp ctx) with
                        | Ok r ->
                            ctx.Response.Headers.Location <- $"/api/redpacks/{Domain.Ids.redPackId r.Id}"
                            do! writePack ctx (statusFor r) r
                        | Error e -> do! problem ctx (sendError e)
        })

/// GET /api/redpacks/{id}
let getRedPack (s: Services) (service: RedPackService) =
    admin s (fun ctx ->
        task {
            match! service.Store.GetRedPack(Domain.RedPackId(string ctx.Request.RouteValues["id"])) with
            | Some r -> do! writePack ctx 200 r
            | None -> do! problem ctx (ApiError.NotFound Missing.RedPacket)
        })

/// GET /api/redpacks?status=&mch_id=&offset=&limit=
let listRedPacks (s: Services) (service: RedPackService) =
    admin s (fun ctx ->
        task {
            let q = ctx.Request.Query

            let intParam name fallback maxValue =
                Paging.boundedInt fallback maxValue (string q[name])

            let opt name =
                match string q[name] with
                | "" -> None
                | v -> Some v

            let statuses =
                [ "created"; "sending"; "sent"; "received"; "refunded"; "failed"; "undecided" ]

            match opt "status" with
            | Some st when not (List.contains st statuses) ->
                do! problem ctx (badField "status" ("must be one of " + String.Join(", ", statuses)))
            | status ->
                let! page =
                    service.Store.ListRedPacks
                        {
                            Status = status
                            MchId = opt "mch_id"
                            Offset = intParam "offset" 0 Int32.MaxValue
                            Limit = max 1 (intParam "limit" 100 500)
                        }

                let body = JsonObject()
                body["total"] <- JsonValue.Create page.Total
                body["items"] <- JsonArray(page.Items |> List.map (fun r -> view r :> JsonNode) |> Array.ofList)
                ctx.Response.ContentType <- "application/json; charset=utf-8"
                do! ctx.Response.WriteAsync(body.ToJsonString relaxed)
        })

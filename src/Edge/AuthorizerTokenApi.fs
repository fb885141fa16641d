/// `POST /api/authorizers/{appid}/access-token/invalidate`: a business system that called WeChat
/// directly with a token from the API and got 40001/40014/42001 (WeChat may expire a token early)
/// reports it here. Compare-then-invalidate, like the component's: only while that token is still
/// the current one, so 200 reports of one token cost one refresh, and a stale report changes nothing.
module WeChatFs.AuthorizerTokenApi

open System.Text.Json
open WeChatFs.Domain
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers
open WeChatFs.Http
open WeChatFs.Problems

let invalidateAuthorizerToken (s: Services) (authorizers: AuthorizerService) =
    admin s (fun ctx ->
        task {
            let appid = AuthorizerAppId(string ctx.Request.RouteValues["appid"])

            try
                let! doc = JsonDocument.ParseAsync(ctx.Request.Body)

                match
                    (if doc.RootElement.ValueKind = JsonValueKind.Object then
                         Wire.stringProp "access_token" doc.RootElement
                     else
                         None)
                with
                | Some failed when failed <> "" ->
                    let! removed = authorizers.Invalidate(appid, AuthorizerAccessToken failed)
                    do! writeJson ctx 200 {| invalidated = removed |}
                | _ -> do! problem ctx (BadRequest "access_token is required")
            with :? JsonException ->
                do! problem ctx (BadRequest "body must be JSON: {\"access_token\": \"...\"}")
        })

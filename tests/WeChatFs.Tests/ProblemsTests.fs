/// The one mapping from API errors to problem details: each error's status, title and extra fields,
/// and the JSON body a client reads.
module WeChatFs.Tests.ProblemsTests

open System.IO
open System.Text.Json
open Microsoft.AspNetCore.Http
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Domain
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens
open WeChatFs.AuthorizerCommon
open WeChatFs.Problems

/// The body `problem` writes, read back as JSON.
let private written (e: ApiError) =
    let ctx = DefaultHttpContext()
    use body = new MemoryStream()
    ctx.Response.Body <- body
    (problem ctx e).GetAwaiter().GetResult()
    let doc = JsonDocument.Parse(body.ToArray())
    ctx.Response.StatusCode, ctx.Response.ContentType, doc.RootElement.Clone()

let private text (root: JsonElement) (name: string) = root.GetProperty(name).GetString()

let tests =
    testList
        "Problems"
        [
            testCase "the body is RFC 7807 problem details with the error's status, title and detail"
            <| fun () ->
                let status, contentType, root = written (BadField("url", "url must be absolute"))
                Expect.equal status 400 "status"
                Expect.equal contentType "application/problem+json; charset=utf-8" "content type"
                Expect.equal (text root "type") "about:blank" "type"
                Expect.equal (text root "title") "Bad request" "title"
                Expect.equal (root.GetProperty("status").GetInt32()) 400 "status in the body"
                Expect.equal (text root "detail") "url must be absolute" "detail"
                Expect.equal (text root "field") "url" "field"

            testCase "each kind of error has its own status"
            <| fun () ->
                let statusOf e = (describe e).Status

                Expect.equal (statusOf (BadRequest "x")) 400 "bad request"
                Expect.equal (statusOf (InvalidRequest "x")) 400 "invalid request"
                Expect.equal (statusOf (InvalidDeployment [ "a" ])) 400 "invalid deployment"
                Expect.equal (statusOf IdempotencyKeyRequired) 400 "no key"
                Expect.equal (statusOf (IdempotencyKeyReused(RedPackId "rp1"))) 422 "key reused"
                Expect.equal (statusOf (Unauthorized Guard.AdminApi)) 401 "admin key"
                Expect.equal (statusOf (Unauthorized Guard.Metrics)) 401 "metrics key"
                Expect.equal (statusOf (ApiError.NotFound Missing.Deployment)) 404 "missing"
                Expect.equal (statusOf (OAuthRefused(OAuth.AccountNotAuthorized Revoked))) 403 "refused"
                Expect.equal (statusOf AlreadyDelivered) 409 "conflict"
                Expect.equal (statusOf (Oversized(Oversize.ProxyBody 10L))) 413 "too large"
                Expect.equal (statusOf (NotStored "x")) 500 "not stored"
                Expect.equal (statusOf (Token NoTicket)) 503 "no ticket"
                Expect.equal (statusOf (AuthorizerToken(Unusable(Revoked, "")))) 409 "unusable account"
                Expect.equal (statusOf (JsApi JsApiTickets.TicketBusy)) 503 "ticket busy"

            testCase "a reused key names the red packet it belongs to as plain text"
            <| fun () ->
                let _, _, root = written (IdempotencyKeyReused(RedPackId "rp1"))
                Expect.equal (text root "id") "rp1" "id"
                Expect.stringContains (text root "detail") "red packet rp1," "detail"

            testCase "an account that cannot be used names its status"
            <| fun () ->
                let _, _, root = written (AuthorizerToken(Unusable(NeedsReauthorization, "")))
                Expect.equal (text root "title") "Authorizer is needs_reauthorization" "title"
                Expect.equal (text root "detail") "the merchant must authorize the platform again" "detail"
                Expect.equal (text root "status_code") "needs_reauthorization" "status_code"

            testCase "several field problems are joined, the first named as the field"
            <| fun () ->
                let _, _, root =
                    written (
                        InvalidFields
                            [
                                {
                                    Field = "amount_fen"
                                    Problem = "is required"
                                }
                                {
                                    Field = "openid"
                                    Problem = "is empty"
                                }
                            ]
                    )

                Expect.equal (text root "detail") "amount_fen is required; openid is empty" "detail"
                Expect.equal (text root "field") "amount_fen" "field"
                Expect.equal (root.GetProperty("errors").GetArrayLength()) 2 "errors"

                Expect.equal
                    (root.GetProperty("errors").[1].GetProperty("problem").GetString())
                    "is empty"
                    "second problem"

            testProp "a WeChat errcode is a 502 that carries the errcode and its meaning"
            <| fun (code: int) (message: string) ->
                let a = describe (WeChat(ApiError(code, message)))
                let extra = Map.ofList a.Extra

                a.Status = 502
                && a.Title = "WeChat refused the call"
                && extra["errcode"] = box code
                && extra.ContainsKey "meaning"

            testProp "a ticket WeChat rejected means waiting for the next push, whatever the path to it"
            <| fun (useAuthorizerPath: bool) ->
                let refused = RefreshFailed(ApiError(61005, "component_verify_ticket is expired"))

                let e =
                    if useAuthorizerPath then
                        AuthorizerToken(ComponentTokenUnavailable refused)
                    else
                        Authorization(ComponentUnavailable refused)

                let a = describe e
                a.Status = 503 && a.Title = "Waiting for a new component_verify_ticket"

            testProp "every error answers with a 4xx or 5xx and a title"
            <| fun (detail: string) (pick: byte) ->
                let errors =
                    [|
                        BadRequest detail
                        BadField("f", detail)
                        InvalidRequest detail
                        BadProxyPath detail
                        NotStored detail
                        WeChat(Transport detail)
                        Token RefreshBusy
                        Call(CodeManagement.WeChatFailed(HttpStatus 500))
                        ApiError.NotFound Missing.Merchant
                        OAuthRefused OAuth.UnknownFuncKey
                    |]

                let a = describe errors[int pick % errors.Length]
                a.Status >= 400 && a.Status < 600 && a.Title <> ""
        ]

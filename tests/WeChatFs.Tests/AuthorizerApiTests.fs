/// Authorization and authorizer tokens, end to end over HTTP: a merchant's browser on the pages, WeChat's
/// pushes from the simulator, the business system on the internal API.
module WeChatFs.Tests.AuthorizerApiTests

open System
open System.Collections.Generic
open System.IO
open System.Net
open System.Net.Http
open System.Text
open System.Threading.Tasks
open Microsoft.AspNetCore.WebUtilities
open Expecto
open WeChatFs.Tests.Helpers
open Microsoft.Extensions.DependencyInjection
open WeChatFs.Store
open WeChatFs.Tests.Harness

let shop = "wxsimoa00000000001"
let mini = "wxsimmp00000000001"

let setPushOrder (pair: Pair) (order: string) =
    task {
        let! r = postJson pair.Http (pair.SimUrl "/sim/push-order") {| order = order |}
        r.EnsureSuccessStatusCode() |> ignore
    }

/// What a merchant does: the business system makes a link, the browser opens WeChat's page from our
/// page (WeChat checks the Referer), the admin confirms, and the browser comes back to the gateway.
let authorizeVia (pair: Pair) (tenant: string) (appid: string) =
    task {
        let! links =
            postJson pair.Gateway.Api "/api/authorization-links" {| tenant = tenant |}

        Expect.equal links.StatusCode HttpStatusCode.OK "links.StatusCode"
        let! root = json links
        let pcUrl = str root "pc_url"
        Expect.isFalse (String.IsNullOrEmpty(str root "mobile_url")) "String.IsNullOrEmpty(str root 'mobile_url')"
        use request = new HttpRequestMessage(HttpMethod.Get, pcUrl)
        request.Headers.Referrer <- Uri(pair.Gateway.Url $"/wechat/component/authorize?tenant={tenant}")
        let! page = pair.Http.SendAsync request
        let! html = page.Content.ReadAsStringAsync()
        Expect.isTrue page.IsSuccessStatusCode html
        let query = QueryHelpers.ParseQuery(Uri(pcUrl).Query)

        let form =
            new FormUrlEncodedContent(
                [
                    KeyValuePair("pre_auth_code", string query["pre_auth_code"])
                    KeyValuePair("redirect_uri", string query["redirect_uri"])
                    KeyValuePair("appid", appid)
                    KeyValuePair($"func_{appid}", "1")
                    KeyValuePair($"func_{appid}", "15")
                    KeyValuePair($"func_{appid}", "18")
                ]
            )

        let! confirmed = pair.Http.PostAsync(pair.SimUrl "/sim/authorize/confirm", form)
        Expect.equal confirmed.StatusCode HttpStatusCode.Redirect "confirmed.StatusCode"
        let back = confirmed.Headers.Location
        Expect.stringStarts (string back) (pair.Gateway.Url "/wechat/component/authorized?") "string back"
        let! result = pair.Http.GetAsync back
        return result, back
    }

let authorizer (pair: Pair) (appid: string) =
    task {
        let! r = pair.Gateway.Api.GetAsync $"/api/authorizers/{appid}"

        return
            r.StatusCode,
            (if r.IsSuccessStatusCode then
                 Some((json r).Result)
             else
                 None)
    }

let accessToken (pair: Pair) (appid: string) =
    task {
        let! r = pair.Gateway.Api.GetAsync $"/api/authorizers/{appid}/access-token"
        let! body = r.Content.ReadAsStringAsync()
        return r.StatusCode, body
    }

let simAuthorizer (pair: Pair) (appid: string) =
    task {
        let! r = pair.Http.GetAsync(pair.SimUrl "/sim/authorizers")
        let! root = json r
        return root.EnumerateArray() |> Seq.find (fun a -> str a "authorizer_appid" = appid)
    }

let ready (pair: Pair) =
    task {
        let! _ = pushTicket pair

        let! ok =
            eventually (TimeSpan.FromSeconds 5.) (fun () ->
                task {
                    let! s = pair.Gateway.Api.GetAsync "/api/component/access-token" in return s.IsSuccessStatusCode
                })

        Expect.isTrue ok "ok"
    }


/// Link requests are checked before WeChat is asked for a pre_auth_code (facts §4.1).
let linkValidation =
    testList
        "link requests"
        [
            testCase "a tenant with auth_type or biz_appid is taken, trimmed"
            <| fun () ->
                match WeChatFs.AuthorizationPages.validateLinkRequest " shop-1 " "2" null with
                | Ok r ->
                    Expect.equal r.Tenant (WeChatFs.Domain.TenantId "shop-1") "tenant"
                    Expect.equal r.AuthType (Some 2) "auth_type"
                    Expect.equal r.BizAppId None "no biz_appid"
                | Error e -> failtest e

                match WeChatFs.AuthorizationPages.validateLinkRequest "shop-1" "" " wxbiz " with
                | Ok r -> Expect.equal r.BizAppId (Some "wxbiz") "biz_appid"
                | Error e -> failtest e

            testCase "a missing or long tenant, an unknown auth_type, or both auth_type and biz_appid are refused"
            <| fun () ->
                let refused tenant authType biz =
                    match WeChatFs.AuthorizationPages.validateLinkRequest tenant authType biz with
                    | Ok _ -> failtest $"accepted {tenant} {authType} {biz}"
                    | Error e -> e

                Expect.stringContains (refused null "1" null) "tenant is required" "no tenant"
                Expect.stringContains (refused "  " "1" null) "tenant is required" "blank tenant"
                Expect.stringContains (refused (String('t', 129)) "1" null) "128" "long tenant"
                Expect.stringContains (refused "shop" "4" null) "auth_type must be 1" "auth_type 4"
                Expect.stringContains (refused "shop" "1" "wxbiz") "cannot be used together" "both"
        ]

let tests =
    testSequencedGroup "AuthorizerApi"
    <| testList
        "AuthorizerApi"
        [
            linkValidation

            testTheoryTask
                "an authorization link ends in a stored account bound to its tenant, whatever the order of push and redirect"
                [ "before"; "after"; "none" ]
            <| fun (order: string) ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    do! setPushOrder pair order
                    let! result, _ = authorizeVia pair "shop-42" shop
                    let! page = result.Content.ReadAsStringAsync()
                    Expect.equal result.StatusCode HttpStatusCode.OK "result.StatusCode"
                    Expect.stringContains page "Demo Coffee Shop" "page"

                    let! bound =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! _, a = authorizer pair shop

                                return
                                    a
                                    |> Option.exists (fun a ->
                                        str a "tenant" = "shop-42" && str a "nick_name" = "Demo Coffee Shop")
                            })

                    Expect.isTrue bound "bound"
                    let! _, a = authorizer pair shop
                    Expect.equal (str a.Value "status") "authorized" "str a.Value 'status'"
                    Expect.equal (str a.Value "kind") "official_account" "str a.Value 'kind'"
                    Expect.equal (str a.Value "user_name") "gh_5a1c0ffee0001" "str a.Value 'user_name'"

                    Expect.equal
                        (a.Value.GetProperty("func_info").GetRawText())
                        "[1,15,18]"
                        "a.Value.GetProperty('func_info').GetRawText()"

                    let! status, body = accessToken pair shop
                    Expect.equal status HttpStatusCode.OK "status"
                    let! sim = simAuthorizer pair shop

                    let usable =
                        sim.GetProperty("access_tokens").EnumerateArray()
                        |> Seq.filter (fun t -> t.GetProperty("usable").GetBoolean())
                        |> Seq.map (fun t -> str t "value")

                    Expect.exists usable (fun t -> body.Contains t) "usable has one that matches"
                    // Pushed or redirected, the code was exchanged once.
                    let! queried = calls pair "api_query_auth"
                    Expect.equal queried 1 "queried"
                }

            testCaseTask
                "reloading the callback shows the result again without a new exchange; a tampered state is refused"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _, back = authorizeVia pair "shop-1" mini
                    let! again = pair.Http.GetAsync back
                    Expect.equal again.StatusCode HttpStatusCode.OK "again.StatusCode"
                    let! queried = calls pair "api_query_auth"
                    Expect.equal queried 1 "queried"
                    let text = string back
                    let i = text.IndexOf "state=" + 6

                    let tampered =
                        text.Substring(0, i)
                        + (if text[i] = 'A' then "B" else "A")
                        + text.Substring(i + 1)

                    let! refused = pair.Http.GetAsync tampered
                    Expect.equal refused.StatusCode HttpStatusCode.BadRequest "refused.StatusCode"
                    let! unknownCode = pair.Http.GetAsync(text.Replace("auth_code=", "auth_code=x"))
                    Expect.equal unknownCode.StatusCode HttpStatusCode.BadRequest "unknownCode.StatusCode"
                    let! _, a = authorizer pair mini
                    Expect.equal (str a.Value "tenant") "shop-1" "str a.Value 'tenant'"
                    Expect.equal (str a.Value "kind") "mini_program" "str a.Value 'kind'"
                }

            testCaseTask "the authorization page is served on our domain with a fresh code and a QR code"
            <| fun () ->
                task {
                    use! pair =
                        startPairWith (simulatorOptions ()) [ "WeChatFs:Authorization:AllowUnsignedTenant", "true" ]

                    do! ready pair

                    let! page =
                        pair.Http.GetAsync(pair.Gateway.Url "/wechat/component/authorize?tenant=shop-9&auth_type=1")

                    let! html = page.Content.ReadAsStringAsync()
                    Expect.equal page.StatusCode HttpStatusCode.OK "page.StatusCode"
                    Expect.stringContains html "componentloginpage?component_appid=" "html"
                    Expect.stringContains html "bindcomponent?action=bindcomponent&amp;no_scan=1" "html"
                    Expect.stringContains html "#wechat_redirect" "html"
                    Expect.stringContains html "<svg" "html"

                    let! bad =
                        pair.Http.GetAsync(
                            pair.Gateway.Url "/wechat/component/authorize?tenant=x&auth_type=1&biz_appid=wx1"
                        )

                    Expect.equal bad.StatusCode HttpStatusCode.BadRequest "bad.StatusCode"
                    let! missing = pair.Http.GetAsync(pair.Gateway.Url "/wechat/component/authorize")
                    Expect.equal missing.StatusCode HttpStatusCode.BadRequest "missing.StatusCode"
                }

            testCaseTask "revocation ends in status revoked and no token"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _ = authorizeVia pair "shop-1" shop
                    let! _ = pair.Http.PostAsync(pair.SimUrl $"/sim/authorizers/{shop}/revoke", null)

                    let! revoked =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! _, a = authorizer pair shop in
                                return a |> Option.exists (fun a -> str a "status" = "revoked")
                            })

                    Expect.isTrue revoked "revoked"
                    let! status, body = accessToken pair shop
                    Expect.equal status HttpStatusCode.Conflict "status"
                    Expect.stringContains body "revoked" "body"
                    let! list = pair.Gateway.Api.GetAsync "/api/authorizers?status=revoked"
                    let! root = json list
                    Expect.equal (root.GetProperty("total").GetInt32()) 1 "root.GetProperty('total').GetInt32()"
                    let! unknown = pair.Gateway.Api.GetAsync "/api/authorizers/wxnobody/access-token"
                    Expect.equal unknown.StatusCode HttpStatusCode.NotFound "unknown.StatusCode"
                }

            testCaseTask
                "61023 is healed from api_get_authorizer_list, and ends in needs_reauthorization when the list does not help"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _ = authorizeVia pair "shop-1" shop

                    let! _ =
                        pair.Http.PostAsync(pair.SimUrl $"/sim/authorizers/{shop}/invalidate-refresh-token", null)

                    let! refreshed = pair.Gateway.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)
                    let! body = refreshed.Content.ReadAsStringAsync()
                    Expect.isTrue refreshed.IsSuccessStatusCode body
                    let! listed = calls pair "api_get_authorizer_list"
                    Expect.isTrue (listed >= 1) "listed >= 1"
                    let! _, a = authorizer pair shop
                    Expect.equal (str a.Value "status") "authorized" "str a.Value 'status'"
                    // Now WeChat refuses every refresh token, including the listed one.
                    do!
                        inject
                            pair
                            {|
                                api = "api_authorizer_token"
                                errcode = 61023
                                times = 2
                            |}

                    // Forced refreshes within a few seconds of the last one share its token; this one is later.
                    pair.Gateway.Clock.Offset <- pair.Gateway.Clock.Offset + TimeSpan.FromSeconds 6.
                    let! failed = pair.Gateway.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)
                    Expect.equal failed.StatusCode HttpStatusCode.Conflict "failed.StatusCode"
                    let! _, after = authorizer pair shop
                    Expect.equal (str after.Value "status") "needs_reauthorization" "str after.Value 'status'"
                    Expect.stringContains (str after.Value "status_reason") "61023" "str after.Value 'status_reason'"
                }

            testCaseTask "the proxy adds the token and retries once after 40001 with a refreshed token"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! ready pair
                    let! _ = authorizeVia pair "shop-1" shop
                    let! before = calls pair "api_authorizer_token"

                    do!
                        inject
                            pair
                            {|
                                api = "custom_send"
                                errcode = 40001
                                times = 1
                            |}

                    let! sent =
                        postJson
                            pair.Gateway.Api
                            $"/api/authorizers/{shop}/wechat/cgi-bin/message/custom/send"
                            {|
                                touser = "oUSER"
                                msgtype = "text"
                                text = {| content = "hello" |}
                            |}

                    let! root = json sent
                    Expect.equal (root.GetProperty("errcode").GetInt32()) 0 "root.GetProperty('errcode').GetInt32()"
                    let! after = calls pair "api_authorizer_token"
                    Expect.equal after (before + 1) "after"
                    let! messages = pair.Http.GetAsync(pair.SimUrl "/sim/custom-messages")
                    let! text = messages.Content.ReadAsStringAsync()
                    Expect.stringContains text "hello" "text"
                }
        ]

/// Web OAuth end to end, continued: clear pages for unknown or refused routes, and funcKey routes
/// managed through the API.
module WeChatFs.Tests.OAuthApiRoutesTests

open System
open System.Net
open System.Net.Http
open System.Text
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness
open WeChatFs.Tests.OAuthApiTests

let tests =
    testSequencedGroup "OAuthApi"
    <| testList
        "OAuthApiRoutes"
        [
            testCaseTask "unknown funcKeys, unknown or revoked accounts and another tenant's routes get clear pages"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    do! addRoute pair "card" businessPage "snsapi_base" "shop-1"
                    do! addRoute pair "other" businessPage "snsapi_base" "shop-2"

                    let page (url: string) =
                        task {
                            let! r = pair.Http.GetAsync url
                            let! html = r.Content.ReadAsStringAsync()

                            Expect.stringStarts
                                (string r.Content.Headers.ContentType)
                                "text/html"
                                "string r.Content.Headers.ContentType"

                            return r.StatusCode, html
                        }

                    let! status, html = page (startUrl pair shop "nosuch" "s")
                    Expect.equal status HttpStatusCode.NotFound "status"
                    Expect.stringContains html "Unknown page" "html"
                    let! status, html = page (startUrl pair "wxnobody" "card" "s")
                    Expect.equal status HttpStatusCode.NotFound "status"
                    Expect.stringContains html "Unknown account" "html"
                    let! status, html = page (startUrl pair shop "other" "s")
                    Expect.equal status HttpStatusCode.Forbidden "status"
                    Expect.stringContains html "another tenant" "html"
                    // The redirect back checks the same, and the platform's own appid.
                    let! status, _ =
                        page (
                            pair.Gateway.Url
                                $"/wechat/oauth/authUserReceive/wxsomeoneelse/card?code=x&state=s&appid={shop}"
                        )

                    Expect.equal status HttpStatusCode.NotFound "status"

                    let! status, _ =
                        page (
                            pair.Gateway.Url
                                $"/wechat/oauth/authUserReceive/{componentAppId}/other?code=x&state=s&appid={shop}"
                        )

                    Expect.equal status HttpStatusCode.Forbidden "status"

                    let! links =
                        postJson
                            pair.Gateway.Api
                            "/api/oauth/links"
                            {|
                                authorizer_appid = shop
                                func_key = "other"
                            |}

                    Expect.equal links.StatusCode HttpStatusCode.Forbidden "links.StatusCode"
                    // A revoked account.
                    let! _ = pair.Http.PostAsync(pair.SimUrl $"/sim/authorizers/{shop}/revoke", null)

                    let! revoked =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! r = pair.Http.GetAsync(startUrl pair shop "card" "s") in
                                return r.StatusCode = HttpStatusCode.Forbidden
                            })

                    Expect.isTrue revoked "a revoked account's start URL is still served"
                    let! exchanges = calls pair "sns_component_access_token"
                    Expect.equal exchanges 0 "exchanges"
                }

            testCaseTask "funcKey routes are managed with the admin key and bad input names the field"
            <| fun () ->
                task {
                    use! pair = startPair ()

                    let field (body: obj) =
                        task {
                            let! r = saveFuncKey pair body
                            Expect.equal r.StatusCode HttpStatusCode.BadRequest "r.StatusCode"
                            let! p = json r
                            return str p "field"
                        }

                    let! f =
                        field
                            {|
                                func_key = "a b"
                                target_url = businessPage
                                scope = "snsapi_base"
                            |}

                    Expect.equal f "func_key" "f"

                    let! f =
                        field
                            {|
                                func_key = "ab"
                                target_url = "nope"
                                scope = "snsapi_base"
                            |}

                    Expect.equal f "target_url" "f"

                    let! f =
                        field
                            {|
                                func_key = "ab"
                                target_url = businessPage
                                scope = "snsapi_login"
                            |}

                    Expect.equal f "scope" "f"
                    do! addRoute pair "card" businessPage "snsapi_base" ""
                    do! addRoute pair "card" (businessPage + "/v2") "snsapi_userinfo" "t1"
                    let! one = pair.Gateway.Api.GetAsync "/api/oauth/func-keys/card"
                    let! r = json one
                    Expect.equal (str r "target_url") (businessPage + "/v2") "str r 'target_url'"
                    Expect.equal (str r "scope") "snsapi_userinfo" "str r 'scope'"
                    Expect.equal (str r "tenant") "t1" "str r 'tenant'"
                    let! all = pair.Gateway.Api.GetAsync "/api/oauth/func-keys"
                    let! list = json all

                    Expect.equal
                        (list.GetProperty("items").GetArrayLength())
                        1
                        "list.GetProperty('items').GetArrayLength()"

                    let! deleted = pair.Gateway.Api.DeleteAsync "/api/oauth/func-keys/card"
                    Expect.equal deleted.StatusCode HttpStatusCode.NoContent "deleted.StatusCode"
                    let! missing = pair.Gateway.Api.GetAsync "/api/oauth/func-keys/card"
                    Expect.equal missing.StatusCode HttpStatusCode.NotFound "missing.StatusCode"
                    use anonymous = new HttpClient()
                    let! refused = anonymous.GetAsync(pair.Gateway.Url "/api/oauth/func-keys")
                    Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"
                }

            testCaseTask
                "a route from configuration works, the links API gives the start URL's target, and 40001 is healed"
            <| fun () ->
                task {
                    use! pair =
                        startAuthorized
                            "sqlite"
                            "shop-1"
                            shop
                            [
                                "WeChatFs:OAuth:FuncKeys:menu:TargetUrl", businessPage
                                "WeChatFs:OAuth:FuncKeys:menu:Scope", "snsapi_userinfo"
                            ]

                    let! links =
                        postJson
                            pair.Gateway.Api
                            "/api/oauth/links"
                            {|
                                authorizer_appid = shop
                                func_key = "menu"
                                state = "st"
                            |}

                    Expect.equal links.StatusCode HttpStatusCode.OK "links.StatusCode"
                    let! l = json links
                    let! started = pair.Http.GetAsync(startUrl pair shop "menu" "st")
                    Expect.equal (str l "url") (string started.Headers.Location) "str l 'url'"
                    Expect.equal (str l "start_url") (startUrl pair shop "menu" "st") "str l 'start_url'"
                    // WeChat says the component token is no longer valid: renewed, and the exchange made again.
                    do!
                        inject
                            pair
                            {|
                                api = "sns_component_access_token"
                                errcode = 40001
                            |}

                    let! _, answer = visit pair shop "menu" "st" "f3"
                    Expect.equal answer.StatusCode HttpStatusCode.Redirect "answer.StatusCode"

                    Expect.stringStarts
                        (string answer.Headers.Location)
                        (businessPage + "?wxTkId=")
                        "string answer.Headers.Location"

                    let! exchanges = calls pair "sns_component_access_token"
                    Expect.equal exchanges 2 "exchanges"
                }

            testCaseTask
                "verification files are served at the root as text, managed with the admin key, and shadow nothing"
            <| fun () ->
                task {
                    use! pair =
                        startPairWith
                            (simulatorOptions ())
                            [ "WeChatFs:VerificationFiles:MP_verify_seed1.txt", "seeded" ]

                    let put (name: string) (content: string) =
                        pair.Gateway.Api.PutAsync(
                            $"/api/verification-files/{name}",
                            new StringContent(content, Encoding.UTF8, "text/plain")
                        )

                    let! r = put "MP_verify_Ab12.txt" "Ab12cd"
                    Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
                    let! served = pair.Http.GetAsync(pair.Gateway.Url "/MP_verify_Ab12.txt")
                    Expect.equal served.StatusCode HttpStatusCode.OK "served.StatusCode"

                    Expect.equal
                        served.Content.Headers.ContentType.MediaType
                        "text/plain"
                        "served.Content.Headers.ContentType.MediaType"

                    let! text = served.Content.ReadAsStringAsync()
                    Expect.equal text "Ab12cd" "text"
                    let! seeded = pair.Http.GetAsync(pair.Gateway.Url "/MP_verify_seed1.txt")
                    let! seededText = seeded.Content.ReadAsStringAsync()
                    Expect.equal seededText "seeded" "seededText"
                    let! badName = put "..%2Fsecret.txt" "x"
                    Expect.equal badName.StatusCode HttpStatusCode.BadRequest "badName.StatusCode"
                    let! tooBig = put "big.txt" (String('x', 1025))
                    Expect.equal tooBig.StatusCode HttpStatusCode.RequestEntityTooLarge "tooBig.StatusCode"
                    let! list = pair.Gateway.Api.GetAsync "/api/verification-files"
                    let! l = json list
                    Expect.equal (l.GetProperty("items").GetArrayLength()) 2 "l.GetProperty('items').GetArrayLength()"

                    let! deleted =
                        pair.Gateway.Api.DeleteAsync "/api/verification-files/MP_verify_Ab12.txt"

                    Expect.equal deleted.StatusCode HttpStatusCode.NoContent "deleted.StatusCode"
                    let! gone = pair.Http.GetAsync(pair.Gateway.Url "/MP_verify_Ab12.txt")
                    Expect.equal gone.StatusCode HttpStatusCode.NotFound "gone.StatusCode"
                    // Other root paths are untouched.
                    let! health = pair.Http.GetAsync(pair.Gateway.Url "/healthz")
                    let! healthText = health.Content.ReadAsStringAsync()
                    Expect.equal healthText "ok" "healthText"
                    let! other = pair.Http.GetAsync(pair.Gateway.Url "/robots.md")
                    Expect.equal other.StatusCode HttpStatusCode.NotFound "other.StatusCode"
                    use anonymous = new HttpClient()

                    let! refused =
                        anonymous.PutAsync(pair.Gateway.Url "/api/verification-files/x.txt", new StringContent("x"))

                    Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"
                }

        ]

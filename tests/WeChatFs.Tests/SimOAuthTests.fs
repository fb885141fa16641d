/// The simulated WeChat's web OAuth against the facts (§7): codes single use and short lived, tokens
/// per follower, the errors WeChat gives.
module WeChatFs.Tests.SimOAuthTests

open System
open System.Collections.Generic
open System.Net
open System.Net.Http
open Microsoft.AspNetCore.WebUtilities
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness
open WeChatFs.Tests.OAuthApiTests

let private errcode (pair: Pair) (path: string) =
    task {
        let! r = pair.Http.GetAsync(pair.SimUrl path)
        let! root = json r
        return str root "errcode"
    }


let tests =
    testSequencedGroup "SimOAuth"
    <| testList
        "SimOAuth"
        [
            testCaseTask
                "the simulator's codes are single use and short lived, and its tokens serve only their follower and scope"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    let! t = pair.Gateway.Api.GetAsync "/api/component/access-token"
                    let! tokenRoot = json t
                    let componentToken = str tokenRoot "component_access_token"

                    let code (scope: string) =
                        task {
                            let form =
                                new FormUrlEncodedContent(
                                    [
                                        KeyValuePair("appid", shop)
                                        KeyValuePair("redirect_uri", "https://gw.example.com/back")
                                        KeyValuePair("scope", scope)
                                        KeyValuePair("state", "s")
                                        KeyValuePair("decision", "allow")
                                        KeyValuePair("follower", "f1")
                                    ]
                                )

                            let! r = pair.Http.PostAsync(pair.SimUrl "/sim/oauth/confirm", form)
                            Expect.equal r.StatusCode HttpStatusCode.Redirect "r.StatusCode"

                            Expect.stringStarts
                                (string r.Headers.Location)
                                "https://gw.example.com/back?code="
                                "string r.Headers.Location"

                            Expect.stringContains
                                (string r.Headers.Location)
                                ($"&appid={shop}")
                                "string r.Headers.Location"

                            return string (QueryHelpers.ParseQuery(r.Headers.Location.Query)["code"])
                        }

                    let exchangePath (c: string) =
                        $"/sns/oauth2/component/access_token?appid={shop}&code={Uri.EscapeDataString c}&grant_type=authorization_code&component_appid={componentAppId}&component_access_token={componentToken}"

                    let! baseCode = code "snsapi_base"
                    let! first = pair.Http.GetAsync(pair.SimUrl(exchangePath baseCode))
                    let! grant = json first
                    let! expected = simFollower pair shop "f1"
                    Expect.equal (str grant "openid") (str expected "openid") "str grant 'openid'"
                    Expect.equal (str grant "scope") "snsapi_base" "str grant 'scope'"
                    Expect.equal (str grant "expires_in") "7200" "str grant 'expires_in'"
                    let! reused = errcode pair (exchangePath baseCode)
                    Expect.equal reused "40163" "reused"
                    let! unknown = errcode pair (exchangePath "nosuchcode")
                    Expect.equal unknown "40029" "unknown"
                    // A snsapi_base token cannot read the profile; another openid is refused.
                    let! baseInfo =
                        errcode
                            pair
                            $"""/sns/userinfo?access_token={str grant "access_token"}&openid={str grant "openid"}&lang=zh_CN"""

                    Expect.equal baseInfo "48001" "baseInfo"
                    let! infoCode = code "snsapi_userinfo"
                    let! second = pair.Http.GetAsync(pair.SimUrl(exchangePath infoCode))
                    let! infoGrant = json second

                    let! otherOpenId =
                        errcode pair $"""/sns/userinfo?access_token={str infoGrant "access_token"}&openid=oOther"""

                    Expect.equal otherOpenId "40003" "otherOpenId"

                    let! info =
                        pair.Http.GetAsync(
                            pair.SimUrl
                                $"""/sns/userinfo?access_token={str infoGrant "access_token"}&openid={str infoGrant "openid"}"""
                        )

                    let! profile = json info
                    Expect.equal (str profile "nickname") (str expected "nickname") "str profile 'nickname'"
                    Expect.equal (str profile "unionid") (str expected "unionid") "str profile 'unionid'"
                    // A refresh gives a new access token for the same follower; an unknown refresh token is 40030.
                    let refreshPath (rt: string) =
                        $"/sns/oauth2/component/refresh_token?appid={shop}&grant_type=refresh_token&component_appid={componentAppId}&component_access_token={componentToken}&refresh_token={Uri.EscapeDataString rt}"

                    let! refreshed =
                        pair.Http.GetAsync(pair.SimUrl(refreshPath (str infoGrant "refresh_token")))

                    let! r = json refreshed
                    Expect.equal (str r "openid") (str infoGrant "openid") "str r 'openid'"
                    Expect.notEqual (str r "access_token") (str infoGrant "access_token") "str r 'access_token'"
                    let! bogus = errcode pair (refreshPath "nosuch")
                    Expect.equal bogus "40030" "bogus"
                    // A code left more than 5 minutes is refused as 40029.
                    let! lateCode = code "snsapi_base"
                    let! _ = postJson pair.Http (pair.SimUrl "/sim/clock/advance") {| seconds = 301 |}
                    let! late = errcode pair (exchangePath lateCode)
                    Expect.equal late "40029" "late"
                }

        ]

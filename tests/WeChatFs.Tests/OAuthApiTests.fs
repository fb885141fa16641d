/// Web OAuth on behalf of an official account, end to end over HTTP: a follower's browser from the
/// menu URL through the simulated WeChat's consent to the business page, the business system
/// resolving the wxTkId, the operator managing funcKey routes and verification files.
module WeChatFs.Tests.OAuthApiTests

open System
open System.Collections.Generic
open System.Net
open System.Net.Http
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.WebUtilities
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness

let shop = "wxsimoa00000000001"
let bakery = "wxsimoa00000000002"
let businessPage = "https://shop.example.com/member"

/// A ticket pushed and a component token fetched.
let ready (pair: Pair) =
    task {
        let! _ = pushTicket pair

        let! ok =
            eventually (TimeSpan.FromSeconds 10.) (fun () ->
                task {
                    let! s = pair.Gateway.Api.GetAsync "/api/component/access-token" in return s.IsSuccessStatusCode
                })

        Expect.isTrue ok "no component token"
    }

/// A pair with `appid` authorized for `tenant`, on the given store.
let startAuthorized (provider: string) (tenant: string) (appid: string) (extra: (string * string) list) =
    task {
        let storage =
            if provider = "postgres" then
                [
                    "WeChatFs:Storage:Provider", "postgres"
                    "WeChatFs:Storage:ConnectionString", Helpers.postgres.Force().NewDatabase()
                ]
            else
                []

        let! pair = startPairWith (simulatorOptions ()) (storage @ extra)
        do! ready pair
        let! result, _ = AuthorizerApiTests.authorizeVia pair tenant appid
        Expect.isTrue result.IsSuccessStatusCode "authorization failed"
        return pair
    }

let saveFuncKey (pair: Pair) (body: obj) =
    postJson pair.Gateway.Api "/api/oauth/func-keys" body

let addRoute (pair: Pair) (funcKey: string) (target: string) (scope: string) (tenant: string) =
    task {
        let! r =
            saveFuncKey
                pair
                {|
                    func_key = funcKey
                    target_url = target
                    scope = scope
                    tenant = tenant
                |}

        let! body = r.Content.ReadAsStringAsync()
        Expect.isTrue r.IsSuccessStatusCode body
    }

let startUrl (pair: Pair) (appid: string) (funcKey: string) (state: string) =
    pair.Gateway.Url $"/wechat/oauth/{appid}/{funcKey}?state={Uri.EscapeDataString state}"

/// The follower's browser, one redirect at a time: the start URL, WeChat's page (allow as
/// `follower`, or deny), the gateway's receive URL. Answers the receive URL and the gateway's answer.
let visit (pair: Pair) (appid: string) (funcKey: string) (state: string) (decision: string) =
    task {
        let! started = pair.Http.GetAsync(startUrl pair appid funcKey state)
        let! startBody = started.Content.ReadAsStringAsync()
        Expect.isTrue (HttpStatusCode.Redirect = started.StatusCode) startBody
        let authorize = started.Headers.Location
        Expect.stringStarts (string authorize) (pair.SimUrl "/connect/oauth2/authorize?") "string authorize"
        let query = QueryHelpers.ParseQuery authorize.Query
        let! page = pair.Http.GetAsync authorize

        let! back =
            if page.StatusCode = HttpStatusCode.Redirect then
                Task.FromResult page.Headers.Location
            else
                task {
                    let! html = page.Content.ReadAsStringAsync()
                    Expect.isTrue page.IsSuccessStatusCode html

                    let form =
                        new FormUrlEncodedContent(
                            [
                                for k in [ "appid"; "redirect_uri"; "scope"; "state" ] do
                                    KeyValuePair(k, string query[k])
                                if decision = "deny" then
                                    KeyValuePair("decision", "deny")
                                else
                                    KeyValuePair("decision", "allow")
                                    KeyValuePair("follower", decision)
                            ]
                        )

                    let! confirmed = pair.Http.PostAsync(pair.SimUrl "/sim/oauth/confirm", form)
                    Expect.equal confirmed.StatusCode HttpStatusCode.Redirect "confirmed.StatusCode"
                    return confirmed.Headers.Location
                }

        Expect.stringStarts (string back) (pair.Gateway.Url "/wechat/oauth/authUserReceive/") "string back"
        let! answer = pair.Http.GetAsync back
        return back, answer
    }

let wxTkIdOf (location: Uri) =
    string (QueryHelpers.ParseQuery(location.Query)["wxTkId"])

let resolve (pair: Pair) (wxTkId: string) =
    pair.Gateway.Api.GetAsync $"/api/oauth/tracking-tokens/{Uri.EscapeDataString wxTkId}"

let simFollower (pair: Pair) (appid: string) (id: string) =
    task {
        let! r = pair.Http.GetAsync(pair.SimUrl $"/sim/oauth/followers?appid={appid}")
        let! root = json r
        return root.EnumerateArray() |> Seq.find (fun f -> str f "id" = id)
    }


let tests =
    testSequencedGroup "OAuthApi"
    <| testList
        "OAuthApi"
        [
            testTheoryTask
                "a follower goes from the menu URL through consent to the business page with a wxTkId that resolves to them"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    use! pair = startAuthorized provider "shop-1" shop []
                    do! addRoute pair "card" (businessPage + "?from=menu") "snsapi_userinfo" "shop-1"
                    let! _, answer = visit pair shop "card" "s-42" "f2"
                    Expect.equal answer.StatusCode HttpStatusCode.Redirect "answer.StatusCode"
                    let location = answer.Headers.Location
                    Expect.stringStarts (string location) (businessPage + "?from=menu&wxTkId=") "string location"
                    Expect.equal location.Fragment "#s-42" "location.Fragment"
                    let token = wxTkIdOf location
                    Expect.isTrue (token.Length >= 22) token
                    let! expected = simFollower pair shop "f2"
                    let! resolved = resolve pair token
                    Expect.equal resolved.StatusCode HttpStatusCode.OK "resolved.StatusCode"
                    let! v = json resolved
                    Expect.equal (str v "openid") (str expected "openid") "str v 'openid'"
                    Expect.equal (str v "unionid") (str expected "unionid") "str v 'unionid'"
                    Expect.equal (str v "authorizer_appid") shop "str v 'authorizer_appid'"
                    Expect.equal (str v "tenant") "shop-1" "str v 'tenant'"
                    Expect.equal (str v "func_key") "card" "str v 'func_key'"
                    Expect.equal (str v "scope") "snsapi_userinfo" "str v 'scope'"
                    Expect.equal (str v "nickname") "Lily" "str v 'nickname'"
                    Expect.isNotNull (str v "headimgurl") "str v 'headimgurl'"
                    Expect.isNotNull (str v "expires_at") "str v 'expires_at'"
                    // The follower is stored per account; the refresh token never leaves the store.
                    let! f =
                        pair.Gateway.Api.GetAsync $"""/api/authorizers/{shop}/followers/{str expected "openid"}"""

                    Expect.equal f.StatusCode HttpStatusCode.OK "f.StatusCode"
                    let! follower = f.Content.ReadAsStringAsync()
                    Expect.stringContains follower ("\"nickname\":\"Lily\"") "follower"
                    Expect.stringContains follower ("\"has_refresh_token\":true") "follower"
                    Expect.isFalse (follower.Contains("sim_oauth_rt_")) "follower has no 'sim_oauth_rt_'"
                    let! unknown = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}/followers/onobody"
                    Expect.equal unknown.StatusCode HttpStatusCode.NotFound "unknown.StatusCode"
                    // Nothing of the OAuth exchange reaches the logs.
                    for line in pair.Gateway.Logs.All do
                        Expect.isFalse (line.Contains("sim_oauth_")) "line has no 'sim_oauth_'"
                        Expect.isFalse (line.Contains(token: string)) "line must not contain token"
                }

            testCaseTask "snsapi_base redirects at once, and its wxTkId carries no profile"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    do! addRoute pair "silent" businessPage "snsapi_base" ""
                    let! _, answer = visit pair shop "silent" "" "unused"
                    Expect.equal answer.StatusCode HttpStatusCode.Redirect "answer.StatusCode"
                    let location = answer.Headers.Location
                    // No state: no fragment.
                    Expect.equal location.Fragment "" "location.Fragment"
                    let! resolved = resolve pair (wxTkIdOf location)
                    let! v = json resolved
                    let! expected = simFollower pair shop "f1"
                    Expect.equal (str v "openid") (str expected "openid") "str v 'openid'"
                    Expect.equal (str v "scope") "snsapi_base" "str v 'scope'"

                    Expect.equal
                        (v.GetProperty("nickname").ValueKind)
                        JsonValueKind.Null
                        "v.GetProperty('nickname').ValueKind"

                    Expect.equal
                        (v.GetProperty("headimgurl").ValueKind)
                        JsonValueKind.Null
                        "v.GetProperty('headimgurl').ValueKind"
                }

            testCaseTask "a URL-encoded and Chinese state comes back in the fragment as it was given"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    do! addRoute pair "card" businessPage "snsapi_userinfo" ""
                    let state = "订单 #12&x=1/中文?%20"
                    let! _, answer = visit pair shop "card" state "f1"
                    let location = answer.Headers.Location

                    Expect.equal
                        (Uri.UnescapeDataString(location.Fragment.TrimStart '#'))
                        state
                        "Uri.UnescapeDataString(location.Fragment.TrimStart '#')"

                    let! resolved = resolve pair (wxTkIdOf location)
                    Expect.equal resolved.StatusCode HttpStatusCode.OK "resolved.StatusCode"
                    // More than WeChat's 128 bytes of state is refused before WeChat sees it.
                    let! tooLong = pair.Http.GetAsync(startUrl pair shop "card" (String('中', 43)))
                    Expect.equal tooLong.StatusCode HttpStatusCode.BadRequest "tooLong.StatusCode"
                }

            testCaseTask "a denial goes to the business page with access_denied and no exchange"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    do! addRoute pair "card" businessPage "snsapi_userinfo" ""
                    let! _, answer = visit pair shop "card" "s1" "deny"
                    Expect.equal answer.StatusCode HttpStatusCode.Redirect "answer.StatusCode"

                    Expect.equal
                        (string answer.Headers.Location)
                        (businessPage + "?wxTkId=&error=access_denied#s1")
                        "string answer.Headers.Location"

                    let! exchanges = calls pair "sns_component_access_token"
                    Expect.equal exchanges 0 "exchanges"
                }

            testCaseTask "a reload of the redirect answers a clear page without a second exchange; an expired code too"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    do! addRoute pair "card" businessPage "snsapi_userinfo" ""
                    let! back, first = visit pair shop "card" "s1" "f1"
                    Expect.equal first.StatusCode HttpStatusCode.Redirect "first.StatusCode"
                    let! reload = pair.Http.GetAsync back
                    let! html = reload.Content.ReadAsStringAsync()
                    Expect.equal reload.StatusCode HttpStatusCode.Gone "reload.StatusCode"

                    Expect.stringStarts
                        (string reload.Content.Headers.ContentType)
                        "text/html"
                        "string reload.Content.Headers.ContentType"

                    Expect.stringContains html "already used" "html"
                    let! exchanges = calls pair "sns_component_access_token"
                    Expect.equal exchanges 1 "exchanges"
                    // A code that waited more than WeChat's 5 minutes: WeChat says 40029, the page says so.
                    let! started = pair.Http.GetAsync(startUrl pair shop "card" "s2")
                    let query = QueryHelpers.ParseQuery started.Headers.Location.Query

                    let form =
                        new FormUrlEncodedContent(
                            [
                                for k in [ "appid"; "redirect_uri"; "scope"; "state" ] do
                                    KeyValuePair(k, string query[k])
                                KeyValuePair("decision", "allow")
                                KeyValuePair("follower", "f1")
                            ]
                        )

                    let! confirmed = pair.Http.PostAsync(pair.SimUrl "/sim/oauth/confirm", form)
                    let! _ = postJson pair.Http (pair.SimUrl "/sim/clock/advance") {| seconds = 301 |}
                    let! late = pair.Http.GetAsync confirmed.Headers.Location
                    let! lateHtml = late.Content.ReadAsStringAsync()
                    Expect.equal late.StatusCode HttpStatusCode.Gone "late.StatusCode"
                    Expect.stringContains lateHtml "expired" "lateHtml"
                }

            testCaseTask "a wxTkId stops resolving when its lifetime is over; an unknown one never does"
            <| fun () ->
                task {
                    use! pair =
                        startAuthorized "sqlite" "shop-1" shop [ "WeChatFs:OAuth:TrackingTokenLifetime", "00:10:00" ]

                    do! addRoute pair "card" businessPage "snsapi_base" ""
                    let! _, answer = visit pair shop "card" "s" "f1"
                    let token = wxTkIdOf answer.Headers.Location
                    let! fresh = resolve pair token
                    Expect.equal fresh.StatusCode HttpStatusCode.OK "fresh.StatusCode"
                    pair.Gateway.Clock.Offset <- TimeSpan.FromMinutes 11.
                    let! expired = resolve pair token
                    Expect.equal expired.StatusCode HttpStatusCode.NotFound "expired.StatusCode"
                    let! unknown = resolve pair "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                    Expect.equal unknown.StatusCode HttpStatusCode.NotFound "unknown.StatusCode"
                    use anonymous = new HttpClient()

                    let! refused =
                        anonymous.GetAsync(pair.Gateway.Url $"/api/oauth/tracking-tokens/{token}")

                    Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"
                }
        ]

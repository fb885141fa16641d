/// The pure part of web pages on behalf of accounts: the JS-SDK signature's known answers (facts §8),
/// WeChat's authorize URL (facts §7), the business redirect, routes, admission and tracking tokens.
module WeChatFs.Tests.OAuthTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Domain
open WeChatFs.OAuth

let private ticket =
    "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"


let tests =
    testList
        "OAuth"
        [
            testCase "the JS-SDK signature gives the official answer for a URL with a query"
            <| fun () ->
                Expect.equal
                    (jsSdkSignature ticket "Wm3WZYTPz0wzccnW" 1414587457L "http://mp.weixin.qq.com?params=value")
                    "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
                    "jsSdkSignature ticket 'Wm3WZYTPz0wzccnW' 1414587457L 'http://mp.wei..."

            testCase "the JS-SDK signature gives the official answer for a bare URL, and ignores the fragment"
            <| fun () ->
                Expect.equal
                    (jsSdkSignature ticket "Wm3WZYTPz0wzccnW" 1414587457L "http://mp.weixin.qq.com")
                    "f4d90daf4b3bca3078ab155816175ba34c443a7b"
                    "jsSdkSignature ticket 'Wm3WZYTPz0wzccnW' 1414587457L 'http://mp.wei..."

                Expect.equal
                    (jsSdkSignature ticket "Wm3WZYTPz0wzccnW" 1414587457L "http://mp.weixin.qq.com#/page?x=1")
                    "f4d90daf4b3bca3078ab155816175ba34c443a7b"
                    "jsSdkSignature ticket 'Wm3WZYTPz0wzccnW' 1414587457L 'http://mp.wei..."

            testCase "the authorize URL has the documented parameter order, component_appid and wechat_redirect"
            <| fun () ->
                let redirect =
                    receiveUri (Uri "https://gw.example.com/") (ComponentAppId "wxcomp") "member-card"

                Expect.equal
                    redirect
                    "https://gw.example.com/wechat/oauth/authUserReceive/wxcomp/member-card"
                    "redirect"

                let url =
                    authorizeUrl
                        (Uri "https://open.weixin.qq.com")
                        (AuthorizerAppId "wxshop")
                        redirect
                        SnsapiUserinfo
                        "a b&中"
                        (ComponentAppId "wxcomp")

                Expect.equal
                    url
                    "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wxshop&redirect_uri=https%3A%2F%2Fgw.example.com%2Fwechat%2Foauth%2FauthUserReceive%2Fwxcomp%2Fmember-card&response_type=code&scope=snsapi_userinfo&state=a%20b%26%E4%B8%AD&component_appid=wxcomp#wechat_redirect"
                    "url"

            testCase "the business redirect carries the wxTkId in the query and the state in the fragment"
            <| fun () ->
                Expect.equal
                    (businessRedirect (Uri "https://shop.example.com/m") "T1" "s1")
                    "https://shop.example.com/m?wxTkId=T1#s1"
                    "businessRedirect (Uri 'https://shop.example.com/m') 'T1' 's1'"

                Expect.equal
                    (businessRedirect (Uri "https://shop.example.com/m?a=1") "T1" "s1")
                    "https://shop.example.com/m?a=1&wxTkId=T1#s1"
                    "businessRedirect (Uri 'https://shop.example.com/m?a=1') 'T1' 's1'"

                Expect.equal
                    (businessRedirect (Uri "https://shop.example.com/m") "T1" "")
                    "https://shop.example.com/m?wxTkId=T1"
                    "businessRedirect (Uri 'https://shop.example.com/m') 'T1' ''"

                Expect.equal
                    (deniedRedirect (Uri "https://shop.example.com/m") "中 x")
                    "https://shop.example.com/m?wxTkId=&error=access_denied#%E4%B8%AD%20x"
                    "deniedRedirect (Uri 'https://shop.example.com/m') '中 x'"

            testCase "a route names the first bad field"
            <| fun () ->
                let field r =
                    match r with
                    | Ok _ -> "ok"
                    | Error e -> e.Field

                Expect.equal
                    (field (route "card_1-a" "https://shop.example.com/x" "snsapi_base" "" ""))
                    "ok"
                    "field (route 'card_1-a' 'https://shop.example.com/x' 'snsapi_base' ..."

                Expect.equal
                    (field (route "card 1" "https://shop.example.com/x" "snsapi_base" "" ""))
                    "func_key"
                    "field (route 'card 1' 'https://shop.example.com/x' 'snsapi_base' ''..."

                Expect.equal
                    (field (route "" "https://shop.example.com/x" "snsapi_base" "" ""))
                    "func_key"
                    "field (route '' 'https://shop.example.com/x' 'snsapi_base' '' '')"

                Expect.equal
                    (field (route "card" "ftp://shop.example.com/x" "snsapi_base" "" ""))
                    "target_url"
                    "field (route 'card' 'ftp://shop.example.com/x' 'snsapi_base' '' '')"

                Expect.equal
                    (field (route "card" "/relative" "snsapi_base" "" ""))
                    "target_url"
                    "field (route 'card' '/relative' 'snsapi_base' '' '')"

                Expect.equal
                    (field (route "card" "https://shop.example.com/x#frag" "snsapi_base" "" ""))
                    "target_url"
                    "field (route 'card' 'https://shop.example.com/x#frag' 'snsapi_base'..."

                Expect.equal
                    (field (route "card" "https://shop.example.com/x" "snsapi_login" "" ""))
                    "scope"
                    "field (route 'card' 'https://shop.example.com/x' 'snsapi_login' '' '')"

            testCase "admission: a route of a tenant serves only that tenant's authorized accounts"
            <| fun () ->
                let account tenant status =
                    {
                        AppId = AuthorizerAppId "wxa"
                        Tenant = tenant |> Option.map TenantId
                        Status = status
                        StatusReason = None
                        FuncIds = []
                        Profile = None
                        RefreshToken = None
                        AccessToken = None
                        AuthorizedAt = DateTimeOffset.UnixEpoch
                        UpdatedAt = DateTimeOffset.UnixEpoch
                    }

                let gen =
                    Gen.zip3
                        (Gen.elements [ None; Some "t1"; Some "t2" ])
                        (Gen.elements [ None; Some "t1"; Some "t2" ])
                        (Gen.elements [ None; Some Authorized; Some Revoked; Some NeedsReauthorization ])

                Prop.forAll (Arb.fromGen gen) (fun (routeTenant, accountTenant, status) ->
                    let r =
                        {
                            FuncKey = "k"
                            TargetUrl = Uri "https://x.example.com/"
                            Scope = SnsapiBase
                            Description = None
                            Tenant = routeTenant |> Option.map TenantId
                        }

                    let a = status |> Option.map (account accountTenant)

                    match admit (Some r) a, status with
                    | Error UnknownAccount, None -> true
                    | Error(AccountNotAuthorized s), Some s2 -> s = s2 && s <> Authorized
                    | Error(TenantMismatch _), Some Authorized -> routeTenant.IsSome && routeTenant <> accountTenant
                    | Ok _, Some Authorized -> routeTenant.IsNone || routeTenant = accountTenant
                    | _ -> false)
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

                Expect.equal (admit None None) (Error UnknownFuncKey) "admit None None"

            testCase "a tracking token carries 256 random bits, URL-safe, and only its hash is kept"
            <| fun () ->
                Prop.forAll (Arb.fromGen (Helpers.bytes 32)) (fun bytes ->
                    let token = trackingToken bytes

                    token.Length = 43
                    && token |> Seq.forall (fun c -> Char.IsAsciiLetterOrDigit c || c = '-' || c = '_')
                    && Uri.EscapeDataString token = token
                    && hashTrackingToken token <> token
                    && hashTrackingToken token = hashTrackingToken (String(token.ToCharArray())))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

                Expect.notEqual
                    (trackingToken (Array.init 32 byte))
                    (trackingToken (Array.zeroCreate 32))
                    "trackingToken (Array.init 32 byte)"

            testCase "verification file names follow WeChat's pattern and nothing else"
            <| fun () ->
                Expect.isTrue
                    (isVerificationFileName "MP_verify_abcDEF123.txt")
                    "isVerificationFileName 'MP_verify_abcDEF123.txt'"

                Expect.isTrue (isVerificationFileName "a-b_c.txt") "isVerificationFileName 'a-b_c.txt'"
                Expect.isFalse (isVerificationFileName "MP_verify.TXT") "isVerificationFileName 'MP_verify.TXT'"
                Expect.isFalse (isVerificationFileName "../etc/passwd.txt") "isVerificationFileName '../etc/passwd.txt'"
                Expect.isFalse (isVerificationFileName "a.b.txt") "isVerificationFileName 'a.b.txt'"

                Expect.isFalse
                    (isVerificationFileName (String('a', 65) + ".txt"))
                    "isVerificationFileName (String('a', 65) + '.txt')"

                Expect.isFalse (isVerificationFileName "healthz") "isVerificationFileName 'healthz'"

            testCase "state fits WeChat's 128 bytes, counted in UTF-8"
            <| fun () ->
                Expect.isTrue (stateFits (String('a', 128))) "stateFits (String('a', 128))"
                Expect.isFalse (stateFits (String('a', 129))) "stateFits (String('a', 129))"
                // 43 Chinese characters are 129 bytes.
                Expect.isFalse (stateFits (String('中', 43))) "stateFits (String('中', 43))"
                Expect.isTrue (stateFits (String('中', 42))) "stateFits (String('中', 42))"

        ]

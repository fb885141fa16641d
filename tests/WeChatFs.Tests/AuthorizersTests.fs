/// The authorizer service's pure parts: the authorization links of facts §4, the per-account jitter
/// and the refresh backoff (the flows themselves run over HTTP in AuthorizerApiTests).
module WeChatFs.Tests.AuthorizersTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Domain
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers

let private mp = Uri "https://mp.weixin.qq.com"

let tests =
    testList
        "Authorizers"
        [
            testCase "the PC and mobile links are WeChat's, parameters URL-encoded, in the facts' order"
            <| fun () ->
                let pc, mobile =
                    authorizationUrls
                        mp
                        (ComponentAppId "wxcomponent")
                        (PreAuthCode "preauthcode@@@x")
                        "https://gw.example.com/wechat/component/authorized?state=a&b"
                        (Some 3)
                        None

                Expect.equal
                    pc
                    "https://mp.weixin.qq.com/cgi-bin/componentloginpage?component_appid=wxcomponent&pre_auth_code=preauthcode%40%40%40x&redirect_uri=https%3A%2F%2Fgw.example.com%2Fwechat%2Fcomponent%2Fauthorized%3Fstate%3Da%26b&auth_type=3"
                    "PC scan page (facts §4.1)"

                Expect.equal
                    mobile
                    "https://mp.weixin.qq.com/safe/bindcomponent?action=bindcomponent&no_scan=1&component_appid=wxcomponent&pre_auth_code=preauthcode%40%40%40x&redirect_uri=https%3A%2F%2Fgw.example.com%2Fwechat%2Fcomponent%2Fauthorized%3Fstate%3Da%26b&auth_type=3#wechat_redirect"
                    "mobile page (facts §4.2)"

            testCase "biz_appid is carried when given and auth_type left out when not"
            <| fun () ->
                let pc, _ =
                    authorizationUrls
                        (Uri "http://127.0.0.1:5081/")
                        (ComponentAppId "wxc")
                        (PreAuthCode "p")
                        "http://r"
                        None
                        (Some "wxbiz")

                Expect.equal
                    pc
                    "http://127.0.0.1:5081/cgi-bin/componentloginpage?component_appid=wxc&pre_auth_code=p&redirect_uri=http%3A%2F%2Fr&biz_appid=wxbiz"
                    "a simulator base URL works the same"

            testProp
                "an account's jitter is the same every time, on every instance, and below the maximum"
                (fun (appid: string) ->
                    let appid = AuthorizerAppId(defaultArg (Option.ofObj appid) "")
                    let max = TimeSpan.FromMinutes 2.
                    let j = jitterFor max appid
                    j = jitterFor max appid && j >= TimeSpan.Zero && j < max)

            testCase "jitter spreads accounts over the whole window"
            <| fun () ->
                let max = TimeSpan.FromMinutes 2.

                let buckets =
                    [ 1..1200 ]
                    |> List.countBy (fun i -> int (jitterFor max (AuthorizerAppId $"wx{i:D16}")).TotalSeconds / 10)

                // Twelve buckets of ten seconds, each with a fair share (100 expected).
                Expect.equal buckets.Length 12 "every part of the window is used"

                for bucket, n in buckets do
                    Expect.isTrue (n > 50 && n < 150) $"bucket {bucket} holds {n} of 1200"

            testCase "no jitter when none is configured"
            <| fun () -> Expect.equal (jitterFor TimeSpan.Zero (AuthorizerAppId "wx1")) TimeSpan.Zero "zero"

            testCase "failed refreshes back off per account, 2 s doubling to five minutes"
            <| fun () ->
                let waits =
                    [ 1; 2; 3; 8; 9; 20 ]
                    |> List.map (Backoff.delay Backoff.authorizerToken >> fun t -> t.TotalSeconds)

                Expect.equal waits [ 2.; 4.; 8.; 256.; 300.; 300. ] "the schedule"
        ]

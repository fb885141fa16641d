/// The proxies' paths and queries: tricks refused with 400 before WeChat is called, the caller's own
/// token parameters dropped, large bodies refused with 413; over HTTP against the simulator.
module WeChatFs.Tests.ProxyPathTests

open System
open System.Net
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open FsCheck
open FsCheck.FSharp
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

/// The status of a POST whose request line is sent byte for byte as given.
let private rawStatus (baseUrl: string) (target: string) =
    task {
        let uri = Uri baseUrl
        use client = new Net.Sockets.TcpClient()
        do! client.ConnectAsync(uri.Host, uri.Port)
        use stream = client.GetStream()

        let request =
            $"POST {target} HTTP/1.1\r\nHost: {uri.Authority}\r\nAuthorization: Bearer {adminKey}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"

        let bytes = Encoding.ASCII.GetBytes request
        do! stream.WriteAsync(bytes, 0, bytes.Length)
        use reader = new IO.StreamReader(stream)
        let! statusLine = reader.ReadLineAsync()
        return int (statusLine.Split(' ')[1])
    }


let tests =
    testSequencedGroup "ProxyPath"
    <| testList
        "ProxyPath"
        [
            testCase "a path is rebuilt from re-encoded segments and tricks are refused with the reason"
            <| fun () ->
                Expect.equal
                    (ProxyPath.normalize "cgi-bin/component/api_get_authorizer_list")
                    (Ok "/cgi-bin/component/api_get_authorizer_list")
                    "ProxyPath.normalize 'cgi-bin/component/api_get_authorizer_list'"

                Expect.equal
                    (ProxyPath.normalize "wxa/中/a=b")
                    (Ok "/wxa/%E4%B8%AD/a%3Db")
                    "ProxyPath.normalize 'wxa/中/a=b'"

                Expect.equal
                    (ProxyPath.normalize "wxa/a b")
                    (Error ProxyPath.ControlCharacter)
                    "ProxyPath.normalize 'wxa/a b'"

                Expect.equal
                    (ProxyPath.normalize ("wxa/" + string (char 0xD800) + "x"))
                    (Error ProxyPath.InvalidText)
                    "ProxyPath.normalize ('wxa/' + string (char 0xD800) + 'x')"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin/x?access_token=attacker")
                    (Error ProxyPath.QueryInPath)
                    "ProxyPath.normalize 'cgi-bin/x?access_token=attacker'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin/x#frag")
                    (Error ProxyPath.FragmentInPath)
                    "ProxyPath.normalize 'cgi-bin/x#frag'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin/../sns/x")
                    (Error ProxyPath.DotSegment)
                    "ProxyPath.normalize 'cgi-bin/../sns/x'"

                Expect.equal
                    (ProxyPath.normalize "./cgi-bin")
                    (Error ProxyPath.DotSegment)
                    "ProxyPath.normalize './cgi-bin'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin//x")
                    (Error ProxyPath.EmptySegment)
                    "ProxyPath.normalize 'cgi-bin//x'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin/x/")
                    (Error ProxyPath.EmptySegment)
                    "ProxyPath.normalize 'cgi-bin/x/'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin%2Fx")
                    (Error ProxyPath.EncodedCharacter)
                    "ProxyPath.normalize 'cgi-bin%2Fx'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin/x\r\nHost: evil")
                    (Error ProxyPath.ControlCharacter)
                    "ProxyPath.normalize 'cgi-bin/x\\r\\nHost: evil'"

                Expect.equal
                    (ProxyPath.normalize "cgi-bin\\x")
                    (Error ProxyPath.Backslash)
                    "ProxyPath.normalize 'cgi-bin\\\\x'"

                Expect.equal (ProxyPath.normalize "") (Error ProxyPath.EmptyPath) "ProxyPath.normalize ''"

                Expect.isTrue
                    (ProxyPath.rawHasDotSegment "/api/component/wechat/cgi-bin/%2E%2E/x?a=b")
                    "ProxyPath.rawHasDotSegment '/api/component/wechat/cgi-bin/%2E%2E/x?..."

                Expect.isTrue
                    (ProxyPath.rawHasDotSegment "/api/component/wechat/cgi-bin/./x")
                    "ProxyPath.rawHasDotSegment '/api/component/wechat/cgi-bin/./x'"

                Expect.isFalse
                    (ProxyPath.rawHasDotSegment "/api/component/wechat/cgi-bin/x?path=/../y")
                    "ProxyPath.rawHasDotSegment '/api/component/wechat/cgi-bin/x?path=/...."

                Expect.equal
                    (ProxyPath.normalize (String('a', 1025)))
                    (Error ProxyPath.TooLong)
                    "ProxyPath.normalize (String('a', 1025))"

                Expect.equal
                    (ProxyPath.forwardedQuery [ "access_token", "a"; "type", "jsapi"; "Component_Access_Token", "b" ])
                    ([ "type", "jsapi" ])
                    "ProxyPath.forwardedQuery [ 'access_token', 'a'; 'type', 'jsapi'; 'C..."

            testCase "any path either is refused or becomes segments that decode back to the caller's"
            <| fun () ->
                let anyPath =
                    Gen.frequency
                        [
                            3, ArbMap.defaults |> ArbMap.generate<string>
                            3,
                            Gen.listOf (
                                Gen.elements
                                    [ "cgi-bin"; "a"; "?"; "#"; "%2F"; ".."; "."; ""; "x y"; "中"; "\\"; "\n"; "=" ]
                            )
                            |> Gen.map (String.concat "/")
                        ]
                    |> Gen.map (fun s -> if isNull s then "" else s)
                    |> Arb.fromGen

                Prop.forAll anyPath (fun path ->
                    match ProxyPath.normalize path with
                    | Error _ -> true
                    | Ok upstream ->
                        upstream.StartsWith "/"
                        && not (upstream.Contains '?')
                        && not (upstream.Contains '#')
                        && (upstream.Substring(1).Split '/'
                            |> Array.map Uri.UnescapeDataString
                            |> String.concat "/")
                            =
                            path)
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), p)

            testCaseTask "a query smuggled into the proxy path is refused and forces no refresh"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api
                    let! before = calls pair "api_component_token"
                    let! _, token = componentToken pair

                    for trick in
                        [
                            "cgi-bin/component/api_get_authorizer_list%3Fcomponent_access_token%3Dattacker"
                            "cgi-bin/component/api_get_authorizer_list%23"
                            "cgi-bin%2Fcomponent/api_get_authorizer_list"
                            "cgi-bin/component//api_get_authorizer_list"
                            "cgi-bin/component/x%0D%0AHost:%20evil"
                        ] do
                        let! r =
                            pair.Gateway.Api.PostAsync($"/api/component/wechat/{trick}", new StringContent("{}"))

                        let! body = r.Content.ReadAsStringAsync()
                        Expect.isTrue (r.StatusCode = HttpStatusCode.BadRequest) ($"{trick}: {int r.StatusCode} {body}")
                        Expect.stringContains body "path" "body"

                    // An encoded dot segment, sent as is (HttpClient would resolve it before sending).
                    let! raw =
                        rawStatus pair.Gateway.BaseUrl "/api/component/wechat/cgi-bin/component/%2E%2E/x"

                    Expect.equal raw 400 "raw"
                    let! after = calls pair "api_component_token"
                    Expect.equal after before "after"
                    let! _, tokenAfter = componentToken pair

                    Expect.equal
                        (str tokenAfter.Value "component_access_token")
                        (str token.Value "component_access_token")
                        "str tokenAfter.Value 'component_access_token'"
                }

            testCaseTask "the caller's own token parameters never reach WeChat; the gateway's token is used"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api
                    let! before = calls pair "api_component_token"

                    let! listed =
                        postJson
                            pair.Gateway.Api
                            "/api/component/wechat/cgi-bin/component/api_get_authorizer_list?component_access_token=attacker&access_token=attacker"
                            {|
                                component_appid = componentAppId
                                offset = 0
                                count = 100
                            |}

                    let! body = listed.Content.ReadAsStringAsync()
                    Expect.equal listed.StatusCode HttpStatusCode.OK "listed.StatusCode"
                    Expect.isFalse (body.Contains("errcode\":4")) "body has no 'errcode\\':4'"
                    Expect.stringContains body "total_count" "body"
                    let! after = calls pair "api_component_token"
                    Expect.equal after before "after"
                }

            testCaseTask "a proxied body over the limit is refused with 413 and a lower-case bearer is accepted"
            <| fun () ->
                task {
                    use! pair =
                        startPairWith (simulatorOptions ()) [ "WeChatFs:Proxy:MaxBodyBytes", "65536" ]

                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

                    let! big =
                        pair.Gateway.Api.PostAsync(
                            "/api/component/wechat/cgi-bin/component/api_get_authorizer_list",
                            new ByteArrayContent(Array.create 200_000 (byte 'a'))
                        )

                    Expect.equal big.StatusCode HttpStatusCode.RequestEntityTooLarge "big.StatusCode"

                    use chunked =
                        new HttpRequestMessage(
                            HttpMethod.Post,
                            "/api/component/wechat/cgi-bin/component/api_get_authorizer_list",
                            Content = new StreamContent(new IO.MemoryStream(Array.create 200_000 (byte 'a')))
                        )

                    chunked.Headers.TransferEncodingChunked <- true
                    let! bigChunked = pair.Gateway.Api.SendAsync chunked
                    Expect.equal bigChunked.StatusCode HttpStatusCode.RequestEntityTooLarge "bigChunked.StatusCode"

                    use lower = new HttpClient(BaseAddress = Uri pair.Gateway.BaseUrl)

                    lower.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", $"bearer {adminKey}")
                    |> ignore

                    let! status = lower.GetAsync "/api/component/status"
                    Expect.equal status.StatusCode HttpStatusCode.OK "status.StatusCode"
                    lower.DefaultRequestHeaders.Remove "Authorization" |> ignore

                    lower.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "bearer wrong-key")
                    |> ignore

                    let! refused = lower.GetAsync "/api/component/status"
                    Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"
                }

        ]

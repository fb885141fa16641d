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
open Xunit
open WeChatFs
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

[<Fact>]
let ``a path is rebuilt from re-encoded segments and tricks are refused with the reason`` () =
    Assert.Equal(
        Ok "/cgi-bin/component/api_get_authorizer_list",
        ProxyPath.normalize "cgi-bin/component/api_get_authorizer_list"
    )

    Assert.Equal(Ok "/wxa/%E4%B8%AD/a%3Db", ProxyPath.normalize "wxa/中/a=b")
    Assert.Equal(Error ProxyPath.ControlCharacter, ProxyPath.normalize "wxa/a b")
    Assert.Equal(Error ProxyPath.InvalidText, ProxyPath.normalize ("wxa/" + string (char 0xD800) + "x"))
    Assert.Equal(Error ProxyPath.QueryInPath, ProxyPath.normalize "cgi-bin/x?access_token=attacker")
    Assert.Equal(Error ProxyPath.FragmentInPath, ProxyPath.normalize "cgi-bin/x#frag")
    Assert.Equal(Error ProxyPath.DotSegment, ProxyPath.normalize "cgi-bin/../sns/x")
    Assert.Equal(Error ProxyPath.DotSegment, ProxyPath.normalize "./cgi-bin")
    Assert.Equal(Error ProxyPath.EmptySegment, ProxyPath.normalize "cgi-bin//x")
    Assert.Equal(Error ProxyPath.EmptySegment, ProxyPath.normalize "cgi-bin/x/")
    Assert.Equal(Error ProxyPath.EncodedCharacter, ProxyPath.normalize "cgi-bin%2Fx")
    Assert.Equal(Error ProxyPath.ControlCharacter, ProxyPath.normalize "cgi-bin/x\r\nHost: evil")
    Assert.Equal(Error ProxyPath.Backslash, ProxyPath.normalize "cgi-bin\\x")
    Assert.Equal(Error ProxyPath.EmptyPath, ProxyPath.normalize "")
    Assert.True(ProxyPath.rawHasDotSegment "/api/component/wechat/cgi-bin/%2E%2E/x?a=b")
    Assert.True(ProxyPath.rawHasDotSegment "/api/component/wechat/cgi-bin/./x")
    Assert.False(ProxyPath.rawHasDotSegment "/api/component/wechat/cgi-bin/x?path=/../y")
    Assert.Equal(Error ProxyPath.TooLong, ProxyPath.normalize (String('a', 1025)))

    Assert.Equal<(string * string) list>(
        [ "type", "jsapi" ],
        ProxyPath.forwardedQuery [ "access_token", "a"; "type", "jsapi"; "Component_Access_Token", "b" ]
    )

[<Fact>]
let ``any path either is refused or becomes segments that decode back to the caller's`` () =
    let anyPath =
        Gen.frequency
            [
                3, ArbMap.defaults |> ArbMap.generate<string>
                3,
                Gen.listOf (
                    Gen.elements [ "cgi-bin"; "a"; "?"; "#"; "%2F"; ".."; "."; ""; "x y"; "中"; "\\"; "\n"; "=" ]
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

[<Fact>]
let ``a query smuggled into the proxy path is refused and forces no refresh`` () =
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
            Assert.True(r.StatusCode = HttpStatusCode.BadRequest, $"{trick}: {int r.StatusCode} {body}")
            Assert.Contains("path", body)

        // An encoded dot segment, sent as is (HttpClient would resolve it before sending).
        let! raw =
            rawStatus pair.Gateway.BaseUrl "/api/component/wechat/cgi-bin/component/%2E%2E/x"

        Assert.Equal(400, raw)
        let! after = calls pair "api_component_token"
        Assert.Equal(before, after)
        let! _, tokenAfter = componentToken pair
        Assert.Equal(str token.Value "component_access_token", str tokenAfter.Value "component_access_token")
    }

[<Fact>]
let ``the caller's own token parameters never reach WeChat; the gateway's token is used`` () =
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
        Assert.Equal(HttpStatusCode.OK, listed.StatusCode)
        Assert.DoesNotContain("errcode\":4", body)
        Assert.Contains("total_count", body)
        let! after = calls pair "api_component_token"
        Assert.Equal(before, after)
    }

[<Fact>]
let ``a proxied body over the limit is refused with 413 and a lower-case bearer is accepted`` () =
    task {
        use! pair =
            startPairWith (simulatorOptions ()) [ "WeChatFs:Proxy:MaxBodyBytes", "65536" ]

        do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

        let! big =
            pair.Gateway.Api.PostAsync(
                "/api/component/wechat/cgi-bin/component/api_get_authorizer_list",
                new ByteArrayContent(Array.create 200_000 (byte 'a'))
            )

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, big.StatusCode)

        use chunked =
            new HttpRequestMessage(
                HttpMethod.Post,
                "/api/component/wechat/cgi-bin/component/api_get_authorizer_list",
                Content = new StreamContent(new IO.MemoryStream(Array.create 200_000 (byte 'a')))
            )

        chunked.Headers.TransferEncodingChunked <- true
        let! bigChunked = pair.Gateway.Api.SendAsync chunked
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, bigChunked.StatusCode)

        use lower = new HttpClient(BaseAddress = Uri pair.Gateway.BaseUrl)

        lower.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", $"bearer {adminKey}")
        |> ignore

        let! status = lower.GetAsync "/api/component/status"
        Assert.Equal(HttpStatusCode.OK, status.StatusCode)
        lower.DefaultRequestHeaders.Remove "Authorization" |> ignore

        lower.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "bearer wrong-key")
        |> ignore

        let! refused = lower.GetAsync "/api/component/status"
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode)
    }

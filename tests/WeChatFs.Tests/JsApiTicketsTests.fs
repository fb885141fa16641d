/// JS-SDK configs on behalf of an authorizer, over HTTP against the simulator: the signature verifies
/// with the ticket WeChat gave, the ticket is fetched once however many pages ask at once, kept in
/// the store across a restart, and fetched again with a renewed authorizer token after 40001.
module WeChatFs.Tests.JsApiTicketsTests

open System
open System.Net
open System.Text.Json
open System.Threading.Tasks
open Xunit
open WeChatFs
open WeChatFs.Tests.Harness
open WeChatFs.Tests.OAuthApiTests

let private config (pair: Pair) (appid: string) (url: string) =
    pair.Gateway.Api.GetAsync $"/api/authorizers/{appid}/jssdk-config?url={Uri.EscapeDataString url}"

/// The ticket the simulated WeChat hands out for `appid` right now, asked with the gateway's token.
let private simTicket (pair: Pair) (appid: string) =
    task {
        let! t = pair.Gateway.Api.GetAsync $"/api/authorizers/{appid}/access-token"
        let! token = json t

        let! r =
            pair.Http.GetAsync(
                pair.SimUrl
                    $"""/cgi-bin/ticket/getticket?access_token={str token "authorizer_access_token"}&type=jsapi"""
            )

        let! root = json r
        return str root "ticket"
    }

[<Fact>]
let ``a JS-SDK config has wx.config's fields and a signature that verifies with WeChat's ticket`` () =
    task {
        use! pair = startAuthorized "sqlite" "shop-1" shop []
        let page = "https://shop.example.com/member?id=7#/tab"
        let! r = config pair shop page
        let! body = r.Content.ReadAsStringAsync()
        Assert.Equal(HttpStatusCode.OK, r.StatusCode)
        let c = JsonDocument.Parse(body).RootElement
        Assert.Equal(shop, c.GetProperty("appId").GetString())
        let timestamp = c.GetProperty("timestamp").GetInt64()
        let nonce = c.GetProperty("nonceStr").GetString()
        Assert.True(abs (DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp) < 60L)
        Assert.Equal(16, nonce.Length)
        let! ticket = simTicket pair shop

        Assert.Equal(
            OAuth.jsSdkSignature ticket nonce timestamp "https://shop.example.com/member?id=7",
            c.GetProperty("signature").GetString()
        )

        let! missing = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}/jssdk-config"
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode)
        let! notHttp = config pair shop "ftp://shop.example.com/x"
        Assert.Equal(HttpStatusCode.BadRequest, notHttp.StatusCode)
        let! unknown = config pair "wxnobody" page
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode)
    }

[<Fact>]
let ``the jsapi_ticket is fetched once for 100 concurrent config requests, and kept across a restart`` () =
    task {
        use! pair = startAuthorized "sqlite" "shop-1" shop []

        let! answers =
            [ 1..100 ]
            |> List.map (fun i -> config pair shop $"https://shop.example.com/p/{i}")
            |> Task.WhenAll

        for a in answers do
            Assert.Equal(HttpStatusCode.OK, a.StatusCode)

        let! fetched = calls pair "getticket"
        Assert.Equal(1, fetched)
        let! _ = pair.RestartGateway()
        let! again = config pair shop "https://shop.example.com/p/after-restart"
        Assert.Equal(HttpStatusCode.OK, again.StatusCode)
        let! afterRestart = calls pair "getticket"
        Assert.Equal(1, afterRestart)
        // Near its expiry the ticket is fetched again.
        pair.Gateway.Clock.Offset <- TimeSpan.FromSeconds 7000.
        let! late = config pair shop "https://shop.example.com/p/late"
        Assert.Equal(HttpStatusCode.OK, late.StatusCode)
        let! refetched = calls pair "getticket"
        Assert.Equal(2, refetched)
    }

[<Fact>]
let ``after 40001 from getticket the authorizer token is renewed and the ticket fetched again`` () =
    task {
        use! pair = startAuthorized "sqlite" "shop-1" shop []
        let! tokenCallsBefore = calls pair "api_authorizer_token"
        do! inject pair {| api = "getticket"; errcode = 40001 |}
        let! r = config pair shop "https://shop.example.com/p"
        let! body = r.Content.ReadAsStringAsync()
        Assert.True(r.IsSuccessStatusCode, body)
        let! fetched = calls pair "getticket"
        Assert.Equal(2, fetched)
        let! tokenCallsAfter = calls pair "api_authorizer_token"
        Assert.Equal(tokenCallsBefore + 1, tokenCallsAfter)
    }

[<Fact>]
let ``two gateways on one PostgreSQL fetch the jsapi_ticket once between them`` () =
    task {
        let shared =
            [
                "WeChatFs:Storage:Provider", "postgres"
                "WeChatFs:Storage:ConnectionString", Helpers.postgres.Force().NewDatabase()
                "WeChatFs:Secrets:MasterKey", Convert.ToBase64String(Array.init 32 byte)
            ]

        use! pair = startAuthorized "sqlite" "shop-1" shop shared

        let! second =
            startGatewayWith pair.Sim.BaseUrl (newDataFolder ()) (OffsetClock()) shared

        use _ =
            { new IDisposable with
                member _.Dispose() = second.StopAsync().Wait()
            }

        let ask (api: Net.Http.HttpClient) i =
            api.GetAsync $"/api/authorizers/{shop}/jssdk-config?url=https://shop.example.com/{i}"

        let! answers =
            [ for i in 1..50 -> ask pair.Gateway.Api i ]
            @ [ for i in 1..50 -> ask second.Api i ]
            |> Task.WhenAll

        for a in answers do
            Assert.Equal(HttpStatusCode.OK, a.StatusCode)

        let! fetched = calls pair "getticket"
        Assert.Equal(1, fetched)
    }

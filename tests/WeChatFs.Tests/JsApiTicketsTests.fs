/// JS-SDK configs on behalf of an authorizer, over HTTP against the simulator: the signature verifies
/// with the ticket WeChat gave, the ticket is fetched once however many pages ask at once, kept in
/// the store across a restart, and fetched again with a renewed authorizer token after 40001.
module WeChatFs.Tests.JsApiTicketsTests

open System
open System.Net
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
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


let tests =
    testSequencedGroup "JsApiTickets"
    <| testList
        "JsApiTickets"
        [
            testCaseTask "a JS-SDK config has wx.config's fields and a signature that verifies with WeChat's ticket"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    let page = "https://shop.example.com/member?id=7#/tab"
                    let! r = config pair shop page
                    let! body = r.Content.ReadAsStringAsync()
                    Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
                    let c = JsonDocument.Parse(body).RootElement
                    Expect.equal (c.GetProperty("appId").GetString()) shop "c.GetProperty('appId').GetString()"
                    let timestamp = c.GetProperty("timestamp").GetInt64()
                    let nonce = c.GetProperty("nonceStr").GetString()

                    Expect.isTrue
                        (abs (DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp) < 60L)
                        "abs (DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp) < 60L"

                    Expect.equal nonce.Length 16 "nonce.Length"
                    let! ticket = simTicket pair shop

                    Expect.equal
                        (c.GetProperty("signature").GetString())
                        (OAuth.jsSdkSignature ticket nonce timestamp "https://shop.example.com/member?id=7")
                        "c.GetProperty('signature').GetString()"

                    let! missing = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}/jssdk-config"
                    Expect.equal missing.StatusCode HttpStatusCode.BadRequest "missing.StatusCode"
                    let! notHttp = config pair shop "ftp://shop.example.com/x"
                    Expect.equal notHttp.StatusCode HttpStatusCode.BadRequest "notHttp.StatusCode"
                    let! unknown = config pair "wxnobody" page
                    Expect.equal unknown.StatusCode HttpStatusCode.NotFound "unknown.StatusCode"
                }

            testCaseTask
                "the jsapi_ticket is fetched once for 100 concurrent config requests, and kept across a restart"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []

                    let! answers =
                        [ 1..100 ]
                        |> List.map (fun i -> config pair shop $"https://shop.example.com/p/{i}")
                        |> Task.WhenAll

                    for a in answers do
                        Expect.equal a.StatusCode HttpStatusCode.OK "a.StatusCode"

                    let! fetched = calls pair "getticket"
                    Expect.equal fetched 1 "fetched"
                    let! _ = pair.RestartGateway()
                    let! again = config pair shop "https://shop.example.com/p/after-restart"
                    Expect.equal again.StatusCode HttpStatusCode.OK "again.StatusCode"
                    let! afterRestart = calls pair "getticket"
                    Expect.equal afterRestart 1 "afterRestart"
                    // Near its expiry the ticket is fetched again.
                    pair.Gateway.Clock.Offset <- TimeSpan.FromSeconds 7000.
                    let! late = config pair shop "https://shop.example.com/p/late"
                    Expect.equal late.StatusCode HttpStatusCode.OK "late.StatusCode"
                    let! refetched = calls pair "getticket"
                    Expect.equal refetched 2 "refetched"
                }

            testCaseTask "after 40001 from getticket the authorizer token is renewed and the ticket fetched again"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    let! tokenCallsBefore = calls pair "api_authorizer_token"
                    do! inject pair {| api = "getticket"; errcode = 40001 |}
                    let! r = config pair shop "https://shop.example.com/p"
                    let! body = r.Content.ReadAsStringAsync()
                    Expect.isTrue r.IsSuccessStatusCode body
                    let! fetched = calls pair "getticket"
                    Expect.equal fetched 2 "fetched"
                    let! tokenCallsAfter = calls pair "api_authorizer_token"
                    Expect.equal tokenCallsAfter (tokenCallsBefore + 1) "tokenCallsAfter"
                }

            testCaseTask "two gateways on one PostgreSQL fetch the jsapi_ticket once between them"
            <| fun () ->
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
                        Expect.equal a.StatusCode HttpStatusCode.OK "a.StatusCode"

                    let! fetched = calls pair "getticket"
                    Expect.equal fetched 1 "fetched"
                }

        ]

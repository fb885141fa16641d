/// Ticket intake and the component token, end to end over HTTP between a real gateway and the simulator.
module WeChatFs.Tests.ComponentApiTests

open System
open System.Net
open System.Net.Http
open System.Text
open System.Threading.Tasks
open Xunit
open WeChatFs
open WeChatFs.Simulator.SimState
open WeChatFs.Tests.Harness

let private getToken (pair: Pair) =
    task {
        let! response = pair.Gateway.Api.GetAsync "/api/component/access-token"
        let! body = response.Content.ReadAsStringAsync()
        return response.StatusCode, body
    }

let private tokenValue (pair: Pair) =
    task {
        let! response = pair.Gateway.Api.GetAsync "/api/component/access-token"
        Assert.Equal(HttpStatusCode.OK, response.StatusCode)
        let! root = json response
        return str root "component_access_token"
    }

/// A push built with the gateway's own crypto, for cases the simulator would never send.
let private push (pair: Pair) (plainXml: string) (tamper: string -> string) =
    let key =
        match Crypto.AesKey.create encodingAesKey with
        | Ok k -> k
        | Error e -> failwith $"{e}"

    let encrypted = Crypto.encrypt key componentAppId (Array.zeroCreate 16) plainXml
    let timestamp, nonce = "1700000000", "12345"
    let signature = Crypto.msgSignature token timestamp nonce encrypted |> tamper

    let body =
        $"<xml><AppId><![CDATA[{componentAppId}]]></AppId><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"

    pair.Http.PostAsync(
        pair.Gateway.Url
            $"/wechat/component/events?timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}",
        new StringContent(body, Encoding.UTF8, "text/xml")
    )

let private ticketXml (ticket: string) =
    $"<xml><AppId><![CDATA[{componentAppId}]]></AppId><CreateTime>1700000000</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"

[<Fact>]
let ``a pushed ticket becomes a component token`` () =
    task {
        use! pair = startPair ()
        let! answer = pushTicket pair
        Assert.Equal("success", str answer "body")
        let! token = tokenValue pair
        Assert.False(String.IsNullOrEmpty token)
        let! fetched = calls pair "api_component_token"
        Assert.Equal(1, fetched)
    }

[<Fact>]
let ``before any ticket the token endpoint answers 503 problem json`` () =
    task {
        // WeChat is busy when asked to start pushing, so no ticket arrives during this test.
        use! pair = startPairWithoutTicketPush ()

        let! response = pair.Gateway.Api.GetAsync "/api/component/access-token"
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode)
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType.MediaType)
        // With no ticket stored, the gateway asked WeChat to start pushing.
        let! started =
            eventually (TimeSpan.FromSeconds 5.) (fun () ->
                task { let! n = calls pair "api_start_push_ticket" in return n >= 1 })

        Assert.True started
    }

[<Fact>]
let ``a restart reuses the stored token instead of fetching`` () =
    task {
        use! pair = startPair ()
        let! _ = pushTicket pair
        let! before = tokenValue pair
        let! _ = pair.RestartGateway()
        let! after = tokenValue pair
        Assert.Equal(before, after)
        let! fetched = calls pair "api_component_token"
        Assert.Equal(1, fetched)
        // The stored ticket is fresh, so the restart did not ask WeChat to push again.
        let! started = calls pair "api_start_push_ticket"
        Assert.Equal(1, started)
    }

[<Fact>]
let ``concurrent requests in one process cause one fetch`` () =
    task {
        use! pair = startPair ()
        let! _ = pushTicket pair
        let! results = Array.init 40 (fun _ -> getToken pair) |> Task.WhenAll
        Assert.All(results, fun (status, _) -> Assert.Equal(HttpStatusCode.OK, status))
        // The same token for all (the bodies may differ in seconds_left).
        let tokens =
            results
            |> Array.map (fun (_, body) ->
                Text.Json.JsonDocument
                    .Parse(body: string)
                    .RootElement.GetProperty("component_access_token")
                    .GetString())

        Assert.Equal(1, tokens |> Array.distinct |> Array.length)
        let! fetched = calls pair "api_component_token"
        Assert.Equal(1, fetched)
    }

[<Fact>]
let ``a forged push is refused with 401 and nothing is stored`` () =
    task {
        // No ticket of WeChat's own arrives meanwhile (the start-up api_start_push_ticket is refused).
        use! pair = startPairWithoutTicketPush ()

        let! response =
            push pair (ticketXml "ticket@@@forged") (fun s -> "0" + s.Substring 1)

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode)
        let! status = pair.Gateway.Api.GetAsync "/api/component/status"
        let! root = json status
        Assert.Equal(Text.Json.JsonValueKind.Null, root.GetProperty("ticket").ValueKind)
    }

[<Fact>]
let ``malformed, oversized and DTD bodies are refused; unknown InfoType and repeats are answered success`` () =
    task {
        use! pair = startPair ()

        let url =
            pair.Gateway.Url "/wechat/component/events?timestamp=1&nonce=2&msg_signature=x"

        let! malformed =
            pair.Http.PostAsync(url, new StringContent("<xml><Encrypt>", Encoding.UTF8, "text/xml"))

        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode)
        let big = "<xml><Encrypt>" + String('A', 70_000) + "</Encrypt></xml>"

        let! oversized =
            pair.Http.PostAsync(url, new StringContent(big, Encoding.UTF8, "text/xml"))

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, oversized.StatusCode)

        let dtd =
            """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><xml><Encrypt>&e;</Encrypt></xml>"""

        let! withDtd =
            pair.Http.PostAsync(url, new StringContent(dtd, Encoding.UTF8, "text/xml"))

        Assert.Equal(HttpStatusCode.BadRequest, withDtd.StatusCode)

        let unknown =
            $"<xml><AppId>{componentAppId}</AppId><CreateTime>1</CreateTime><InfoType>something_new</InfoType></xml>"

        let! answered = push pair unknown id
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode)
        let! body = answered.Content.ReadAsStringAsync()
        Assert.Equal("success", body)
        let! first = push pair (ticketXml "ticket@@@same") id
        let! again = push pair (ticketXml "ticket@@@same") id
        Assert.Equal(HttpStatusCode.OK, first.StatusCode)
        Assert.Equal(HttpStatusCode.OK, again.StatusCode)
    }

[<Fact>]
let ``40001 on a call invalidates only the failed token and the call succeeds once reacquired`` () =
    task {
        use! pair = startPair ()
        let! _ = pushTicket pair
        let! first = tokenValue pair

        do!
            inject
                pair
                {|
                    api = "api_get_authorizer_list"
                    errcode = 40001
                    times = 1
                |}

        let! response =
            postJson
                pair.Gateway.Api
                "/api/component/wechat/cgi-bin/component/api_get_authorizer_list"
                {|
                    component_appid = componentAppId
                    offset = 0
                    count = 10
                |}

        Assert.Equal(HttpStatusCode.OK, response.StatusCode)
        let! root = json response
        Assert.True(root.TryGetProperty("total_count") |> fst)
        let! second = tokenValue pair
        Assert.NotEqual<string>(first, second)
        let! fetched = calls pair "api_component_token"
        Assert.Equal(2, fetched)
        // A business system reporting the old token again changes nothing.
        let! stale =
            postJson pair.Gateway.Api "/api/component/access-token/invalidate" {| component_access_token = first |}

        let! staleRoot = json stale
        Assert.False(staleRoot.GetProperty("invalidated").GetBoolean())
        let! third = tokenValue pair
        Assert.Equal(second, third)
    }

[<Fact>]
let ``61005 waits for the next push, then recovers`` () =
    task {
        use! pair = startPair ()
        let! _ = pushTicket pair
        let! _ = tokenValue pair
        // The token has expired; WeChat refuses the stored ticket when asked for a new one.
        do!
            inject
                pair
                {|
                    api = "api_component_token"
                    errcode = 61005
                    times = 1
                |}

        pair.Gateway.Clock.Offset <- TimeSpan.FromHours 2.1
        let! status, _ = getToken pair
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status)
        let! statusPage = pair.Gateway.Api.GetAsync "/api/component/status"
        let! root = json statusPage
        Assert.Equal(61005, root.GetProperty("last_error").GetProperty("errcode").GetInt32())
        let! _ = pushTicket pair

        let! recovered =
            eventually (TimeSpan.FromSeconds 5.) (fun () ->
                task { let! s, _ = getToken pair in return s = HttpStatusCode.OK })

        Assert.True recovered
    }

[<Fact>]
let ``the internal API refuses calls without the key, and everything when no key is configured`` () =
    task {
        use! pair = startPair ()
        let! anonymous = pair.Http.GetAsync(pair.Gateway.Url "/api/component/status")
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode)
        let! health = pair.Http.GetAsync(pair.Gateway.Url "/healthz")
        Assert.Equal(HttpStatusCode.OK, health.StatusCode)
        let! g = pair.RestartGateway [ "WeChatFs:Admin:ApiKey", "" ]
        let! refused = g.Api.GetAsync "/api/component/status"
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode)
    }

[<Fact>]
let ``the status never shows a secret`` () =
    task {
        use! pair = startPair ()
        let! _ = pushTicket pair
        let! token = tokenValue pair
        let! response = pair.Gateway.Api.GetAsync "/api/component/status"
        let! body = response.Content.ReadAsStringAsync()
        Assert.DoesNotContain(token, body)
        Assert.DoesNotContain(appSecret, body)
        Assert.DoesNotContain("ticket@@@", body)
    }

[<Fact>]
let ``readiness says what is missing, then ready once a ticket and a token are there`` () =
    task {
        use! pair = startPairWithoutTicketPush ()

        let! notReady = pair.Http.GetAsync(pair.Gateway.Url "/readyz")
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode)
        let! root = json notReady
        let checks = root.GetProperty "checks"
        Assert.True(checks.GetProperty("store").GetProperty("ok").GetBoolean())
        Assert.Contains("no component_verify_ticket", str (checks.GetProperty "ticket") "reason")
        let! _ = pushTicket pair
        let! _ = tokenValue pair
        let! ready = pair.Http.GetAsync(pair.Gateway.Url "/readyz")
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode)
    }

[<Fact>]
let ``a 5xx from WeChat is retried after a backoff`` () =
    task {
        use! pair = startPair ()

        do!
            inject
                pair
                {|
                    api = "api_component_token"
                    http_status = 502
                    times = 1
                |}

        let! _ = pushTicket pair

        let! recovered =
            eventually (TimeSpan.FromSeconds 8.) (fun () ->
                task { let! s, _ = getToken pair in return s = HttpStatusCode.OK })

        Assert.True recovered
        let! fetched = calls pair "api_component_token"
        Assert.Equal(2, fetched)
    }

/// Ticket intake and the component token, end to end over HTTP between a real gateway and the simulator.
module WeChatFs.Tests.ComponentApiTests

open System
open System.Net
open System.Net.Http
open System.Text
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Simulator.SimModel
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
        Expect.equal response.StatusCode HttpStatusCode.OK "response.StatusCode"
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


let tests =
    testSequencedGroup "ComponentApi"
    <| testList
        "ComponentApi"
        [
            testCaseTask "a pushed ticket becomes a component token"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! answer = pushTicket pair
                    Expect.equal (str answer "body") "success" "str answer 'body'"
                    let! token = tokenValue pair
                    Expect.isFalse (String.IsNullOrEmpty token) "String.IsNullOrEmpty token"
                    let! fetched = calls pair "api_component_token"
                    Expect.equal fetched 1 "fetched"
                }

            testCaseTask "before any ticket the token endpoint answers 503 problem json"
            <| fun () ->
                task {
                    // WeChat is busy when asked to start pushing, so no ticket arrives during this test.
                    use! pair = startPairWithoutTicketPush ()

                    let! response = pair.Gateway.Api.GetAsync "/api/component/access-token"
                    Expect.equal response.StatusCode HttpStatusCode.ServiceUnavailable "response.StatusCode"

                    Expect.equal
                        response.Content.Headers.ContentType.MediaType
                        "application/problem+json"
                        "response.Content.Headers.ContentType.MediaType"
                    // With no ticket stored, the gateway asked WeChat to start pushing.
                    let! started =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task { let! n = calls pair "api_start_push_ticket" in return n >= 1 })

                    Expect.isTrue started "started"
                }

            testCaseTask "a restart reuses the stored token instead of fetching"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! _ = pushTicket pair
                    let! before = tokenValue pair
                    let! _ = pair.RestartGateway()
                    let! after = tokenValue pair
                    Expect.equal after before "after"
                    let! fetched = calls pair "api_component_token"
                    Expect.equal fetched 1 "fetched"
                    // The stored ticket is fresh, so the restart did not ask WeChat to push again.
                    let! started = calls pair "api_start_push_ticket"
                    Expect.equal started 1 "started"
                }

            testCaseTask "concurrent requests in one process cause one fetch"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! _ = pushTicket pair
                    let! results = Array.init 40 (fun _ -> getToken pair) |> Task.WhenAll

                    for status, _ in results do
                        Expect.equal status HttpStatusCode.OK "every concurrent request is served"
                    // The same token for all (the bodies may differ in seconds_left).
                    let tokens =
                        results
                        |> Array.map (fun (_, body) ->
                            Text.Json.JsonDocument
                                .Parse(body: string)
                                .RootElement.GetProperty("component_access_token")
                                .GetString())

                    Expect.equal (tokens |> Array.distinct |> Array.length) 1 "tokens |> Array.distinct |> Array.length"
                    let! fetched = calls pair "api_component_token"
                    Expect.equal fetched 1 "fetched"
                }

            testCaseTask "a forged push is refused with 401 and nothing is stored"
            <| fun () ->
                task {
                    // No ticket of WeChat's own arrives meanwhile (the start-up api_start_push_ticket is refused).
                    use! pair = startPairWithoutTicketPush ()

                    let! response =
                        push pair (ticketXml "ticket@@@forged") (fun s -> "0" + s.Substring 1)

                    Expect.equal response.StatusCode HttpStatusCode.Unauthorized "response.StatusCode"
                    let! status = pair.Gateway.Api.GetAsync "/api/component/status"
                    let! root = json status

                    Expect.equal
                        (root.GetProperty("ticket").ValueKind)
                        Text.Json.JsonValueKind.Null
                        "root.GetProperty('ticket').ValueKind"
                }

            testCaseTask
                "malformed, oversized and DTD bodies are refused; unknown InfoType and repeats are answered success"
            <| fun () ->
                task {
                    use! pair = startPair ()

                    let url =
                        pair.Gateway.Url "/wechat/component/events?timestamp=1&nonce=2&msg_signature=x"

                    let! malformed =
                        pair.Http.PostAsync(url, new StringContent("<xml><Encrypt>", Encoding.UTF8, "text/xml"))

                    Expect.equal malformed.StatusCode HttpStatusCode.BadRequest "malformed.StatusCode"
                    let big = "<xml><Encrypt>" + String('A', 70_000) + "</Encrypt></xml>"

                    let! oversized =
                        pair.Http.PostAsync(url, new StringContent(big, Encoding.UTF8, "text/xml"))

                    Expect.equal oversized.StatusCode HttpStatusCode.RequestEntityTooLarge "oversized.StatusCode"

                    let dtd =
                        """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><xml><Encrypt>&e;</Encrypt></xml>"""

                    let! withDtd =
                        pair.Http.PostAsync(url, new StringContent(dtd, Encoding.UTF8, "text/xml"))

                    Expect.equal withDtd.StatusCode HttpStatusCode.BadRequest "withDtd.StatusCode"

                    let unknown =
                        $"<xml><AppId>{componentAppId}</AppId><CreateTime>1</CreateTime><InfoType>something_new</InfoType></xml>"

                    let! answered = push pair unknown id
                    Expect.equal answered.StatusCode HttpStatusCode.OK "answered.StatusCode"
                    let! body = answered.Content.ReadAsStringAsync()
                    Expect.equal body "success" "body"
                    let! first = push pair (ticketXml "ticket@@@same") id
                    let! again = push pair (ticketXml "ticket@@@same") id
                    Expect.equal first.StatusCode HttpStatusCode.OK "first.StatusCode"
                    Expect.equal again.StatusCode HttpStatusCode.OK "again.StatusCode"
                }

            testCaseTask "40001 on a call invalidates only the failed token and the call succeeds once reacquired"
            <| fun () ->
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

                    Expect.equal response.StatusCode HttpStatusCode.OK "response.StatusCode"
                    let! root = json response

                    Expect.isTrue
                        (root.TryGetProperty("total_count") |> fst)
                        "root.TryGetProperty('total_count') |> fst"

                    let! second = tokenValue pair
                    Expect.notEqual second first "second"
                    let! fetched = calls pair "api_component_token"
                    Expect.equal fetched 2 "fetched"
                    // A business system reporting the old token again changes nothing.
                    let! stale =
                        postJson
                            pair.Gateway.Api
                            "/api/component/access-token/invalidate"
                            {| component_access_token = first |}

                    let! staleRoot = json stale

                    Expect.isFalse
                        (staleRoot.GetProperty("invalidated").GetBoolean())
                        "staleRoot.GetProperty('invalidated').GetBoolean()"

                    let! third = tokenValue pair
                    Expect.equal third second "third"
                }

            testCaseTask "61005 waits for the next push, then recovers"
            <| fun () ->
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
                    Expect.equal status HttpStatusCode.ServiceUnavailable "status"
                    let! statusPage = pair.Gateway.Api.GetAsync "/api/component/status"
                    let! root = json statusPage

                    Expect.equal
                        (root.GetProperty("last_error").GetProperty("errcode").GetInt32())
                        61005
                        "root.GetProperty('last_error').GetProperty('errcode').GetInt32()"

                    let! _ = pushTicket pair

                    let! recovered =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task { let! s, _ = getToken pair in return s = HttpStatusCode.OK })

                    Expect.isTrue recovered "recovered"
                }

            testCaseTask "the internal API refuses calls without the key, and everything when no key is configured"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! anonymous = pair.Http.GetAsync(pair.Gateway.Url "/api/component/status")
                    Expect.equal anonymous.StatusCode HttpStatusCode.Unauthorized "anonymous.StatusCode"
                    let! health = pair.Http.GetAsync(pair.Gateway.Url "/healthz")
                    Expect.equal health.StatusCode HttpStatusCode.OK "health.StatusCode"
                    let! g = pair.RestartGateway [ "WeChatFs:Admin:ApiKey", "" ]
                    let! refused = g.Api.GetAsync "/api/component/status"
                    Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"
                }

            testCaseTask "the status never shows a secret"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! _ = pushTicket pair
                    let! token = tokenValue pair
                    let! response = pair.Gateway.Api.GetAsync "/api/component/status"
                    let! body = response.Content.ReadAsStringAsync()
                    Expect.isFalse (body.Contains(token: string)) "body must not contain token"
                    Expect.isFalse (body.Contains(appSecret: string)) "body must not contain appSecret"
                    Expect.isFalse (body.Contains("ticket@@@")) "body has no 'ticket@@@'"
                }

            testCaseTask "readiness says what is missing, then ready once a ticket and a token are there"
            <| fun () ->
                task {
                    use! pair = startPairWithoutTicketPush ()

                    let! notReady = pair.Http.GetAsync(pair.Gateway.Url "/readyz")
                    Expect.equal notReady.StatusCode HttpStatusCode.ServiceUnavailable "notReady.StatusCode"
                    let! root = json notReady
                    let checks = root.GetProperty "checks"

                    Expect.isTrue
                        (checks.GetProperty("store").GetProperty("ok").GetBoolean())
                        "checks.GetProperty('store').GetProperty('ok').GetBoolean()"

                    Expect.stringContains
                        (str (checks.GetProperty "ticket") "reason")
                        "no component_verify_ticket"
                        "str (checks.GetProperty 'ticket') 'reason'"

                    let! _ = pushTicket pair
                    let! _ = tokenValue pair
                    let! ready = pair.Http.GetAsync(pair.Gateway.Url "/readyz")
                    Expect.equal ready.StatusCode HttpStatusCode.OK "ready.StatusCode"
                }

            testCaseTask "a 5xx from WeChat is retried after a backoff"
            <| fun () ->
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

                    Expect.isTrue recovered "recovered"
                    let! fetched = calls pair "api_component_token"
                    Expect.equal fetched 2 "fetched"
                }

        ]

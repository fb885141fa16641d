/// Red packets end to end, continued: how requests are checked, the client certificate WeChat Pay
/// wants, and a packet to a wx_tk_id's follower.
module WeChatFs.Tests.RedPackApiRequestTests

open System
open System.Net
open System.Net.Http
open System.Security.Cryptography
open System.Security.Cryptography.X509Certificates
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Simulator
open WeChatFs.Tests.Harness
open WeChatFs.Tests.RedPackApiTests

let tests =
    testSequencedGroup "RedPackApi"
    <| testList
        "RedPackApiRequests"
        [
            testCaseTask
                "a certificate that does not match its key, or has expired, is refused; secrets never come back"
            <| fun () ->
                task {
                    let! pair = startPayPair "sqlite" []
                    use _ = pair
                    let! a = simMerchant pair mchId
                    let! b = simMerchant pair "1900000110"

                    let body cert key =
                        {|
                            api_key = str a "api_key"
                            certificate_pem = cert
                            private_key_pem = key
                            bound_appids = [ appid ]
                            send_name = "Demo Coffee"
                        |}

                    let! mismatch =
                        putMerchant pair mchId (body (str a "certificate_pem") (str b "private_key_pem"))

                    Expect.equal mismatch.StatusCode HttpStatusCode.BadRequest "mismatch.StatusCode"
                    let! problem = json mismatch
                    Expect.equal (str problem "field") "certificate_pem" "str problem 'field'"
                    Expect.stringContains (str problem "detail") "does not match" "str problem 'detail'"

                    let expiredCert, expiredKey =
                        selfSigned (DateTimeOffset.UtcNow.AddDays -30.) (DateTimeOffset.UtcNow.AddDays -1.)

                    let! expired = putMerchant pair mchId (body expiredCert expiredKey)
                    Expect.equal expired.StatusCode HttpStatusCode.BadRequest "expired.StatusCode"
                    let! problem = json expired
                    Expect.stringContains (str problem "detail") "expired" "str problem 'detail'"

                    let! _ = registerMerchant pair
                    let! listed = pair.Gateway.Api.GetAsync "/api/merchants"
                    let! text = listed.Content.ReadAsStringAsync()
                    Expect.stringContains text "certificate_expires_at" "text"
                    Expect.stringContains text "CN=1900000109" "text"
                    Expect.isFalse (text.Contains(str a "api_key": string)) "text must not contain str a 'api_key'"
                    Expect.isFalse (text.Contains("PRIVATE KEY")) "text has no 'PRIVATE KEY'"

                    for line in pair.Gateway.Logs.All do
                        Expect.isFalse (line.Contains(str a "api_key": string)) "line must not contain str a 'api_key'"
                        Expect.isFalse (line.Contains("PRIVATE KEY")) "line has no 'PRIVATE KEY'"
                }

            testCaseTask
                "WeChat Pay refuses a certificate it did not issue and a wrong API key: the packet fails with the reason"
            <| fun () ->
                task {
                    let! pair = startPayPair "sqlite" []
                    use _ = pair
                    let! m = simMerchant pair mchId

                    let cert, key =
                        selfSigned (DateTimeOffset.UtcNow.AddDays -1.) (DateTimeOffset.UtcNow.AddDays 30.)

                    let! _ =
                        putMerchant
                            pair
                            mchId
                            {|
                                api_key = str m "api_key"
                                certificate_pem = cert
                                private_key_pem = key
                                bound_appids = [ appid ]
                                send_name = "Demo Coffee"
                            |}

                    let! status, packet = sendPacket pair "ca-1" (packetBody 100)
                    Expect.equal status HttpStatusCode.Created "status"
                    Expect.equal (str packet "status") "failed" "str packet 'status'"
                    Expect.equal (str packet "err_code") "CA_ERROR" "str packet 'err_code'"
                    Expect.isNotNull (str packet "err_action") "str packet 'err_action'"

                    let! _ =
                        putMerchant
                            pair
                            mchId
                            {|
                                api_key = String('k', 32)
                                certificate_pem = str m "certificate_pem"
                                private_key_pem = str m "private_key_pem"
                                bound_appids = [ appid ]
                                send_name = "Demo Coffee"
                            |}

                    let! _, signed = sendPacket pair "sign-1" (packetBody 100)
                    Expect.equal (str signed "err_code") "SIGN_ERROR" "str signed 'err_code'"
                    let! packets = simPackets pair
                    Expect.isEmpty packets "packets"
                }

            testCaseTask "requests are checked before WeChat Pay is asked, with the field named"
            <| fun () ->
                task {
                    let! pair = startPayPair "sqlite" []
                    use _ = pair
                    let! _ = registerMerchant pair

                    let! noKey, _ = sendPacket pair "" (packetBody 100)
                    Expect.equal noKey HttpStatusCode.BadRequest "noKey"

                    let! small, problem = sendPacket pair "v-1" (packetBody 99)
                    Expect.equal small HttpStatusCode.BadRequest "small"
                    Expect.equal (str problem "field") "amount_fen" "str problem 'field'"

                    let! _, unbound =
                        sendPacket
                            pair
                            "v-2"
                            {| packetBody 100 with
                                authorizer_appid = "wxsimoa00000000002"
                            |}

                    Expect.equal (str unbound "field") "authorizer_appid" "str unbound 'field'"

                    let! _, wishing =
                        sendPacket
                            pair
                            "v-3"
                            {| packetBody 100 with
                                wishing = String('w', 129)
                            |}

                    Expect.equal (str wishing "field") "wishing" "str wishing 'field'"

                    let! tkStatus, tk =
                        sendPacket
                            pair
                            "v-4"
                            {|
                                mch_id = mchId
                                authorizer_appid = appid
                                wx_tk_id = "tk_0123456789"
                                amount_fen = 100
                                wishing = "w"
                                act_name = "a"
                                remark = "r"
                            |}

                    Expect.equal tkStatus HttpStatusCode.BadRequest "tkStatus"
                    Expect.equal (str tk "field") "wx_tk_id" "str tk 'field'"
                    Expect.stringContains (str tk "detail") "unknown or has expired" "str tk 'detail'"

                    let! sends = calls pair "sendredpack"
                    Expect.equal sends 0 "sends"
                }

            testCaseTask "the simulated WeChat Pay answers CA_ERROR to a caller without a client certificate"
            <| fun () ->
                task {
                    let! sim = SimulatorHost.start (simulatorOptions ()) "http://127.0.0.1:0"
                    use _ = sim
                    let ca = X509Certificate2.CreateFromPem(IO.File.ReadAllText sim.PayCaFile)
                    use handler = new HttpClientHandler()

                    handler.ServerCertificateCustomValidationCallback <-
                        fun _ cert _ _ ->
                            use chain = new X509Chain()
                            chain.ChainPolicy.TrustMode <- X509ChainTrustMode.CustomRootTrust
                            chain.ChainPolicy.CustomTrustStore.Add ca |> ignore
                            chain.ChainPolicy.RevocationMode <- X509RevocationMode.NoCheck
                            chain.Build cert

                    use http = new HttpClient(handler)

                    let! r =
                        http.PostAsync(
                            sim.PayBaseUrl.TrimEnd('/') + "/mmpaymkttransfers/sendredpack",
                            new StringContent("<xml><mch_id>1900000109</mch_id></xml>", Encoding.UTF8, "text/xml")
                        )

                    let! body = r.Content.ReadAsStringAsync()
                    Expect.stringContains body "CA_ERROR" "body"
                }

            testCaseTask "a red packet to a wx_tk_id goes to the follower the web OAuth flow stands it for"
            <| fun () ->
                task {
                    use! payPair = startPayPair "sqlite" []
                    // A browser that sees each redirect, as the authorization and OAuth pages expect.
                    let pair =
                        { payPair with
                            Http = new HttpClient(new HttpClientHandler(AllowAutoRedirect = false))
                        }

                    // WeChat pushes tickets and authorization events to this gateway.
                    pair.Sim.SetEventUrl(Some(pair.Gateway.Url "/wechat/component/events"))
                    pair.Sim.SetMessageUrlTemplate(Some(pair.Gateway.Url "/wechat/authorizers/$APPID$/callback"))
                    do! OAuthApiTests.ready pair
                    let! authorized, _ = AuthorizerApiTests.authorizeVia pair "shop-1" appid
                    Expect.isTrue authorized.IsSuccessStatusCode "the account is authorized"
                    let! _ = registerMerchant pair
                    // A follower opens a menu page of the account and allows it: the business page gets a wxTkId.
                    do! OAuthApiTests.addRoute pair "card" "https://shop.example.com/member" "snsapi_userinfo" "shop-1"
                    let! _, answer = OAuthApiTests.visit pair appid "card" "s-1" "f2"
                    Expect.equal answer.StatusCode HttpStatusCode.Redirect "the follower lands on the business page"
                    let token = OAuthApiTests.wxTkIdOf answer.Headers.Location
                    let! follower = OAuthApiTests.simFollower pair appid "f2"

                    let! status, packet =
                        sendPacket
                            pair
                            "tk-1"
                            {|
                                mch_id = mchId
                                authorizer_appid = appid
                                wx_tk_id = token
                                amount_fen = 100
                                wishing = "Thank you for visiting"
                                act_name = "Opening week"
                                remark = "One per guest"
                            |}

                    Expect.isTrue
                        (status = HttpStatusCode.Created || status = HttpStatusCode.Accepted)
                        (packet.GetRawText())

                    let! sent = untilStatus pair (str packet "id") "sent"
                    Expect.isTrue sent "the packet is sent"
                    let! packets = simPackets pair
                    Expect.equal packets.Length 1 "one packet"
                    Expect.equal (str packets.Head "re_openid") (str follower "openid") "paid to the follower's openid"
                }
        ]

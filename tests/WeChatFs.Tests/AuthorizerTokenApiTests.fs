/// Refreshes on demand are coalesced, and a token WeChat refused is invalidated only while it is
/// current: 200 concurrent calls cost one api_authorizer_token; after a restart the fresh tokens are
/// in memory before they are asked for; over HTTP against the simulator.
module WeChatFs.Tests.AuthorizerTokenApiTests

open System
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Microsoft.Extensions.DependencyInjection
open Expecto
open WeChatFs.Domain
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

let private authorized () =
    task {
        let! pair = startPair ()
        do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

        let! status, _, _ =
            authorizeAt pair.Http (pair.SimUrl "") pair.Gateway.Api "shop-1" shop

        Expect.equal status HttpStatusCode.OK "status"
        return pair
    }

let private tokenOf (pair: Pair) =
    task {
        let! r = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}/access-token"
        Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
        let! root = json r
        return str root "authorizer_access_token"
    }


let tests =
    testSequencedGroup "AuthorizerTokenApi"
    <| testList
        "AuthorizerTokenApi"
        [
            testCaseTask "200 concurrent refreshes make one call to WeChat and all get the same token"
            <| fun () ->
                task {
                    use! pair = authorized ()
                    let! before = calls pair "api_authorizer_token"

                    let! answers =
                        [
                            for _ in 1..200 -> pair.Gateway.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)
                        ]
                        |> Task.WhenAll

                    Expect.isTrue
                        (answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK))
                        "answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK)"

                    let! tokens =
                        answers
                        |> Array.map (fun r ->
                            task {
                                let! root = json r
                                return str root "authorizer_access_token"
                            })
                        |> Task.WhenAll

                    Expect.equal (tokens |> Array.distinct |> Array.length) 1 "tokens |> Array.distinct |> Array.length"
                    let! after = calls pair "api_authorizer_token"
                    Expect.equal after (before + 1) "after"
                    // The token they all got is the one WeChat accepts.
                    let! current = tokenOf pair
                    Expect.equal current (tokens[0]) "current"
                }

            testCaseTask "200 concurrent invalidations of one token make one call, and a stale one changes nothing"
            <| fun () ->
                task {
                    use! pair = authorized ()
                    let! failed = tokenOf pair
                    let! before = calls pair "api_authorizer_token"

                    let! answers =
                        [
                            for _ in 1..200 ->
                                postJson
                                    pair.Gateway.Api
                                    $"/api/authorizers/{shop}/access-token/invalidate"
                                    {| access_token = failed |}
                        ]
                        |> Task.WhenAll

                    Expect.isTrue
                        (answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK))
                        "answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK)"

                    let! flags =
                        answers
                        |> Array.map (fun r ->
                            task {
                                let! root = json r
                                return root.GetProperty("invalidated").GetBoolean()
                            })
                        |> Task.WhenAll

                    Expect.equal (flags |> Array.filter id |> Array.length) 1 "flags |> Array.filter id |> Array.length"

                    let! fresh = [ for _ in 1..200 -> tokenOf pair ] |> Task.WhenAll

                    Expect.equal (fresh |> Array.distinct |> Array.length) 1 "fresh |> Array.distinct |> Array.length"
                    Expect.notEqual (fresh[0]) failed "fresh[0]"
                    let! after = calls pair "api_authorizer_token"
                    Expect.equal after (before + 1) "after"
                    // The same report again, now that the token was replaced: nothing happens.
                    let! stale =
                        postJson
                            pair.Gateway.Api
                            $"/api/authorizers/{shop}/access-token/invalidate"
                            {| access_token = failed |}

                    let! root = json stale

                    Expect.isFalse
                        (root.GetProperty("invalidated").GetBoolean())
                        "root.GetProperty('invalidated').GetBoolean()"

                    let! again = tokenOf pair
                    Expect.equal again (fresh[0]) "again"
                    let! still = calls pair "api_authorizer_token"
                    Expect.equal still after "still"

                    let! bad =
                        postJson pair.Gateway.Api $"/api/authorizers/{shop}/access-token/invalidate" {| nothing = 1 |}

                    Expect.equal bad.StatusCode HttpStatusCode.BadRequest "bad.StatusCode"
                }

            testCaseTask "after a restart the stored fresh tokens are loaded into memory before anyone asks"
            <| fun () ->
                task {
                    use! pair = authorized ()
                    let! before = tokenOf pair
                    let! refreshes = calls pair "api_authorizer_token"
                    let! g = pair.RestartGateway()

                    let! loaded =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                return
                                    g.Logs.All
                                    |> Seq.exists (fun l -> l.Contains "1 fresh authorizer tokens loaded into memory")
                            })

                    Expect.isTrue loaded "the refresher loaded the one fresh token at start"
                    // Another token put in the store behind this instance's back: a read that went
                    // to the store would answer it; the one loaded at start answers the first.
                    let store = g.App.Services.GetRequiredService<WeChatFs.Store.IStore>()
                    let! stored = store.GetAuthorizer(AuthorizerAppId shop)
                    let account = stored.Value

                    do!
                        store.SaveAuthorizerTokens(
                            AuthorizerAppId shop,
                            {
                                Token = AuthorizerAccessToken "put-in-the-store-behind-its-back"
                                ExpiresAt = account.AccessToken.Value.ExpiresAt
                            },
                            account.RefreshToken.Value,
                            g.Clock.GetUtcNow()
                        )

                    let! after = tokenOf pair
                    Expect.equal after before "served from memory"
                    let! calls' = calls pair "api_authorizer_token"
                    Expect.equal calls' refreshes "no refresh after the restart"
                }

        ]

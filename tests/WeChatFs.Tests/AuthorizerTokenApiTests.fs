/// Refreshes on demand are coalesced, and a token WeChat refused is invalidated only while it is
/// current: 200 concurrent calls cost one api_authorizer_token; over HTTP against the simulator.
module WeChatFs.Tests.AuthorizerTokenApiTests

open System
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Xunit
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

let private authorized () =
    task {
        let! pair = startPair ()
        do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

        let! status, _, _ =
            authorizeAt pair.Http (pair.SimUrl "") pair.Gateway.Api "shop-1" shop

        Assert.Equal(HttpStatusCode.OK, status)
        return pair
    }

let private tokenOf (pair: Pair) =
    task {
        let! r = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}/access-token"
        Assert.Equal(HttpStatusCode.OK, r.StatusCode)
        let! root = json r
        return str root "authorizer_access_token"
    }

[<Fact>]
let ``200 concurrent refreshes make one call to WeChat and all get the same token`` () =
    task {
        use! pair = authorized ()
        let! before = calls pair "api_authorizer_token"

        let! answers =
            [
                for _ in 1..200 -> pair.Gateway.Api.PostAsync($"/api/authorizers/{shop}/refresh", null)
            ]
            |> Task.WhenAll

        Assert.True(answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK))

        let! tokens =
            answers
            |> Array.map (fun r ->
                task {
                    let! root = json r
                    return str root "authorizer_access_token"
                })
            |> Task.WhenAll

        Assert.Equal(1, tokens |> Array.distinct |> Array.length)
        let! after = calls pair "api_authorizer_token"
        Assert.Equal(before + 1, after)
        // The token they all got is the one WeChat accepts.
        let! current = tokenOf pair
        Assert.Equal(tokens[0], current)
    }

[<Fact>]
let ``200 concurrent invalidations of one token make one call, and a stale one changes nothing`` () =
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

        Assert.True(answers |> Array.forall (fun r -> r.StatusCode = HttpStatusCode.OK))

        let! flags =
            answers
            |> Array.map (fun r ->
                task {
                    let! root = json r
                    return root.GetProperty("invalidated").GetBoolean()
                })
            |> Task.WhenAll

        Assert.Equal(1, flags |> Array.filter id |> Array.length)

        let! fresh = [ for _ in 1..200 -> tokenOf pair ] |> Task.WhenAll

        Assert.Equal(1, fresh |> Array.distinct |> Array.length)
        Assert.NotEqual<string>(failed, fresh[0])
        let! after = calls pair "api_authorizer_token"
        Assert.Equal(before + 1, after)
        // The same report again, now that the token was replaced: nothing happens.
        let! stale =
            postJson pair.Gateway.Api $"/api/authorizers/{shop}/access-token/invalidate" {| access_token = failed |}

        let! root = json stale
        Assert.False(root.GetProperty("invalidated").GetBoolean())
        let! again = tokenOf pair
        Assert.Equal(fresh[0], again)
        let! still = calls pair "api_authorizer_token"
        Assert.Equal(after, still)

        let! bad =
            postJson pair.Gateway.Api $"/api/authorizers/{shop}/access-token/invalidate" {| nothing = 1 |}

        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode)
    }

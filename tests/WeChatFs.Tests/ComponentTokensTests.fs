/// A bad ticket cannot take the platform down: a stale push does not replace the stored ticket, and
/// after WeChat refuses a ticket the gateway asks for a new one at once while serving the valid token.
module WeChatFs.Tests.ComponentTokensTests

open System
open System.Net
open FsCheck
open FsCheck.FSharp
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.ComponentTokens
open WeChatFs.WeChatClient
open WeChatFs.Domain
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

let private tokenAnswer (pair: Pair) =
    task {
        let! status, root = componentToken pair
        return status, root |> Option.map (fun r -> str r "component_access_token")
    }


let tests =
    testSequencedGroup "ComponentTokens"
    <| testList
        "ComponentTokens"
        [
            testCase "a ticket stamped before the stored one never replaces it, and the stored stamp never passes now"
            <| fun () ->
                let input =
                    Gen.zip3
                        (Gen.optionOf (Gen.choose (0, 2_000_000)))
                        (Gen.choose (0, 2_000_000))
                        (Gen.choose (0, 2_000_000))
                    |> Arb.fromGen

                Prop.forAll input (fun (stored, incoming, now) ->
                    let stored = stored |> Option.map int64

                    match ticketCreateTimeToStore stored (int64 incoming) (int64 now) with
                    | None -> stored.IsSome && int64 incoming < stored.Value
                    | Some kept ->
                        kept <= int64 now
                        && kept <= int64 incoming
                        && (stored |> Option.forall (fun s -> int64 incoming >= s)))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), p)

            testCaseTask "a stale ticket push is answered but does not replace the good ticket"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api
                    let hourAgo = DateTimeOffset.UtcNow.AddHours(-1.).ToUnixTimeSeconds()

                    let! stale =
                        postSealed
                            pair.Http
                            (pair.Gateway.Url "/wechat/component/events")
                            (ticketXml "ticket@@@stale" hourAgo)

                    let! body = stale.Content.ReadAsStringAsync()
                    Expect.equal body "success" "body"
                    // The token expires; the refresh uses the stored ticket, which must still be WeChat's.
                    pair.Gateway.Clock.Offset <- TimeSpan.FromHours 2.1
                    let! status, _ = tokenAnswer pair
                    Expect.equal status HttpStatusCode.OK "status"
                }

            testCaseTask
                "after WeChat refuses the ticket the valid token is still served and a new ticket is asked for once"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api
                    let! _, first = tokenAnswer pair
                    let! asked = calls pair "api_start_push_ticket"
                    // A correctly signed push with a ticket WeChat never issued, stamped now.
                    let! wrong =
                        postSealed
                            pair.Http
                            (pair.Gateway.Url "/wechat/component/events")
                            (ticketXml "ticket@@@wrong" (DateTimeOffset.UtcNow.ToUnixTimeSeconds()))

                    Expect.isTrue wrong.IsSuccessStatusCode "wrong.IsSuccessStatusCode"
                    // The token is due (inside the refresh margin) but still valid: the refresh meets 61006.
                    pair.Gateway.Clock.Offset <- TimeSpan.FromMinutes 115.

                    for _ in 1..20 do
                        let! status, _ = tokenAnswer pair
                        Expect.equal status HttpStatusCode.OK "status"

                    let! renewed =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! status, t = tokenAnswer pair
                                return status = HttpStatusCode.OK && t <> first
                            })

                    Expect.isTrue renewed "the token was not renewed after WeChat pushed a new ticket"
                    let! askedAfter = calls pair "api_start_push_ticket"
                    Expect.equal askedAfter (asked + 1) "askedAfter"
                    let! statusPage = pair.Gateway.Api.GetAsync "/api/component/status"
                    let! root = json statusPage

                    Expect.isTrue
                        (root.GetProperty("token").GetProperty("valid").GetBoolean())
                        "root.GetProperty('token').GetProperty('valid').GetBoolean()"
                }

            testCase "failed refreshes back off 2, 4, 8 ... seconds, at most a minute"
            <| fun () ->
                let waits =
                    [ 1..8 ]
                    |> List.map (Backoff.delay Backoff.componentToken >> fun t -> t.TotalSeconds)

                Expect.equal waits [ 2.; 4.; 8.; 16.; 32.; 60.; 60.; 60. ] "the schedule"

            testProp "the wait never shrinks as failures add up and never passes the cap" (fun (n: int) ->
                let n = abs n % 100
                let d = Backoff.delay Backoff.componentToken
                d n <= d (n + 1) && d (n + 1) <= Backoff.componentToken.Cap)

            testCase "every token error says what to do"
            <| fun () ->
                Expect.stringContains (describeTokenError NoTicket) "every 10 minutes" "no ticket yet"
                Expect.stringContains (describeTokenError RefreshBusy) "another instance" "busy"

                Expect.stringContains
                    (describeTokenError (RefreshFailed(ApiError(61006, "invalid ticket"))))
                    "61006"
                    "WeChat's errcode"
        ]

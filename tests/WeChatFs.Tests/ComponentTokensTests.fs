/// The component token's retry schedule and error texts (its refresh, gating and invalidation run
/// over HTTP in ComponentApiTests and across instances in MultiInstanceTests).
module WeChatFs.Tests.ComponentTokensTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Domain
open WeChatFs.ComponentTokens
open WeChatFs.WeChatClient

let tests =
    testList
        "ComponentTokens"
        [
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

/// The delivery schedule and webhook routing of the inbox (deliveries themselves run over HTTP in
/// MessageApiTests and against both stores in SqlStoreTests).
module WeChatFs.Tests.InboxTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Inbox

let private hooks =
    {
        Url = Some(Uri "http://hooks.example/all")
        TenantUrls = Map [ "shop-1", Uri "http://hooks.example/shop-1" ]
        Secret = None
        ReplyTimeout = TimeSpan.FromSeconds 3.
        MaxAttempts = 10
        RetryBase = TimeSpan.FromSeconds 2.
        PollInterval = TimeSpan.FromSeconds 1.
        DeliveredRetention = TimeSpan.FromDays 7.
    }

let tests =
    testList
        "Inbox"
        [
            testCase "retries wait RetryBase doubling, at most ten minutes, and stop after MaxAttempts"
            <| fun () ->
                let waits =
                    [ 1..10 ]
                    |> List.map (fun n -> retryAt hooks t0 n |> Option.map (fun at -> (at - t0).TotalSeconds))

                Expect.equal
                    waits
                    [
                        Some 2.
                        Some 4.
                        Some 8.
                        Some 16.
                        Some 32.
                        Some 64.
                        Some 128.
                        Some 256.
                        Some 512.
                        None
                    ]
                    "2 s doubling, dead after the tenth attempt"

                Expect.equal (retryAt { hooks with MaxAttempts = 20 } t0 15) (Some(t0.AddMinutes 10.)) "capped"

            testProp "a retry is always later than now and never later than ten minutes" (fun (n: int) ->
                let n = abs n % 50

                match retryAt { hooks with MaxAttempts = 50 } t0 n with
                | Some at -> at > t0 && at <= t0.AddMinutes 10.
                | None -> n >= 50)

            testCase "a tenant with its own webhook gets it; others get the default"
            <| fun () ->
                Expect.equal (webhookUrl hooks (Some "shop-1")) (Some(Uri "http://hooks.example/shop-1")) "own"
                Expect.equal (webhookUrl hooks (Some "shop-2")) hooks.Url "default"
                Expect.equal (webhookUrl hooks None) hooks.Url "no tenant"
                Expect.equal (webhookUrl { hooks with Url = None } (Some "shop-2")) None "stored only"
        ]

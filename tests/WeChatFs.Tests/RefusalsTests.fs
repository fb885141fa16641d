/// Refusals are cheap to log: a few short lines per reason and minute, the rest counted.
module WeChatFs.Tests.RefusalsTests

open System
open Microsoft.Extensions.Logging
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Tests.Harness


let tests =
    testSequencedGroup "Refusals"
    <| testList
        "Refusals"
        [
            testCase "a flood of one reason writes a few short lines a minute and counts the rest"
            <| fun () ->
                let logs = new CapturedLogs()
                let clock = OffsetClock()

                let log =
                    Refusals.RefusalLog((logs :> ILoggerProvider).CreateLogger "WeChatFs.Refusals", 3, clock)
                // Start at the beginning of a minute, so the flood stays inside one.
                let now = DateTimeOffset.UtcNow

                clock.Offset <-
                    TimeSpan.FromSeconds(float (60 - now.Second))
                    - TimeSpan.FromMilliseconds(float now.Millisecond)

                let huge = String('x', 100_000) + "\r\nforged line"

                for _ in 1..1000 do
                    log.Refused("message_push", 400, huge)

                for _ in 1..5 do
                    log.Refused("admin_key", 401, "/api/component/status")

                Expect.equal logs.All.Length 6 "logs.All.Length"
                Expect.isTrue (logs.All |> List.forall (fun l -> l.Length < 300)) (String.Join("\n", logs.All))

                Expect.isTrue
                    (logs.All |> List.forall (fun l -> not (l.Contains '\n')))
                    "logs.All |> List.forall (fun l -> not (l.Contains '\\n'))"

                Expect.equal (log.RefusedCounts["message_push"]) 1000L "log.RefusedCounts['message_push']"
                Expect.equal (log.SuppressedCounts["message_push"]) 997L "log.SuppressedCounts['message_push']"
                Expect.equal (log.SuppressedCounts["admin_key"]) 2L "log.SuppressedCounts['admin_key']"
                // The next minute's first line says how many were left out.
                clock.Offset <- clock.Offset + TimeSpan.FromMinutes 1.
                log.Refused("message_push", 400, "short")
                Expect.equal logs.All.Length 7 "logs.All.Length"
                Expect.stringContains (logs.All |> List.last) "997 more" "logs.All |> List.last"

        ]

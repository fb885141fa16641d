/// Webhook deliveries end to end: a webhook that is down gets its messages later, then dead-lettered
/// and retried by hand; retention deletes delivered rows only; a restart delivers what was pending;
/// on PostgreSQL the worker vacuums the inbox.
module WeChatFs.Tests.MessageDeliveryTests

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open Microsoft.Extensions.DependencyInjection
open WeChatFs.Store
open WeChatFs.Tests.Harness
open WeChatFs.Tests.AuthorizerApiTests
open WeChatFs.Tests.MessageApiTests

let tests =
    // One sequence with the other message modules: each starts its own gateway and simulator.
    testSequencedGroup "MessageApi"
    <| testList
        "MessageDelivery"
        [
            testCaseTask
                "a webhook that is down gets the message later; after the last attempt it is dead and can be retried"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook [ "WeChatFs:Webhooks:MaxAttempts", "3" ]
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                return
                                    hook.Payloads
                                    |> List.exists (fun p -> str p "kind" = "authorization.authorized")
                            })

                    let refused = Collections.Concurrent.ConcurrentQueue<Received>()

                    hook.Respond <-
                        fun r ->
                            refused.Enqueue r
                            503, ""

                    let! answer =
                        sendMessage pair shop "text" [ "Content", "while down"; "MsgId", "900" ]

                    Expect.equal (str answer "body") "success" "str answer 'body'"

                    let! dead =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=dead"
                                let! root = json r
                                return root.GetProperty("total").GetInt32() = 1
                            })

                    Expect.isTrue dead "dead"
                    let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=dead"
                    let! root = json r
                    let item = root.GetProperty("items")[0]
                    Expect.equal (item.GetProperty("attempts").GetInt32()) 3 "item.GetProperty('attempts').GetInt32()"
                    Expect.equal (str item "last_error") "HTTP 503" "str item 'last_error'"

                    hook.Respond <- fun _ -> 200, ""

                    let! retried =
                        pair.Gateway.Api.PostAsync($"""/api/deliveries/{str item "id"}/retry""", null)

                    Expect.equal retried.StatusCode HttpStatusCode.Accepted "retried.StatusCode"
                    let! delivered = waitFor hook 1
                    Expect.isTrue delivered "delivered"

                    // The first attempt's body is made while WeChat waits, the later ones from the
                    // stored row: the webhook gets the same bytes each time.
                    let attempts =
                        List.ofSeq refused @ hook.Received
                        |> List.filter (fun r -> r.Delivery = str item "id")

                    Expect.equal attempts.Length 4 "three refused attempts and the one after the retry"

                    Expect.equal
                        (attempts |> List.map (fun r -> r.Body) |> List.distinct |> List.length)
                        1
                        "every attempt carries the same body"

                    let! again =
                        pair.Gateway.Api.PostAsync($"""/api/deliveries/{str item "id"}/retry""", null)

                    Expect.equal again.StatusCode HttpStatusCode.Conflict "again.StatusCode"
                }

            testCaseTask
                "delivered messages and old event records are deleted after their retention; undelivered ones stay"
            <| fun () ->
                task {
                    let! pair, hook =
                        startWithWebhook
                            [
                                "WeChatFs:Webhooks:DeliveredRetention", "01:00:00"
                                "WeChatFs:Webhooks:MaxAttempts", "1"
                                "WeChatFs:Events:Retention", "1.00:00:00"
                            ]

                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop
                    let! _ = sendMessage pair shop "text" [ "Content", "kept a while"; "MsgId", "950" ]

                    // The authorization event and the first message reach the webhook before it goes down.
                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let kinds = hook.Payloads |> List.map (fun p -> str p "kind")
                                return List.contains "authorization.authorized" kinds && List.contains "text" kinds
                            })

                    hook.Respond <- fun _ -> 503, ""

                    let! _ =
                        sendMessage pair shop "text" [ "Content", "never delivered"; "MsgId", "951" ]

                    let total status =
                        task {
                            let! r = pair.Gateway.Api.GetAsync $"/api/deliveries?status={status}"
                            let! root = json r
                            return root.GetProperty("total").GetInt32()
                        }

                    let! settled =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! delivered = total "delivered"
                                let! dead = total "dead"
                                return delivered >= 2 && dead = 1
                            })

                    Expect.isTrue settled "settled"
                    // Within the retention nothing goes.
                    let! kept =
                        holdsFor (TimeSpan.FromSeconds 1.5) (fun () ->
                            task {
                                let! delivered = total "delivered"
                                return delivered >= 2
                            })

                    Expect.isTrue kept "delivered messages stay within the retention"
                    pair.Gateway.Clock.Offset <- TimeSpan.FromHours 2.

                    let! purged =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! delivered = total "delivered"
                                return delivered = 0
                            })

                    Expect.isTrue purged "purged"
                    let! dead = total "dead"
                    Expect.equal dead 1 "dead"

                    // The event log keeps its records for a day: still there after two hours, gone after two days.
                    let store = pair.Gateway.App.Services.GetRequiredService<IStore>()

                    do!
                        store.AppendEvent
                            {
                                Kind = "test_record"
                                Subject = shop
                                Detail = ""
                                At = pair.Gateway.Clock.GetUtcNow()
                            }

                    let records () =
                        task {
                            let! recent = store.RecentEvents(Some "test_record", 10)
                            return recent.Length
                        }

                    pair.Gateway.Clock.Offset <- TimeSpan.FromHours 3.

                    let! kept =
                        holdsFor (TimeSpan.FromSeconds 1.5) (fun () ->
                            task {
                                let! n = records ()
                                return n = 1
                            })

                    Expect.isTrue kept "an event record stays within its retention"
                    pair.Gateway.Clock.Offset <- TimeSpan.FromDays 2.

                    let! eventsPurged =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! n = records ()
                                return n = 0
                            })

                    Expect.isTrue eventsPurged "eventsPurged"
                }

            testCaseTask "undelivered messages are delivered after a restart"
            <| fun () ->
                task {
                    let! pair, hook = startWithWebhook []
                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop
                    hook.Respond <- fun _ -> 500, ""

                    for i in 1..3 do
                        let! _ = sendMessage pair shop "text" [ "Content", $"m{i}"; "MsgId", $"50{i}" ]
                        ()

                    // Stopped with three messages undelivered; the webhook recovers while the gateway is down.
                    do! pair.Gateway.StopAsync()
                    hook.Respond <- fun _ -> 200, ""

                    let! g =
                        startGatewayWith
                            pair.Sim.BaseUrl
                            pair.Gateway.DataFolder
                            pair.Gateway.Clock
                            (webhookSettings hook)

                    pair.Gateway <- g
                    let! all = waitFor hook 3
                    Expect.isTrue all "all"

                    let! once =
                        holdsFor (TimeSpan.FromMilliseconds 500.) (fun () ->
                            Task.FromResult((messagesOf hook).Length = 3))

                    Expect.isTrue once "each message is delivered once after the restart"

                    let contents =
                        messagesOf hook
                        |> List.map (fun p -> str (p.GetProperty "message") "content")
                        |> List.sort

                    Expect.equal contents ([ "m1"; "m2"; "m3" ]) "contents"
                }

            testCaseTask "on PostgreSQL the worker vacuums the inbox once as many rows changed as configured"
            <| fun () ->
                task {
                    let connectionString = postgres.Force().NewDatabase()

                    let! pair, hook =
                        startWithWebhook
                            [
                                "WeChatFs:Storage:Provider", "postgres"
                                "WeChatFs:Storage:ConnectionString", connectionString
                                "WeChatFs:Storage:InboxVacuumAfter", "20"
                                "WeChatFs:Webhooks:PollInterval", "00:00:00.100"
                            ]

                    use _ = pair
                    use _ = hook
                    let! _ = authorizeVia pair "shop-1" shop

                    for i in 1..25 do
                        let! _ = sendMessage pair shop "text" [ "Content", $"v{i}"; "MsgId", $"60{i:D2}" ]
                        ()

                    let vacuums () =
                        task {
                            use conn = new Npgsql.NpgsqlConnection(connectionString)
                            do! conn.OpenAsync()

                            use cmd =
                                new Npgsql.NpgsqlCommand(
                                    "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = to_regclass('inbox')",
                                    conn
                                )

                            let! n = cmd.ExecuteScalarAsync()
                            return Convert.ToInt64 n
                        }

                    // The worker checks every 10 s of its clock, moved on here; the server's figures
                    // reach the check a few seconds after the rows. `vacuum_count` counts vacuums
                    // asked for, not autovacuum's.
                    let! vacuumed =
                        eventually (TimeSpan.FromSeconds 40.) (fun () ->
                            task {
                                pair.Gateway.Clock.Offset <- pair.Gateway.Clock.Offset + TimeSpan.FromSeconds 11.
                                do! Task.Delay 500
                                let! n = vacuums ()
                                return n > 0L
                            })

                    Expect.isTrue vacuumed "vacuumed by the worker"

                    Expect.exists
                        pair.Gateway.Logs.All
                        (fun l -> l.Contains "vacuumed the inbox")
                        "and said so in its log"
                }
        ]

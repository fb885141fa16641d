/// The store contract, continued: claims across restarts and instances, migrations, concurrent PostgreSQL
/// instances, no secret in clear at rest, and imports that never overwrite; on SQLite and PostgreSQL.
module WeChatFs.Tests.SqlStoreSafetyTests

open System
open System.IO
open System.Text
open System.Threading.Tasks
open Npgsql
open Expecto
open WeChatFs
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.StoreFixture

let tests =
    testSequencedGroup "SqlStore"
    <| testList
        "SqlStoreSafety"
        [
            testTheoryTask
                "deliveries are claimed once, retried with backoff, dead-lettered and retried by hand"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    let! _ =
                        append
                            store
                            [
                                item "wxa" "m1" "id1"
                                { item "wxa" "m2" "id2" with
                                    ClaimedBy = Some "receiver"
                                    ClaimedUntil = Some(t0.AddSeconds 5.)
                                }
                            ]

                    let! a = store.ClaimDeliveries("A", t0, t0.AddSeconds 30., 10)
                    Expect.equal (a |> List.map (fun d -> d.Id)) ([ "id1" ]) "a |> List.map (fun d -> d.Id)"
                    let! b = store.ClaimDeliveries("B", t0.AddSeconds 1., t0.AddSeconds 30., 10)
                    Expect.isEmpty b "b"
                    // The receiver's claim on id2 ran out: another instance may take it.
                    let! later = store.ClaimDeliveries("B", t0.AddSeconds 6., t0.AddSeconds 36., 10)
                    Expect.equal (later |> List.map (fun d -> d.Id)) ([ "id2" ]) "later |> List.map (fun d -> d.Id)"
                    // The receiver's late outcome, after B took its claim over, is left to B.
                    do! store.MarkFailed("id2", "timed out", Some(t0.AddSeconds 60.), "receiver")
                    do! store.MarkDelivered("id2", t0.AddSeconds 7., "receiver")
                    let! stillB = store.GetDelivery "id2"
                    Expect.equal stillB.Value.Status Pending "still B's to deliver"
                    Expect.equal stillB.Value.Attempts 0 "no attempt counted for the receiver"
                    do! store.MarkDelivered("id2", t0.AddSeconds 7., "B")
                    do! store.MarkFailed("id1", "HTTP 500", Some(t0.AddSeconds 60.), "A")
                    let! notYet = store.ClaimDeliveries("C", t0.AddSeconds 40., t0.AddSeconds 70., 10)
                    Expect.isEmpty notYet "notYet"
                    let! due = store.ClaimDeliveries("C", t0.AddSeconds 61., t0.AddSeconds 90., 10)
                    Expect.equal due.Head.Attempts 1 "due.Head.Attempts"
                    do! store.MarkFailed("id1", "HTTP 500", None, "C")
                    let! dead = store.ListDeliveries(Some Dead, 0, 10)

                    Expect.equal
                        (dead.Items |> List.map (fun d -> d.Id))
                        ([ "id1" ])
                        "dead.Items |> List.map (fun d -> d.Id)"

                    Expect.equal dead.Items.Head.LastError (Some "HTTP 500") "dead.Items.Head.LastError"
                    // A late failure from the instance whose claim on id2 ran out does not undo the delivery.
                    do! store.MarkFailed("id2", "timed out", Some(t0.AddSeconds 60.), "receiver")
                    let! delivered = store.GetDelivery "id2"
                    Expect.equal delivered.Value.Status Delivered "delivered.Value.Status"
                    Expect.equal delivered.Value.Attempts 1 "delivered.Value.Attempts"
                    let! retried = store.RetryDelivery("id1", t0.AddSeconds 100.)
                    let! notRetried = store.RetryDelivery("id2", t0.AddSeconds 100.)
                    Expect.isTrue retried "retried"
                    Expect.isFalse notRetried "notRetried"
                    let! back = store.ClaimDeliveries("C", t0.AddSeconds 100., t0.AddSeconds 130., 10)
                    Expect.equal (back |> List.map (fun d -> d.Id)) ([ "id1" ]) "back |> List.map (fun d -> d.Id)"
                }

            testTheoryTask "claims held before a restart are released for that holder only" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    let! _ = append store [ item "wxa" "m1" "id1"; item "wxa" "m2" "id2" ]
                    let! a = store.ClaimDeliveries("A", t0, t0.AddSeconds 30., 1)
                    let! b = store.ClaimDeliveries("B", t0, t0.AddSeconds 30., 1)
                    Expect.equal a.Length 1 "A holds one"
                    Expect.equal b.Length 1 "B holds one"
                    let! released = store.ReleaseClaims "A"
                    Expect.equal released 1 "A's one claim is released"
                    let! again = store.ClaimDeliveries("A", t0.AddSeconds 1., t0.AddSeconds 30., 10)

                    Expect.equal
                        (again |> List.map (fun d -> d.Id))
                        (a |> List.map (fun d -> d.Id))
                        "only A's is free again"
                }

            testTheoryTask
                "only deliveries delivered before the cut-off are purged, first due first and at most max"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    let! _ =
                        append
                            store
                            [
                                for k in 1..4 ->
                                    { item "wxa" $"m{k}" $"id{k}" with
                                        ReceivedAt = t0.AddSeconds(float k)
                                    }
                            ]

                    do! store.MarkDelivered("id1", t0, "A")
                    do! store.MarkDelivered("id2", t0.AddMinutes 1., "A")
                    do! store.MarkDelivered("id3", t0.AddHours 2., "A")
                    do! store.MarkFailed("id4", "HTTP 500", None, "A")
                    let! first = store.PurgeDelivered(t0.AddHours 1., 1)
                    Expect.equal first 1 "first"
                    let! gone = store.GetDelivery "id1"
                    Expect.isTrue gone.IsNone "gone.IsNone"
                    let! rest = store.PurgeDelivered(t0.AddHours 1., 10)
                    Expect.equal rest 1 "rest"
                    let! left = store.ListDeliveries(None, 0, 10)

                    Expect.equal
                        (left.Items |> List.map (fun d -> d.Id) |> List.sort)
                        ([ "id3"; "id4" ])
                        "left.Items |> List.map (fun d -> d.Id) |> List.sort"
                    // A dead delivery stays whatever its age.
                    let! none = store.PurgeDelivered(t0.AddDays 30., 10)
                    Expect.equal none 1 "none"
                    let! dead = store.ListDeliveries(None, 0, 10)

                    Expect.equal
                        (dead.Items |> List.map (fun d -> d.Id))
                        ([ "id4" ])
                        "dead.Items |> List.map (fun d -> d.Id)"
                }

            testTheoryTask "migrating twice is harmless" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    do! store.Migrate()
                    let! ping = store.Ping()
                    Expect.equal ping (Ok()) "ping"
                }

            testTheoryTask "a version 1 inbox keeps its messages through the later migrations" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let connectionString =
                        match provider with
                        | "sqlite" ->
                            let file = Path.Combine(tempFolder (), "v1.db")
                            $"Data Source={file}"
                        | _ -> postgres.Force().NewDatabase()

                    use conn: Data.Common.DbConnection =
                        match provider with
                        | "sqlite" -> new Microsoft.Data.Sqlite.SqliteConnection(connectionString)
                        | _ -> new Npgsql.NpgsqlConnection(connectionString)

                    do! conn.OpenAsync()

                    let exec (sql: string) =
                        task {
                            use c = conn.CreateCommand()
                            c.CommandText <- sql
                            let! _ = c.ExecuteNonQueryAsync()
                            ()
                        }

                    let dialect =
                        if provider = "sqlite" then
                            SqlSchema.sqlite
                        else
                            SqlSchema.postgres

                    do! exec "CREATE TABLE schema_version (version INTEGER NOT NULL)"

                    for statement in SqlSchema.migrations dialect |> List.find (fst >> (=) 1) |> snd do
                        do! exec statement

                    do! exec "INSERT INTO schema_version (version) VALUES (1)"

                    do!
                        exec
                            "INSERT INTO inbox (id, authorizer_appid, dedupe_key, tenant, kind, received_at, payload, raw_xml, status, attempts, next_attempt_at) VALUES ('old1', 'wxa', 'msg:1', 'shop', 'text', 0, '{}', '<xml/>', 'pending', 0, 0)"

                    do! conn.CloseAsync()
                    use store = SqlStore.openStore provider connectionString (sealer ())
                    do! store.Migrate()
                    let! page = store.ListDeliveries(Some Pending, 0, 10)

                    Expect.equal
                        (page.Items |> List.map (fun d -> d.Id))
                        ([ "old1" ])
                        "page.Items |> List.map (fun d -> d.Id)"

                    let! again = append store [ item "wxa" "msg:1" "new1" ]
                    Expect.equal again ([ Duplicate "old1" ]) "again"
                }

            testCaseTask "several instances may migrate one PostgreSQL database at once"
            <| fun () ->
                task {
                    let cs = postgres.Force().NewDatabase()
                    let stores = List.init 3 (fun _ -> SqlStore.openStore "postgres" cs (sealer ()))
                    do! stores |> List.map (fun s -> s.Migrate()) |> Task.WhenAll
                    let! count = stores.Head.CountAuthorizers()
                    Expect.equal count 0 "count"

                    for s in stores do
                        s.Dispose()
                }

            testCaseTask "on PostgreSQL exactly one of three racing instances takes a lease"
            <| fun () ->
                task {
                    let cs = postgres.Force().NewDatabase()
                    let stores = List.init 3 (fun _ -> SqlStore.openStore "postgres" cs (sealer ()))
                    do! stores.Head.Migrate()

                    for round in 1..20 do
                        let! wins =
                            stores
                            |> List.mapi (fun i s ->
                                s.TryAcquireLease($"token-{round}", $"instance-{i}", t0, t0.AddSeconds 30.))
                            |> Task.WhenAll

                        Expect.equal
                            (wins |> Array.filter id |> Array.length)
                            1
                            "wins |> Array.filter id |> Array.length"

                    for s in stores do
                        s.Dispose()
                }

            testCaseTask "on PostgreSQL concurrent claimers never claim the same delivery"
            <| fun () ->
                task {
                    let cs = postgres.Force().NewDatabase()
                    let stores = List.init 3 (fun _ -> SqlStore.openStore "postgres" cs (sealer ()))
                    do! stores.Head.Migrate()
                    let! _ = append stores.Head [ for i in 1..30 -> item "wxa" $"m{i}" $"id{i}" ]

                    let! claimed =
                        stores
                        |> List.mapi (fun i s ->
                            task {
                                let mutable mine = []

                                for _ in 1..10 do
                                    let! got = s.ClaimDeliveries($"instance-{i}", t0, t0.AddSeconds 30., 2)
                                    mine <- mine @ (got |> List.map (fun d -> d.Id))

                                return mine
                            })
                        |> Task.WhenAll

                    let all = claimed |> List.concat
                    Expect.equal all.Length 30 "all.Length"
                    Expect.equal (all |> List.distinct |> List.length) 30 "all |> List.distinct |> List.length"

                    for s in stores do
                        s.Dispose()
                }

            testCaseTask "no secret is in clear in the SQLite files"
            <| fun () ->
                task {
                    let! store, _, file = openFresh "sqlite"
                    do! saveSecrets store
                    let! back = store.GetAuthorizer(AuthorizerAppId "wxsecret")

                    Expect.equal
                        back.Value.RefreshToken
                        (Some(AuthorizerRefreshToken "refreshtoken@@@wxsecret"))
                        "back.Value.RefreshToken"

                    store.Dispose()

                    let contents =
                        [ file.Value; file.Value + "-wal" ]
                        |> List.filter File.Exists
                        |> List.map (File.ReadAllBytes >> Encoding.Latin1.GetString)
                        |> String.concat ""

                    Expect.stringContains contents "wxsecret" "contents"

                    for secret in secrets do
                        Expect.isFalse (contents.Contains(secret: string)) "contents must not contain secret"
                }

            testCaseTask "no secret is in clear in the PostgreSQL tables"
            <| fun () ->
                task {
                    let! store, cs, _ = openFresh "postgres"
                    use store = store
                    do! saveSecrets store
                    use conn = new NpgsqlConnection(cs)
                    do! conn.OpenAsync()

                    let dump (table: string) =
                        use cmd = new NpgsqlCommand($"SELECT t::text FROM {table} t", conn)
                        use r = cmd.ExecuteReader()
                        let rows = Collections.Generic.List<string>()

                        while r.Read() do
                            rows.Add(r.GetString 0)

                        String.concat "\n" rows

                    let contents =
                        [ "authorizers"; "tickets"; "component_tokens"; "kv" ]
                        |> List.map dump
                        |> String.concat "\n"

                    Expect.stringContains contents "wxsecret" "contents"

                    for secret in secrets do
                        Expect.isFalse (contents.Contains(secret: string)) "contents must not contain secret"
                }

            testTheoryTask "an import never overwrites an authorizer stored meanwhile" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    let stored = authorizer "wx1" (Some "shop")
                    do! store.SaveAuthorizer stored

                    let! added =
                        store.AddAuthorizerIfAbsent
                            { stored with
                                Tenant = None
                                AccessToken = None
                            }

                    Expect.isFalse added "added"
                    let! back = store.GetAuthorizer(AuthorizerAppId "wx1")
                    Expect.equal back (Some stored) "back"
                    let! addedNew = store.AddAuthorizerIfAbsent(authorizer "wx2" None)
                    Expect.isTrue addedNew "addedNew"
                }

            testTheoryTask
                "typed domain state round-trips, under the keys earlier versions wrote"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    let! none = store.PreAuthTenant(PreAuthCode "preauthcode@@@a")
                    Expect.isNone none "nothing remembered yet"
                    do! store.RememberPreAuthTenant(PreAuthCode "preauthcode@@@a", TenantId "shop-1")
                    let! tenant = store.PreAuthTenant(PreAuthCode "preauthcode@@@a")
                    Expect.equal tenant (Some(TenantId "shop-1")) "tenant per pre_auth_code"
                    let! other = store.PreAuthTenant(PreAuthCode "preauthcode@@@b")
                    Expect.isNone other "another code has no tenant"

                    do! store.RecordExchangedCode(AuthorizationCode "queryauthcode@@@a", AuthorizerAppId "wx1")
                    let! exchanged = store.ExchangedCode(AuthorizationCode "queryauthcode@@@a")
                    Expect.equal exchanged (Some(AuthorizerAppId "wx1")) "exchanged code"

                    do! store.SaveLatestCode(AuthorizerAppId "wx1", AuthorizationCode "queryauthcode@@@latest")
                    let! latest = store.LatestCode(AuthorizerAppId "wx1")
                    Expect.equal latest (Some(AuthorizationCode "queryauthcode@@@latest")) "latest code"
                    // The message path still reads it by its key.
                    let! byKey = store.GetValue "lastcode:wx1"
                    Expect.equal byKey (Some "queryauthcode@@@latest") "same key as before"

                    let! noMarker = store.RejectedTicket()
                    Expect.isNone noMarker "no rejected ticket"
                    do! store.SaveRejectedTicket 1767225600000L
                    let! marker = store.RejectedTicket()
                    Expect.equal marker (Some 1767225600000L) "rejected ticket marker"
                    let! markerByKey = store.GetValue "component:rejected_ticket_at"
                    Expect.equal markerByKey (Some "1767225600000") "same key as before"

                    do! store.SaveComponentError(Some 61005, "ticket refused", t0)
                    let! failure = store.ComponentError()
                    Expect.equal failure (Some(Some 61005, "ticket refused", t0)) "last component error"
                    do! store.SaveComponentError(None, "timed out", t0.AddMinutes 1.)
                    let! later = store.ComponentError()
                    Expect.equal later (Some(None, "timed out", t0.AddMinutes 1.)) "replaced, no errcode"
                }

        ]

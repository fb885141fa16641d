/// The store contract, written once and run against SQLite and a real PostgreSQL server.
module WeChatFs.Tests.SqlStoreTests

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
        "SqlStore"
        [
            testTheoryTask "the newest ticket wins and a repeated push changes nothing" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    do!
                        store.SaveTicket(
                            appId,
                            {
                                Ticket = VerifyTicket "b"
                                ReceivedAt = t0.AddMinutes 10.
                            }
                        )

                    do!
                        store.SaveTicket(
                            appId,
                            {
                                Ticket = VerifyTicket "a"
                                ReceivedAt = t0
                            }
                        )

                    do!
                        store.SaveTicket(
                            appId,
                            {
                                Ticket = VerifyTicket "b"
                                ReceivedAt = t0.AddMinutes 10.
                            }
                        )

                    let! latest = store.LatestTicket appId

                    Expect.equal
                        latest
                        (Some
                            {
                                Ticket = VerifyTicket "b"
                                ReceivedAt = t0.AddMinutes 10.
                            })
                        "latest"

                    let! other = store.LatestTicket(ComponentAppId "other")
                    Expect.equal other None "other"
                }

            testTheoryTask "a component token is invalidated only while it is the current one" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    let first =
                        {
                            Token = ComponentAccessToken "one"
                            ExpiresAt = t0.AddHours 2.
                        }

                    do! store.SaveComponentToken(appId, first)

                    do!
                        store.SaveComponentToken(
                            appId,
                            { first with
                                Token = ComponentAccessToken "two"
                            }
                        )

                    let! stale = store.InvalidateComponentToken(appId, ComponentAccessToken "one")
                    Expect.isFalse stale "stale"
                    let! current = store.ComponentToken appId

                    Expect.equal
                        current
                        (Some
                            { first with
                                Token = ComponentAccessToken "two"
                            })
                        "current"

                    let! removed = store.InvalidateComponentToken(appId, ComponentAccessToken "two")
                    Expect.isTrue removed "removed"
                    let! gone = store.ComponentToken appId
                    Expect.equal gone None "gone"
                }

            testTheoryTask
                "leases are exclusive, renewable by their holder and taken over once expired"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    let! a = store.TryAcquireLease("x", "A", t0, t0.AddSeconds 30.)
                    let! b = store.TryAcquireLease("x", "B", t0.AddSeconds 1., t0.AddSeconds 31.)
                    let! renew = store.TryAcquireLease("x", "A", t0.AddSeconds 2., t0.AddSeconds 60.)
                    let! bLater = store.TryAcquireLease("x", "B", t0.AddSeconds 40., t0.AddSeconds 70.)
                    let! bExpired = store.TryAcquireLease("x", "B", t0.AddSeconds 61., t0.AddSeconds 90.)
                    Expect.isTrue a "a"
                    Expect.isFalse b "b"
                    Expect.isTrue renew "renew"
                    Expect.isFalse bLater "bLater"
                    Expect.isTrue bExpired "bExpired"
                    do! store.ReleaseLease("x", "A")
                    let! stillB = store.TryAcquireLease("x", "C", t0.AddSeconds 62., t0.AddSeconds 90.)
                    Expect.isFalse stillB "stillB"
                    do! store.ReleaseLease("x", "B")
                    let! c = store.TryAcquireLease("x", "C", t0.AddSeconds 62., t0.AddSeconds 90.)
                    Expect.isTrue c "c"
                }

            testTheoryTask
                "authorizers are saved, listed with filters and paging, and their tokens managed"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    for i in 1..5 do
                        do! store.SaveAuthorizer(authorizer $"wx{i}" (if i % 2 = 0 then Some "even" else Some "odd"))

                    let! one = store.GetAuthorizer(AuthorizerAppId "wx1")
                    Expect.equal one (Some(authorizer "wx1" (Some "odd"))) "one"

                    let! odd =
                        store.ListAuthorizers
                            {
                                Tenant = Some(TenantId "odd")
                                Status = None
                                Offset = 0
                                Limit = 2
                            }

                    Expect.equal odd.Total 3 "odd.Total"

                    Expect.equal
                        (odd.Items |> List.map (fun a -> Ids.authorizerAppId a.AppId))
                        ([ "wx1"; "wx3" ])
                        "odd.Items |> List.map (fun a -> Ids.authorizerAppId a.AppId)"

                    let! count = store.CountAuthorizers()
                    Expect.equal count 5 "count"

                    let fresh =
                        {
                            Token = AuthorizerAccessToken "fresh"
                            ExpiresAt = t0.AddHours 4.
                        }

                    do!
                        store.SaveAuthorizerTokens(
                            AuthorizerAppId "wx2",
                            fresh,
                            AuthorizerRefreshToken "rotated",
                            t0.AddHours 2.
                        )

                    let! two = store.GetAuthorizer(AuthorizerAppId "wx2")
                    Expect.equal two.Value.AccessToken (Some fresh) "two.Value.AccessToken"

                    Expect.equal
                        two.Value.RefreshToken
                        (Some(AuthorizerRefreshToken "rotated"))
                        "two.Value.RefreshToken"

                    let! stale =
                        store.InvalidateAuthorizerToken(AuthorizerAppId "wx2", AuthorizerAccessToken "access-wx2")

                    Expect.isFalse stale "stale"

                    let! removed =
                        store.InvalidateAuthorizerToken(AuthorizerAppId "wx2", AuthorizerAccessToken "fresh")

                    Expect.isTrue removed "removed"

                    // wx2 has no token now: due first; wx1.. expire at t0+2h, due before t0+3h; wx5 revoked is never due.
                    do! store.SetAuthorizerStatus(AuthorizerAppId "wx5", Revoked, Some "unauthorized push", t0)
                    let! due = store.DueAuthorizers(t0.AddHours 3., 10)

                    Expect.equal
                        (due |> List.map Ids.authorizerAppId)
                        ([ "wx2"; "wx1"; "wx3"; "wx4" ])
                        "due |> List.map Ids.authorizerAppId"

                    let! revoked = store.GetAuthorizer(AuthorizerAppId "wx5")
                    Expect.equal revoked.Value.Status Revoked "revoked.Value.Status"
                    Expect.equal revoked.Value.RefreshToken None "revoked.Value.RefreshToken"
                    Expect.equal revoked.Value.AccessToken None "revoked.Value.AccessToken"
                    Expect.equal revoked.Value.StatusReason (Some "unauthorized push") "revoked.Value.StatusReason"
                    do! store.SetAuthorizerStatus(AuthorizerAppId "wx4", NeedsReauthorization, Some "61023", t0)
                    let! needs = store.GetAuthorizer(AuthorizerAppId "wx4")
                    Expect.equal needs.Value.AccessToken None "needs.Value.AccessToken"
                    Expect.isTrue needs.Value.RefreshToken.IsSome "needs.Value.RefreshToken.IsSome"

                    let! byStatus =
                        store.ListAuthorizers
                            {
                                Tenant = None
                                Status = Some Revoked
                                Offset = 0
                                Limit = 10
                            }

                    Expect.equal byStatus.Total 1 "byStatus.Total"
                }

            testTheoryTask "values, secret or not, and events round-trip" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    do! store.PutValue("plain", "v1", false)
                    do! store.PutValue("plain", "v2", false)
                    do! store.PutValue("hidden", "s3cr3t", true)
                    let! plain = store.GetValue "plain"
                    let! hidden = store.GetValue "hidden"
                    let! missing = store.GetValue "missing"
                    Expect.equal plain (Some "v2") "plain"
                    Expect.equal hidden (Some "s3cr3t") "hidden"
                    Expect.equal missing None "missing"

                    for i in 1..3 do
                        do!
                            store.AppendEvent
                                {
                                    Kind = (if i = 2 then "b" else "a")
                                    Subject = $"s{i}"
                                    Detail = ""
                                    At = t0
                                }

                    let! recent = store.RecentEvents(Some "a", 10)

                    Expect.equal
                        (recent |> List.map (fun e -> e.Subject))
                        ([ "s3"; "s1" ])
                        "recent |> List.map (fun e -> e.Subject)"

                    let! all = store.RecentEvents(None, 2)
                    Expect.equal all.Length 2 "all.Length"
                }

            testTheoryTask
                "old event records are purged oldest first, up to the limit, and newer ones stay"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    let t0 = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

                    // Appended out of time order: the purge goes by age, not by arrival.
                    for subject, hours in [ "late", 3.; "oldest", 0.; "old", 1.; "recent", 5. ] do
                        do!
                            store.AppendEvent
                                {
                                    Kind = "k"
                                    Subject = subject
                                    Detail = ""
                                    At = t0.AddHours hours
                                }

                    let subjects () =
                        task {
                            let! left = store.RecentEvents(None, 10)
                            return left |> List.map (fun e -> e.Subject) |> List.sort
                        }

                    let! first = store.PurgeEvents(t0.AddHours 4., 1)
                    Expect.equal first 1 "first"
                    let! afterFirst = subjects ()
                    Expect.equal afterFirst ([ "late"; "old"; "recent" ]) "afterFirst"
                    let! rest = store.PurgeEvents(t0.AddHours 4., 10)
                    Expect.equal rest 2 "rest"
                    let! afterAll = subjects ()
                    Expect.equal afterAll ([ "recent" ]) "afterAll"
                    let! none = store.PurgeEvents(t0.AddHours 4., 10)
                    Expect.equal none 0 "none"
                }

            testTheoryTask
                "the inbox stores a batch at once and recognises retries, also within the batch"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    let! first =
                        append store [ item "wxa" "m1" "id1"; item "wxa" "m2" "id2"; item "wxa" "m1" "id3" ]

                    Expect.equal first ([ Stored "id1"; Stored "id2"; Duplicate "id1" ]) "first"
                    let! again = append store [ item "wxa" "m2" "id4"; item "wxb" "m2" "id5" ]
                    Expect.equal again ([ Duplicate "id2"; Stored "id5" ]) "again"
                    let! page = store.ListDeliveries(Some Pending, 0, 10)
                    Expect.equal page.Total 3 "page.Total"
                }

            testTheoryTask
                "the authorizers come a page at a time after a given appid, in appid order"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    for n in [ 3; 1; 5; 2; 4 ] do
                        do! store.SaveAuthorizer(authorizer $"wx{n}" None)

                    let pageAfter after =
                        task {
                            let! page = store.AuthorizerTokensAfter(after |> Option.map AuthorizerAppId, 2)
                            return page |> List.map (fun a -> Ids.authorizerAppId a.Account)
                        }

                    let! first = pageAfter None
                    Expect.equal first [ "wx1"; "wx2" ] "the first page"
                    let! second = pageAfter (Some "wx2")
                    Expect.equal second [ "wx3"; "wx4" ] "after wx2"
                    let! last = pageAfter (Some "wx4")
                    Expect.equal last [ "wx5" ] "after wx4"
                    let! none = pageAfter (Some "wx5")
                    Expect.isEmpty none "after the last"

                    // Each row: the status and the access token, unsealed.
                    let! rows = store.AuthorizerTokensAfter(None, 1)

                    Expect.equal
                        rows
                        [
                            {
                                Account = AuthorizerAppId "wx1"
                                State = Authorized
                                Current = (authorizer "wx1" None).AccessToken
                            }
                        ]
                        "an authorized account with its token"

                    do!
                        store.SaveAuthorizer(
                            { authorizer "wx6" None with
                                Status = Revoked
                                AccessToken = None
                            }
                        )

                    let! revoked = store.AuthorizerTokensAfter(Some(AuthorizerAppId "wx5"), 2)

                    Expect.equal
                        revoked
                        [
                            {
                                Account = AuthorizerAppId "wx6"
                                State = Revoked
                                Current = None
                            }
                        ]
                        "a revoked account without a token"
                }

            testTheoryTask
                "every page of the deliveries, from either end of the list, is that slice of the newest-first order"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    // 23 messages, some sharing a second (ordered by id then), one in three delivered.
                    let items =
                        [
                            for n in 0..22 ->
                                { item "wxa" $"m{n}" $"id{n:D2}" with
                                    ReceivedAt = t0.AddSeconds(float (n / 2))
                                }
                        ]

                    let! _ = append store items

                    for n in 0..3..22 do
                        do! store.MarkDelivered($"id{n:D2}", t0, "test")

                    let newestFirst (keep: int -> bool) =
                        [
                            for n in 22..-1..0 do
                                if keep n then
                                    $"id{n:D2}"
                        ]

                    for status, expected in
                        [
                            None, newestFirst (fun _ -> true)
                            Some Pending, newestFirst (fun n -> n % 3 <> 0)
                            Some Delivered, newestFirst (fun n -> n % 3 = 0)
                        ] do
                        for offset in 0..25 do
                            for limit in [ 1; 4; 10; 30 ] do
                                let! page = store.ListDeliveries(status, offset, limit)
                                let label = $"{status} offset {offset} limit {limit}"
                                Expect.equal page.Total expected.Length $"total, {label}"

                                Expect.equal
                                    (page.Items |> List.map _.Id)
                                    (expected |> List.skip (min offset expected.Length) |> List.truncate limit)
                                    label

                        // By cursor: after each item, the items that follow it, whatever the depth.
                        let! all = store.ListDeliveries(status, 0, 100)

                        for position, d in List.indexed all.Items do
                            for limit in [ 1; 4; 30 ] do
                                let cursor: Paging.Cursor =
                                    {
                                        At = d.ReceivedAt.ToUnixTimeMilliseconds()
                                        Id = d.Id
                                    }

                                let! page = store.ListDeliveriesBefore(status, cursor, limit)
                                let label = $"{status} after {d.Id} limit {limit}"
                                Expect.equal page.Total expected.Length $"total, {label}"

                                Expect.equal
                                    (page.Items |> List.map _.Id)
                                    (expected |> List.skip (position + 1) |> List.truncate limit)
                                    label

                                // And the other way: the newer items nearest to it, newest first.
                                let! page = store.ListDeliveriesAfter(status, cursor, limit)
                                let label = $"{status} before {d.Id} limit {limit}"
                                Expect.equal page.Total expected.Length $"total, {label}"

                                Expect.equal
                                    (page.Items |> List.map _.Id)
                                    (expected |> List.take position |> List.skip (max 0 (position - limit)))
                                    label
                }

            testTheoryTask
                "going back from a page by cursor gives the page before it: the first page whole when fewer precede it, the last page past the end"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store
                    // 9 messages, some sharing a second (ordered by id then).
                    let! _ =
                        append
                            store
                            [
                                for n in 0..8 ->
                                    { item "wxa" $"m{n}" $"id{n}" with
                                        ReceivedAt = t0.AddSeconds(float (n / 2))
                                    }
                            ]

                    let expected = [ for n in 8..-1..0 -> $"id{n}" ]
                    let ids (r: DeliveriesPage) = r.Page.Items |> List.map _.Id

                    let! all = store.ListDeliveries(None, 0, 100)

                    for position, d in List.indexed all.Items do
                        for limit in [ 1; 2; 4; 20 ] do
                            let label = $"from {d.Id}, limit {limit}"
                            // The page after `d`; empty when `d` is the oldest.
                            let! page = deliveriesBefore store None (Delivery.cursor d) limit
                            Expect.equal (ids page) (expected |> List.skip (position + 1) |> List.truncate limit) label

                            match page.Previous with
                            | None -> failtest $"every page by cursor has one before it, {label}"
                            | Some previous ->
                                let! back = deliveriesAfter store None previous limit
                                // What precedes the page: every item up to `d`, `d` included.
                                let preceding = List.take (position + 1) expected

                                let expectedBack =
                                    if preceding.Length >= limit then
                                        List.skip (preceding.Length - limit) preceding
                                    else
                                        List.truncate limit expected

                                Expect.equal (ids back) expectedBack $"back, {label}"
                                Expect.equal back.Previous.IsSome (preceding.Length > limit) $"back's previous, {label}"
                                Expect.equal back.Page.Total expected.Length $"total, {label}"

                    // A cursor older than every item, as a purge leaves one: the way back is the last page.
                    let gone: Paging.Cursor =
                        {
                            At = t0.AddDays(-1.).ToUnixTimeMilliseconds()
                            Id = "gone"
                        }

                    let! past = deliveriesBefore store None gone 4
                    Expect.isEmpty past.Page.Items "nothing older"
                    let! last = deliveriesAfter store None past.Previous.Value 4
                    Expect.equal (ids last) (List.skip 5 expected) "the last page"
                }

            testTheoryTask
                "the deliveries' counts follow every insert, retry, status change and purge, folded or not"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use store = store

                    let expectCounts (pending: int) (delivered: int) (dead: int) (step: string) =
                        task {
                            for status, n in [ Some Pending, pending; Some Delivered, delivered; Some Dead, dead ] do
                                let! page = store.ListDeliveries(status, 0, 1)
                                Expect.equal page.Total n $"{status} after {step}"

                            let! all = store.ListDeliveries(None, 0, 1)
                            Expect.equal all.Total (pending + delivered + dead) $"all after {step}"
                        }

                    let! _ =
                        append
                            store
                            [
                                for n in 1..6 ->
                                    { item "wxa" $"m{n}" $"id{n}" with
                                        ReceivedAt = t0.AddSeconds(float n)
                                    }
                            ]

                    // Retries (in the batch and of an earlier one) are not rows, and not counted.
                    let! _ =
                        append store [ item "wxa" "m7" "id7"; item "wxa" "m7" "id8"; item "wxa" "m1" "id9" ]

                    do! expectCounts 7 0 0 "two batches"
                    let! claimed = store.ClaimDeliveries("a", t0.AddHours 1., t0.AddHours 2., 10)
                    Expect.equal claimed.Length 7 "claimed"
                    do! expectCounts 7 0 0 "a claim"
                    do! store.MarkDelivered("id1", t0.AddHours 1., "a")
                    do! store.MarkDelivered("id1", t0.AddHours 1., "a")
                    do! store.MarkFailed("id2", "down", Some(t0.AddHours 3.), "a")
                    do! store.MarkFailed("id3", "gone", None, "a")
                    do! expectCounts 5 1 1 "delivered, failed and dead-lettered"
                    do! store.FoldDeliveryCounts()
                    do! expectCounts 5 1 1 "a fold"

                    do!
                        store.RecordAttempts
                            [
                                DeliveredAt("id4", t0.AddHours 1., "a")
                                FailedAt("id5", "gone", None, "a")
                                DeliveredAt("id5", t0.AddHours 1., "a")
                            ]

                    do! expectCounts 3 3 1 "attempts in one transaction"
                    let! retried = store.RetryDelivery("id3", t0.AddHours 2.)
                    Expect.isTrue retried "retried"
                    do! expectCounts 4 3 0 "a retry"
                    let! purged = store.PurgeDelivered(t0.AddHours 2., 1)
                    Expect.equal purged 1 "purged one"
                    do! expectCounts 4 2 0 "a purge chunk"
                    do! store.FoldDeliveryCounts()
                    do! store.FoldDeliveryCounts()
                    do! expectCounts 4 2 0 "two folds"

                    // Batches from many writers at once, and folds meanwhile.
                    let! _ =
                        Task.WhenAll(
                            [
                                for w in 0..7 ->
                                    task {
                                        for b in 0..4 do
                                            let! _ =
                                                append
                                                    store
                                                    [ for n in 0..9 -> item "wxb" $"w{w}b{b}n{n}" $"w{w}b{b}n{n}" ]

                                            do! store.FoldDeliveryCounts()
                                    }
                                    :> Task
                            ]
                        )

                    do! expectCounts 404 2 0 "concurrent batches and folds"
                }

            testTheoryTask
                "a batch from the intake log keeps every text as given: any script, long or empty"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, connectionString, _ = openFresh provider
                    use store = store
                    // Code points from every plane but the surrogates' range (a decrypted push is
                    // UTF-8 decoded, so it never holds a lone surrogate); every tenth payload past 10,000.
                    let random = Random 18

                    let text (length: int) =
                        let b = StringBuilder()

                        while b.Length < length do
                            let cp =
                                match random.Next 4 with
                                | 0 -> random.Next(0x20, 0x7F)
                                | 1 -> random.Next(0x4E00, 0x9FFF)
                                | 2 -> random.Next(0x1F300, 0x1FAFF)
                                | _ -> random.Next(0xE000, 0x10FFFF)

                            b.Append(Char.ConvertFromUtf32 cp) |> ignore

                        b.ToString()

                    let items =
                        [
                            for i in 0..40 do
                                let length = if i % 10 = 0 then 12_000 else random.Next 300

                                { item "wxa" $"msg:{text 8}" $"ix{i:D2}" with
                                    Tenant = Some(TenantId(text 6))
                                    Kind = text 5
                                    Payload = "<xml>" + text length + "</xml>"
                                }
                            // Empty is empty, not NULL.
                            { item "wxa" "" "ix99" with
                                Tenant = None
                                Kind = ""
                                Payload = ""
                            }
                        ]

                    let failed = FailedAt("ix01", "超时 " + text 20, Some(t0.AddMinutes 1.), "a")
                    let firsts = Collections.Generic.Dictionary<string, AttemptRecord>()
                    firsts["ix01"] <- failed
                    let! outcomes = store.IndexInbox(items, firsts)
                    Expect.equal outcomes (items |> List.map (fun i -> Stored i.Id)) "every item stored"

                    use conn: Data.Common.DbConnection =
                        match provider with
                        | "sqlite" -> new Microsoft.Data.Sqlite.SqliteConnection(connectionString)
                        | _ -> new NpgsqlConnection(connectionString)

                    do! conn.OpenAsync()
                    use cmd = conn.CreateCommand()

                    cmd.CommandText <- "SELECT id, dedupe_key, tenant, kind, payload, last_error FROM inbox ORDER BY id"

                    use! r = cmd.ExecuteReaderAsync()
                    let rows = Collections.Generic.List<_>()

                    let textOf i =
                        if r.IsDBNull i then None else Some(r.GetString i)

                    while r.Read() do
                        rows.Add(r.GetString 0, r.GetString 1, textOf 2, r.GetString 3, r.GetString 4, textOf 5)

                    let expected =
                        items
                        |> List.map (fun i ->
                            let error =
                                match firsts.TryGetValue i.Id with
                                | true, FailedAt(_, e, _, _) -> Some e
                                | _ -> None

                            i.Id, i.DedupeKey, i.Tenant |> Option.map Ids.tenant, i.Kind, i.Payload, error)

                    Expect.sequenceEqual rows expected "each row as given"
                }

            testCaseTask
                "a vacuumed inbox gives a deep page from the list's index alone, without reading the table"
                (fun () ->
                    task {
                        let! store, connectionString, _ = openFresh "postgres"
                        use store = store

                        // Under migration 9's 10,000 rows, so autovacuum leaves this table alone.
                        for b in 0..2 do
                            let! _ =
                                append
                                    store
                                    [
                                        for n in 0..999 ->
                                            { item "wxa" $"b{b}n{n}" $"b{b}n{n}" with
                                                ReceivedAt = t0.AddMilliseconds(float (b * 1000 + n))
                                            }
                                    ]

                            ()

                        // How many rows the skip of a page in the middle read from the table: the plan
                        // the list uses, an index-only scan, with the planner kept from any other.
                        let heapFetches () =
                            task {
                                use conn = new NpgsqlConnection(connectionString)
                                do! conn.OpenAsync()

                                use cmd =
                                    new NpgsqlCommand(
                                        "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM inbox ORDER BY received_at ASC, id ASC LIMIT 100 OFFSET 1400",
                                        conn
                                    )

                                let! plan = cmd.ExecuteScalarAsync()
                                use doc = Text.Json.JsonDocument.Parse(string plan)
                                let scan = doc.RootElement[0].GetProperty("Plan").GetProperty("Plans")[0]

                                Expect.equal
                                    (scan.GetProperty("Node Type").GetString())
                                    "Index Only Scan"
                                    "the list's plan"

                                return scan.GetProperty("Heap Fetches").GetInt64()
                            }

                        let! before = store.ListDeliveries(None, 1400, 100)
                        let! fetched = heapFetches ()
                        Expect.isGreaterThanOrEqual fetched 1500L "before a vacuum, every row skipped is read"

                        let! ran = store.VacuumInbox(Int64.MaxValue, Threading.CancellationToken.None)
                        Expect.isFalse ran "not while fewer rows changed than asked"
                        let! fetched = heapFetches ()
                        Expect.isGreaterThanOrEqual fetched 1500L "still read"

                        let! ran = store.VacuumInbox(0L, Threading.CancellationToken.None)
                        Expect.isTrue ran "vacuumed"
                        let! fetched = heapFetches ()
                        Expect.equal fetched 0L "after it, none"

                        // The worker runs it every ten seconds on the pool's connections, where Npgsql
                        // prepares a statement from its fifth use: a vacuum still runs then.
                        for n in 1..8 do
                            let! again = store.VacuumInbox(0L, Threading.CancellationToken.None)
                            Expect.isTrue again $"run {n + 1}"

                        let! after = store.ListDeliveries(None, 1400, 100)
                        Expect.equal after before "the same page"
                        Expect.equal (after.Items |> List.map _.Id |> List.head) "b1n599" "the 1,401st newest"
                    })

            testCaseTask "SQLite has no vacuum to run for the list" (fun () ->
                task {
                    let! store, _, _ = openFresh "sqlite"
                    use store = store
                    let! _ = append store [ item "wxa" "m1" "id1" ]
                    let! ran = store.VacuumInbox(0L, Threading.CancellationToken.None)
                    Expect.isFalse ran "nothing to do"
                })

            testCaseTask "an inbox that was there before its counts were kept is counted in full" (fun () ->
                task {
                    let! store, connectionString, _ = openFresh "postgres"
                    use store = store

                    let! _ =
                        append store [ item "wxa" "m1" "id1"; item "wxa" "m2" "id2"; item "wxa" "m3" "id3" ]

                    do! store.MarkDelivered("id1", t0, "a")

                    // Back to the schema before migration 10, with the rows left as they are.
                    do!
                        task {
                            use conn = new NpgsqlConnection(connectionString)
                            do! conn.OpenAsync()

                            use cmd =
                                new NpgsqlCommand(
                                    "DROP TABLE inbox_counts; DROP TRIGGER inbox_counted_insert ON inbox; DROP TRIGGER inbox_counted_delete ON inbox; DROP TRIGGER inbox_counted_move ON inbox; DROP FUNCTION inbox_counts_inserted(); DROP FUNCTION inbox_counts_deleted(); DROP FUNCTION inbox_counts_moved(); DELETE FROM schema_version WHERE version = 10",
                                    conn
                                )

                            let! _ = cmd.ExecuteNonQueryAsync()
                            ()
                        }

                    do! store.Migrate()
                    let! pending = store.ListDeliveries(Some Pending, 0, 1)
                    let! delivered = store.ListDeliveries(Some Delivered, 0, 1)
                    Expect.equal (pending.Total, delivered.Total) (2, 1) "counted at the upgrade"
                    let! _ = append store [ item "wxa" "m4" "id4" ]
                    let! all = store.ListDeliveries(None, 0, 1)
                    Expect.equal all.Total 4 "and counted after it"
                })
        ]

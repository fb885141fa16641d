/// The store contract, written once and run against SQLite and a real PostgreSQL server.
module WeChatFs.Tests.SqlStoreTests

open System
open System.IO
open System.Text
open System.Threading.Tasks
open Npgsql
open Xunit
open WeChatFs
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.Tests.Helpers

let private sealer () =
    match Secrets.MasterKey.ofBytes (Array.init 32 byte) with
    | Ok k -> Secrets.Sealer k
    | Error e -> failwith $"{e}"

/// A fresh, migrated store, and how to reach its raw bytes.
let openFresh (provider: string) =
    task {
        let connectionString, file =
            match provider with
            | "sqlite" ->
                let file = Path.Combine(tempFolder (), "store.db")
                $"Data Source={file}", Some file
            | _ -> postgres.Force().NewDatabase(), None

        let store = SqlStore.openStore provider connectionString (sealer ())
        do! store.Migrate()
        return store, connectionString, file
    }

let private appId = ComponentAppId "wxcomponent"
let private t0 = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

let private authorizer (appid: string) tenant =
    {
        AppId = AuthorizerAppId appid
        Tenant = tenant |> Option.map TenantId
        Status = Authorized
        StatusReason = None
        FuncIds = [ 1; 15 ]
        Profile =
            Some
                {
                    NickName = "Shop " + appid
                    HeadImg = "http://img"
                    UserName = "gh_" + appid
                    PrincipalName = "Co."
                    ServiceTypeId = 2
                    VerifyTypeId = 0
                    Kind = OfficialAccount
                }
        RefreshToken = Some(AuthorizerRefreshToken("refreshtoken@@@" + appid))
        AccessToken =
            Some
                {
                    Token = AuthorizerAccessToken("access-" + appid)
                    ExpiresAt = t0.AddHours 2.
                }
        AuthorizedAt = t0
        UpdatedAt = t0
    }

let private item (appid: string) (key: string) (id: string) =
    {
        Id = id
        DedupeKey = key
        AuthorizerAppId = appid
        Tenant = Some "shop"
        Kind = "text"
        ReceivedAt = t0
        Payload = "{}"
        ClaimedBy = None
        ClaimedUntil = None
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``the newest ticket wins and a repeated push changes nothing`` (provider: string) =
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

        Assert.Equal(
            Some
                {
                    Ticket = VerifyTicket "b"
                    ReceivedAt = t0.AddMinutes 10.
                },
            latest
        )

        let! other = store.LatestTicket(ComponentAppId "other")
        Assert.Equal(None, other)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``a component token is invalidated only while it is the current one`` (provider: string) =
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
        Assert.False stale
        let! current = store.ComponentToken appId

        Assert.Equal(
            Some
                { first with
                    Token = ComponentAccessToken "two"
                },
            current
        )

        let! removed = store.InvalidateComponentToken(appId, ComponentAccessToken "two")
        Assert.True removed
        let! gone = store.ComponentToken appId
        Assert.Equal(None, gone)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``leases are exclusive, renewable by their holder and taken over once expired`` (provider: string) =
    task {
        let! store, _, _ = openFresh provider
        use store = store
        let! a = store.TryAcquireLease("x", "A", t0, t0.AddSeconds 30.)
        let! b = store.TryAcquireLease("x", "B", t0.AddSeconds 1., t0.AddSeconds 31.)
        let! renew = store.TryAcquireLease("x", "A", t0.AddSeconds 2., t0.AddSeconds 60.)
        let! bLater = store.TryAcquireLease("x", "B", t0.AddSeconds 40., t0.AddSeconds 70.)
        let! bExpired = store.TryAcquireLease("x", "B", t0.AddSeconds 61., t0.AddSeconds 90.)
        Assert.True a
        Assert.False b
        Assert.True renew
        Assert.False bLater
        Assert.True bExpired
        do! store.ReleaseLease("x", "A")
        let! stillB = store.TryAcquireLease("x", "C", t0.AddSeconds 62., t0.AddSeconds 90.)
        Assert.False stillB
        do! store.ReleaseLease("x", "B")
        let! c = store.TryAcquireLease("x", "C", t0.AddSeconds 62., t0.AddSeconds 90.)
        Assert.True c
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``authorizers are saved, listed with filters and paging, and their tokens managed`` (provider: string) =
    task {
        let! store, _, _ = openFresh provider
        use store = store

        for i in 1..5 do
            do! store.SaveAuthorizer(authorizer $"wx{i}" (if i % 2 = 0 then Some "even" else Some "odd"))

        let! one = store.GetAuthorizer(AuthorizerAppId "wx1")
        Assert.Equal(Some(authorizer "wx1" (Some "odd")), one)

        let! odd =
            store.ListAuthorizers
                {
                    Tenant = Some(TenantId "odd")
                    Status = None
                    Offset = 0
                    Limit = 2
                }

        Assert.Equal(3, odd.Total)
        Assert.Equal<string list>([ "wx1"; "wx3" ], odd.Items |> List.map (fun a -> Ids.authorizerAppId a.AppId))
        let! count = store.CountAuthorizers()
        Assert.Equal(5, count)

        let fresh =
            {
                Token = AuthorizerAccessToken "fresh"
                ExpiresAt = t0.AddHours 4.
            }

        do! store.SaveAuthorizerTokens(AuthorizerAppId "wx2", fresh, AuthorizerRefreshToken "rotated", t0.AddHours 2.)
        let! two = store.GetAuthorizer(AuthorizerAppId "wx2")
        Assert.Equal(Some fresh, two.Value.AccessToken)
        Assert.Equal(Some(AuthorizerRefreshToken "rotated"), two.Value.RefreshToken)

        let! stale =
            store.InvalidateAuthorizerToken(AuthorizerAppId "wx2", AuthorizerAccessToken "access-wx2")

        Assert.False stale

        let! removed =
            store.InvalidateAuthorizerToken(AuthorizerAppId "wx2", AuthorizerAccessToken "fresh")

        Assert.True removed

        // wx2 has no token now: due first; wx1.. expire at t0+2h, due before t0+3h; wx5 revoked is never due.
        do! store.SetAuthorizerStatus(AuthorizerAppId "wx5", Revoked, Some "unauthorized push", t0)
        let! due = store.DueAuthorizers(t0.AddHours 3., 10)
        Assert.Equal<string list>([ "wx2"; "wx1"; "wx3"; "wx4" ], due |> List.map Ids.authorizerAppId)
        let! revoked = store.GetAuthorizer(AuthorizerAppId "wx5")
        Assert.Equal(Revoked, revoked.Value.Status)
        Assert.Equal(None, revoked.Value.RefreshToken)
        Assert.Equal(None, revoked.Value.AccessToken)
        Assert.Equal(Some "unauthorized push", revoked.Value.StatusReason)
        do! store.SetAuthorizerStatus(AuthorizerAppId "wx4", NeedsReauthorization, Some "61023", t0)
        let! needs = store.GetAuthorizer(AuthorizerAppId "wx4")
        Assert.Equal(None, needs.Value.AccessToken)
        Assert.True(needs.Value.RefreshToken.IsSome)

        let! byStatus =
            store.ListAuthorizers
                {
                    Tenant = None
                    Status = Some Revoked
                    Offset = 0
                    Limit = 10
                }

        Assert.Equal(1, byStatus.Total)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``values, secret or not, and events round-trip`` (provider: string) =
    task {
        let! store, _, _ = openFresh provider
        use store = store
        do! store.PutValue("plain", "v1", false)
        do! store.PutValue("plain", "v2", false)
        do! store.PutValue("hidden", "s3cr3t", true)
        let! plain = store.GetValue "plain"
        let! hidden = store.GetValue "hidden"
        let! missing = store.GetValue "missing"
        Assert.Equal(Some "v2", plain)
        Assert.Equal(Some "s3cr3t", hidden)
        Assert.Equal(None, missing)

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
        Assert.Equal<string list>([ "s3"; "s1" ], recent |> List.map (fun e -> e.Subject))
        let! all = store.RecentEvents(None, 2)
        Assert.Equal(2, all.Length)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``old event records are purged oldest first, up to the limit, and newer ones stay`` (provider: string) =
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
        Assert.Equal(1, first)
        let! afterFirst = subjects ()
        Assert.Equal<string list>([ "late"; "old"; "recent" ], afterFirst)
        let! rest = store.PurgeEvents(t0.AddHours 4., 10)
        Assert.Equal(2, rest)
        let! afterAll = subjects ()
        Assert.Equal<string list>([ "recent" ], afterAll)
        let! none = store.PurgeEvents(t0.AddHours 4., 10)
        Assert.Equal(0, none)
    }

let private append (store: IStore) items =
    store.AppendInbox(GroupCommit.Feed.ofList items)

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``the inbox stores a batch at once and recognises retries, also within the batch`` (provider: string) =
    task {
        let! store, _, _ = openFresh provider
        use store = store

        let! first =
            append store [ item "wxa" "m1" "id1"; item "wxa" "m2" "id2"; item "wxa" "m1" "id3" ]

        Assert.Equal<AppendOutcome list>([ Stored "id1"; Stored "id2"; Duplicate "id1" ], first)
        let! again = append store [ item "wxa" "m2" "id4"; item "wxb" "m2" "id5" ]
        Assert.Equal<AppendOutcome list>([ Duplicate "id2"; Stored "id5" ], again)
        let! page = store.ListDeliveries(Some Pending, 0, 10)
        Assert.Equal(3, page.Total)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``deliveries are claimed once, retried with backoff, dead-lettered and retried by hand`` (provider: string) =
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
        Assert.Equal<string list>([ "id1" ], a |> List.map (fun d -> d.Id))
        let! b = store.ClaimDeliveries("B", t0.AddSeconds 1., t0.AddSeconds 30., 10)
        Assert.Empty b
        // The receiver's claim on id2 ran out: another instance may take it.
        let! later = store.ClaimDeliveries("B", t0.AddSeconds 6., t0.AddSeconds 36., 10)
        Assert.Equal<string list>([ "id2" ], later |> List.map (fun d -> d.Id))
        // The receiver's late outcome, after B took its claim over, is left to B.
        do! store.MarkFailed("id2", "timed out", Some(t0.AddSeconds 60.), "receiver")
        do! store.MarkDelivered("id2", t0.AddSeconds 7., "receiver")
        let! stillB = store.GetDelivery "id2"
        Assert.Equal(Pending, stillB.Value.Status)
        Assert.Equal(0, stillB.Value.Attempts)
        do! store.MarkDelivered("id2", t0.AddSeconds 7., "B")
        do! store.MarkFailed("id1", "HTTP 500", Some(t0.AddSeconds 60.), "A")
        let! notYet = store.ClaimDeliveries("C", t0.AddSeconds 40., t0.AddSeconds 70., 10)
        Assert.Empty notYet
        let! due = store.ClaimDeliveries("C", t0.AddSeconds 61., t0.AddSeconds 90., 10)
        Assert.Equal(1, due.Head.Attempts)
        do! store.MarkFailed("id1", "HTTP 500", None, "C")
        let! dead = store.ListDeliveries(Some Dead, 0, 10)
        Assert.Equal<string list>([ "id1" ], dead.Items |> List.map (fun d -> d.Id))
        Assert.Equal(Some "HTTP 500", dead.Items.Head.LastError)
        // A late failure from the instance whose claim on id2 ran out does not undo the delivery.
        do! store.MarkFailed("id2", "timed out", Some(t0.AddSeconds 60.), "receiver")
        let! delivered = store.GetDelivery "id2"
        Assert.Equal(Delivered, delivered.Value.Status)
        Assert.Equal(1, delivered.Value.Attempts)
        let! retried = store.RetryDelivery("id1", t0.AddSeconds 100.)
        let! notRetried = store.RetryDelivery("id2", t0.AddSeconds 100.)
        Assert.True retried
        Assert.False notRetried
        let! back = store.ClaimDeliveries("C", t0.AddSeconds 100., t0.AddSeconds 130., 10)
        Assert.Equal<string list>([ "id1" ], back |> List.map (fun d -> d.Id))
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``claims held before a restart are released for that holder only`` (provider: string) =
    task {
        let! store, _, _ = openFresh provider
        use store = store
        let! _ = append store [ item "wxa" "m1" "id1"; item "wxa" "m2" "id2" ]
        let! a = store.ClaimDeliveries("A", t0, t0.AddSeconds 30., 1)
        let! b = store.ClaimDeliveries("B", t0, t0.AddSeconds 30., 1)
        Assert.Equal(1, a.Length)
        Assert.Equal(1, b.Length)
        let! released = store.ReleaseClaims "A"
        Assert.Equal(1, released)
        let! again = store.ClaimDeliveries("A", t0.AddSeconds 1., t0.AddSeconds 30., 10)
        Assert.Equal<string list>(a |> List.map (fun d -> d.Id), again |> List.map (fun d -> d.Id))
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``only deliveries delivered before the cut-off are purged, first due first and at most max`` (provider: string) =
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
        Assert.Equal(1, first)
        let! gone = store.GetDelivery "id1"
        Assert.True gone.IsNone
        let! rest = store.PurgeDelivered(t0.AddHours 1., 10)
        Assert.Equal(1, rest)
        let! left = store.ListDeliveries(None, 0, 10)
        Assert.Equal<string list>([ "id3"; "id4" ], left.Items |> List.map (fun d -> d.Id) |> List.sort)
        // A dead delivery stays whatever its age.
        let! none = store.PurgeDelivered(t0.AddDays 30., 10)
        Assert.Equal(1, none)
        let! dead = store.ListDeliveries(None, 0, 10)
        Assert.Equal<string list>([ "id4" ], dead.Items |> List.map (fun d -> d.Id))
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``migrating twice is harmless`` (provider: string) =
    task {
        let! store, _, _ = openFresh provider
        use store = store
        do! store.Migrate()
        let! ping = store.Ping()
        Assert.Equal(Ok(), ping)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``a version 1 inbox keeps its messages through the later migrations`` (provider: string) =
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
                SqlStore.sqlite
            else
                SqlStore.postgres

        do! exec "CREATE TABLE schema_version (version INTEGER NOT NULL)"

        for statement in SqlStore.migrations dialect |> List.find (fst >> (=) 1) |> snd do
            do! exec statement

        do! exec "INSERT INTO schema_version (version) VALUES (1)"

        do!
            exec
                "INSERT INTO inbox (id, authorizer_appid, dedupe_key, tenant, kind, received_at, payload, raw_xml, status, attempts, next_attempt_at) VALUES ('old1', 'wxa', 'msg:1', 'shop', 'text', 0, '{}', '<xml/>', 'pending', 0, 0)"

        do! conn.CloseAsync()
        use store = SqlStore.openStore provider connectionString (sealer ())
        do! store.Migrate()
        let! page = store.ListDeliveries(Some Pending, 0, 10)
        Assert.Equal<string list>([ "old1" ], page.Items |> List.map (fun d -> d.Id))
        let! again = append store [ item "wxa" "msg:1" "new1" ]
        Assert.Equal<AppendOutcome list>([ Duplicate "old1" ], again)
    }

[<Fact>]
let ``several instances may migrate one PostgreSQL database at once`` () =
    task {
        let cs = postgres.Force().NewDatabase()
        let stores = List.init 3 (fun _ -> SqlStore.openStore "postgres" cs (sealer ()))
        do! stores |> List.map (fun s -> s.Migrate()) |> Task.WhenAll
        let! count = stores.Head.CountAuthorizers()
        Assert.Equal(0, count)

        for s in stores do
            s.Dispose()
    }

[<Fact>]
let ``on PostgreSQL exactly one of three racing instances takes a lease`` () =
    task {
        let cs = postgres.Force().NewDatabase()
        let stores = List.init 3 (fun _ -> SqlStore.openStore "postgres" cs (sealer ()))
        do! stores.Head.Migrate()

        for round in 1..20 do
            let! wins =
                stores
                |> List.mapi (fun i s -> s.TryAcquireLease($"token-{round}", $"instance-{i}", t0, t0.AddSeconds 30.))
                |> Task.WhenAll

            Assert.Equal(1, wins |> Array.filter id |> Array.length)

        for s in stores do
            s.Dispose()
    }

[<Fact>]
let ``on PostgreSQL concurrent claimers never claim the same delivery`` () =
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
        Assert.Equal(30, all.Length)
        Assert.Equal(30, all |> List.distinct |> List.length)

        for s in stores do
            s.Dispose()
    }

let private secrets =
    [
        "refreshtoken@@@wxsecret"
        "access-wxsecret"
        "ticket@@@secret-ticket"
        "component-secret-token"
        "kv-secret-value"
    ]

let private saveSecrets (store: IStore) =
    task {
        do! store.SaveAuthorizer(authorizer "wxsecret" None)

        do!
            store.SaveTicket(
                appId,
                {
                    Ticket = VerifyTicket "ticket@@@secret-ticket"
                    ReceivedAt = t0
                }
            )

        do!
            store.SaveComponentToken(
                appId,
                {
                    Token = ComponentAccessToken "component-secret-token"
                    ExpiresAt = t0
                }
            )

        do! store.PutValue("k", "kv-secret-value", true)
    }

[<Fact>]
let ``no secret is in clear in the SQLite files`` () =
    task {
        let! store, _, file = openFresh "sqlite"
        do! saveSecrets store
        let! back = store.GetAuthorizer(AuthorizerAppId "wxsecret")
        Assert.Equal(Some(AuthorizerRefreshToken "refreshtoken@@@wxsecret"), back.Value.RefreshToken)
        store.Dispose()

        let contents =
            [ file.Value; file.Value + "-wal" ]
            |> List.filter File.Exists
            |> List.map (File.ReadAllBytes >> Encoding.Latin1.GetString)
            |> String.concat ""

        Assert.Contains("wxsecret", contents)

        for secret in secrets do
            Assert.DoesNotContain(secret, contents)
    }

[<Fact>]
let ``no secret is in clear in the PostgreSQL tables`` () =
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

        Assert.Contains("wxsecret", contents)

        for secret in secrets do
            Assert.DoesNotContain(secret, contents)
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``an import never overwrites an authorizer stored meanwhile`` (provider: string) =
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

        Assert.False added
        let! back = store.GetAuthorizer(AuthorizerAppId "wx1")
        Assert.Equal(Some stored, back)
        let! addedNew = store.AddAuthorizerIfAbsent(authorizer "wx2" None)
        Assert.True addedNew
    }

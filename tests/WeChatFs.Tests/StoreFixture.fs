/// What every store test starts from: a fresh migrated store on SQLite or PostgreSQL (and how to
/// reach its raw bytes), a fixed sealer, and sample authorizers, inbox items and secrets.
module WeChatFs.Tests.StoreFixture

open System
open System.IO
open WeChatFs
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.Tests.Helpers

let sealer () =
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

let appId = ComponentAppId "wxcomponent"
let t0 = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

let authorizer (appid: string) tenant =
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

let item (appid: string) (key: string) (id: string) =
    {
        Id = id
        DedupeKey = key
        AuthorizerAppId = AuthorizerAppId appid
        Tenant = Some(TenantId "shop")
        Kind = "text"
        ReceivedAt = t0
        Payload = "{}"
        ClaimedBy = None
        ClaimedUntil = None
    }

let append (store: IStore) items =
    store.AppendInbox(GroupCommit.Feed.ofList items)

let secrets =
    [
        "refreshtoken@@@wxsecret"
        "access-wxsecret"
        "ticket@@@secret-ticket"
        "component-secret-token"
        "kv-secret-value"
    ]

let saveSecrets (store: IStore) =
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

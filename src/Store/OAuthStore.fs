/// Where web pages on behalf of accounts keep their state, in the gateway's own database (SQLite or
/// PostgreSQL, schema in SqlStore's migration 5): funcKey routes, followers (their OAuth refresh
/// token sealed), wxTkId tracking tokens (only their hash), used OAuth codes (hashed), jsapi_tickets
/// (sealed) and domain verification files.
module WeChatFs.OAuthStore

open System
open System.Data.Common
open System.Text.Json
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.OAuth
open WeChatFs.SqlAccess

/// What sns/userinfo tells about a follower (facts §7 step 4).
type FollowerProfile =
    {
        NickName: string
        Sex: int
        Province: string
        City: string
        Country: string
        HeadImgUrl: string
        Privilege: string list
    }

type Follower =
    {
        AuthorizerAppId: AuthorizerAppId
        OpenId: OpenId
        UnionId: string option
        /// The scope of the latest consent.
        Scope: OAuthScope
        /// None until a snsapi_userinfo consent; a later snsapi_base visit keeps it.
        Profile: FollowerProfile option
        /// The 30-day OAuth refresh token (sealed at rest).
        RefreshToken: string option
        RefreshExpiresAt: DateTimeOffset option
        FirstSeenAt: DateTimeOffset
        UpdatedAt: DateTimeOffset
    }

/// What a wxTkId stands for, until it expires.
type TrackedVisit =
    {
        AuthorizerAppId: AuthorizerAppId
        OpenId: OpenId
        UnionId: string option
        Tenant: TenantId option
        FuncKey: FuncKey
        Scope: OAuthScope
        NickName: string option
        HeadImgUrl: string option
        ExpiresAt: DateTimeOffset
    }

type StoredRoute =
    {
        Route: FuncKeyRoute
        /// "api" or "configuration" (re-seeded at every start).
        Source: string
        UpdatedAt: DateTimeOffset
    }

type VerificationFile =
    {
        Name: string
        Content: string
        UpdatedAt: DateTimeOffset
    }

type IOAuthStore =
    abstract SaveFuncKey: FuncKeyRoute * source: string * now: DateTimeOffset -> Task
    abstract GetFuncKey: funcKey: FuncKey -> Task<StoredRoute option>
    abstract ListFuncKeys: unit -> Task<StoredRoute list>
    abstract DeleteFuncKey: funcKey: FuncKey -> Task<bool>
    /// Inserts or updates; a missing profile or unionid keeps the stored one.
    abstract SaveFollower: Follower -> Task
    abstract GetFollower: AuthorizerAppId * openId: OpenId -> Task<Follower option>
    abstract SaveTrackingToken: tokenHash: string * TrackedVisit -> Task
    /// The visit while it has not expired at `now`.
    abstract GetTrackingToken: tokenHash: string * now: DateTimeOffset -> Task<TrackedVisit option>
    /// Deletes up to `max` tracking tokens expired before `now`; answers how many went.
    abstract PurgeTrackingTokens: now: DateTimeOffset * max: int -> Task<int>
    /// Marks an OAuth code as used; false when it already was (a reload): no second exchange.
    abstract ClaimCode: codeHash: string * now: DateTimeOffset -> Task<bool>
    /// Gives a code back when WeChat never saw it (WeChat unreachable), so a reload may try again.
    abstract ReleaseCode: codeHash: string -> Task
    abstract SaveJsApiTicket: AuthorizerAppId * Expiring<string> -> Task
    abstract JsApiTicket: AuthorizerAppId -> Task<Expiring<string> option>
    abstract PutVerificationFile: name: string * content: string * now: DateTimeOffset -> Task
    abstract GetVerificationFile: name: string -> Task<string option>
    abstract ListVerificationFiles: unit -> Task<VerificationFile list>
    abstract DeleteVerificationFile: name: string -> Task<bool>

/// OAuth codes live about 5 minutes (facts §7); a used one is remembered a day, then forgotten.
let private codeMemory = TimeSpan.FromDays 1.

let private profileJson (p: FollowerProfile) =
    JsonSerializer.Serialize
        {|
            nickname = p.NickName
            sex = p.Sex
            province = p.Province
            city = p.City
            country = p.Country
            headimgurl = p.HeadImgUrl
            privilege = p.Privilege
        |}

let private readProfile (json: string) =
    use doc = JsonDocument.Parse json
    let r = doc.RootElement

    let s (n: string) =
        match r.TryGetProperty n with
        | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
        | _ -> ""

    {
        NickName = s "nickname"
        Sex =
            match r.TryGetProperty "sex" with
            | true, v when v.ValueKind = JsonValueKind.Number -> v.GetInt32()
            | _ -> 0
        Province = s "province"
        City = s "city"
        Country = s "country"
        HeadImgUrl = s "headimgurl"
        Privilege =
            match r.TryGetProperty "privilege" with
            | true, v when v.ValueKind = JsonValueKind.Array -> [ for x in v.EnumerateArray() -> x.ToString() ]
            | _ -> []
    }

let private scopeOf (text: string) =
    OAuthScope.ofText text |> Option.defaultValue SnsapiBase

let private nullable (v: string option) = Option.toObj v |> box

type private SqlOAuthStore(access: ISqlAccess) =
    let run (work: DbConnection -> Task<'a>) = access.Run work
    let sealer = access.Sealer

    let unseal = unseal sealer "OAuth value"

    let readRoute (r: DbDataReader) =
        {
            Route =
                {
                    FuncKey = r.GetString 0
                    TargetUrl = Uri(r.GetString 1)
                    Scope = scopeOf (r.GetString 2)
                    Description = text r 3
                    Tenant = text r 4 |> Option.map TenantId
                }
            Source = r.GetString 5
            UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 6))
        }

    let routeColumns =
        "func_key, target_url, scope, description, tenant, source, updated_at"

    interface IOAuthStore with
        member _.SaveFuncKey(r, source, now) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO oauth_func_keys (func_key, target_url, scope, description, tenant, source, updated_at) VALUES (@k, @u, @s, @d, @t, @src, @at) ON CONFLICT (func_key) DO UPDATE SET target_url = excluded.target_url, scope = excluded.scope, description = excluded.description, tenant = excluded.tenant, source = excluded.source, updated_at = excluded.updated_at"
                    [
                        "@k", box r.FuncKey
                        "@u", box (r.TargetUrl.ToString())
                        "@s", box (OAuthScope.toText r.Scope)
                        "@d", nullable r.Description
                        "@t", nullable (r.Tenant |> Option.map Ids.tenant)
                        "@src", box source
                        "@at", box (ms now)
                    ])
            :> Task

        member _.GetFuncKey(FuncKey funcKey) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    $"SELECT {routeColumns} FROM oauth_func_keys WHERE func_key = @k"
                    [ "@k", box funcKey ]
                    readRoute)

        member _.ListFuncKeys() =
            run (fun conn ->
                query conn null $"SELECT {routeColumns} FROM oauth_func_keys ORDER BY func_key" [] readRoute)

        member _.DeleteFuncKey(FuncKey funcKey) =
            task {
                let! n =
                    run (fun conn ->
                        exec conn null "DELETE FROM oauth_func_keys WHERE func_key = @k" [ "@k", box funcKey ])

                return n > 0
            }

        member _.SaveFollower(f) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO oauth_followers (authorizer_appid, openid, unionid, scope, profile, refresh_token, refresh_expires_at, first_seen_at, updated_at) VALUES (@a, @o, @u, @s, @p, @r, @re, @first, @at) ON CONFLICT (authorizer_appid, openid) DO UPDATE SET unionid = COALESCE(excluded.unionid, oauth_followers.unionid), scope = excluded.scope, profile = COALESCE(excluded.profile, oauth_followers.profile), refresh_token = COALESCE(excluded.refresh_token, oauth_followers.refresh_token), refresh_expires_at = COALESCE(excluded.refresh_expires_at, oauth_followers.refresh_expires_at), updated_at = excluded.updated_at"
                    [
                        "@a", box (Ids.authorizerAppId f.AuthorizerAppId)
                        "@o", box (Ids.openId f.OpenId)
                        "@u", nullable f.UnionId
                        "@s", box (OAuthScope.toText f.Scope)
                        "@p", nullable (f.Profile |> Option.map profileJson)
                        "@r", nullable (f.RefreshToken |> Option.map sealer.Seal)
                        "@re", f.RefreshExpiresAt |> Option.map (fun t -> box (ms t)) |> Option.toObj
                        "@first", box (ms f.FirstSeenAt)
                        "@at", box (ms f.UpdatedAt)
                    ])
            :> Task

        member _.GetFollower(AuthorizerAppId appid, OpenId openId) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    "SELECT authorizer_appid, openid, unionid, scope, profile, refresh_token, refresh_expires_at, first_seen_at, updated_at FROM oauth_followers WHERE authorizer_appid = @a AND openid = @o"
                    [ "@a", box appid; "@o", box openId ]
                    (fun r ->
                        {
                            AuthorizerAppId = AuthorizerAppId(r.GetString 0)
                            OpenId = OpenId(r.GetString 1)
                            UnionId = text r 2
                            Scope = scopeOf (r.GetString 3)
                            Profile = text r 4 |> Option.map readProfile
                            RefreshToken = text r 5 |> Option.map unseal
                            RefreshExpiresAt = int64Of r 6 |> Option.map ofMs
                            FirstSeenAt = ofMs (Convert.ToInt64(r.GetValue 7))
                            UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 8))
                        }))

        member _.SaveTrackingToken(hash, v) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO oauth_tracking_tokens (token_hash, authorizer_appid, openid, unionid, tenant, func_key, scope, nickname, headimgurl, expires_at) VALUES (@h, @a, @o, @u, @t, @k, @s, @n, @img, @exp)"
                    [
                        "@h", box hash
                        "@a", box (Ids.authorizerAppId v.AuthorizerAppId)
                        "@o", box (Ids.openId v.OpenId)
                        "@u", nullable v.UnionId
                        "@t", nullable (v.Tenant |> Option.map Ids.tenant)
                        "@k", box (Ids.funcKey v.FuncKey)
                        "@s", box (OAuthScope.toText v.Scope)
                        "@n", nullable v.NickName
                        "@img", nullable v.HeadImgUrl
                        "@exp", box (ms v.ExpiresAt)
                    ])
            :> Task

        member _.GetTrackingToken(hash, now) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    "SELECT authorizer_appid, openid, unionid, tenant, func_key, scope, nickname, headimgurl, expires_at FROM oauth_tracking_tokens WHERE token_hash = @h AND expires_at > @now"
                    [ "@h", box hash; "@now", box (ms now) ]
                    (fun r ->
                        {
                            AuthorizerAppId = AuthorizerAppId(r.GetString 0)
                            OpenId = OpenId(r.GetString 1)
                            UnionId = text r 2
                            Tenant = text r 3 |> Option.map TenantId
                            FuncKey = FuncKey(r.GetString 4)
                            Scope = scopeOf (r.GetString 5)
                            NickName = text r 6
                            HeadImgUrl = text r 7
                            ExpiresAt = ofMs (Convert.ToInt64(r.GetValue 8))
                        }))

        member _.PurgeTrackingTokens(now, max) =
            run (fun conn ->
                exec
                    conn
                    null
                    "DELETE FROM oauth_tracking_tokens WHERE token_hash IN (SELECT token_hash FROM oauth_tracking_tokens WHERE expires_at <= @now ORDER BY expires_at LIMIT @max)"
                    [ "@now", box (ms now); "@max", box (int64 max) ])

        member _.ClaimCode(hash, now) =
            task {
                let! n =
                    run (fun conn ->
                        task {
                            let! _ =
                                exec
                                    conn
                                    null
                                    "DELETE FROM oauth_codes WHERE used_at < @before"
                                    [ "@before", box (ms (now - codeMemory)) ]

                            return!
                                exec
                                    conn
                                    null
                                    "INSERT INTO oauth_codes (code_hash, used_at) VALUES (@h, @at) ON CONFLICT (code_hash) DO NOTHING"
                                    [ "@h", box hash; "@at", box (ms now) ]
                        })

                return n = 1
            }

        member _.ReleaseCode(hash) =
            run (fun conn -> exec conn null "DELETE FROM oauth_codes WHERE code_hash = @h" [ "@h", box hash ]) :> Task

        member _.SaveJsApiTicket(AuthorizerAppId appid, t) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO jsapi_tickets (authorizer_appid, ticket, expires_at) VALUES (@a, @t, @exp) ON CONFLICT (authorizer_appid) DO UPDATE SET ticket = excluded.ticket, expires_at = excluded.expires_at"
                    [
                        "@a", box appid
                        "@t", box (sealer.Seal t.Token)
                        "@exp", box (ms t.ExpiresAt)
                    ])
            :> Task

        member _.JsApiTicket(AuthorizerAppId appid) =
            run (fun conn ->
                tryOne
                    conn
                    null
                    "SELECT ticket, expires_at FROM jsapi_tickets WHERE authorizer_appid = @a"
                    [ "@a", box appid ]
                    (fun r ->
                        {
                            Token = unseal (r.GetString 0)
                            ExpiresAt = ofMs (Convert.ToInt64(r.GetValue 1))
                        }))

        member _.PutVerificationFile(name, content, now) =
            run (fun conn ->
                exec
                    conn
                    null
                    "INSERT INTO verification_files (name, content, updated_at) VALUES (@n, @c, @at) ON CONFLICT (name) DO UPDATE SET content = excluded.content, updated_at = excluded.updated_at"
                    [ "@n", box name; "@c", box content; "@at", box (ms now) ])
            :> Task

        member _.GetVerificationFile(name) =
            run (fun conn ->
                tryOne conn null "SELECT content FROM verification_files WHERE name = @n" [ "@n", box name ] (fun r ->
                    r.GetString 0))

        member _.ListVerificationFiles() =
            run (fun conn ->
                query conn null "SELECT name, content, updated_at FROM verification_files ORDER BY name" [] (fun r ->
                    {
                        Name = r.GetString 0
                        Content = r.GetString 1
                        UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 2))
                    }))

        member _.DeleteVerificationFile(name) =
            task {
                let! n =
                    run (fun conn -> exec conn null "DELETE FROM verification_files WHERE name = @n" [ "@n", box name ])

                return n > 0
            }

/// The OAuth store on the same database as `store` (which must come from SqlStore.openStore).
let over (store: Store.IStore) : IOAuthStore =
    match box store with
    | :? ISqlAccess as access -> SqlOAuthStore(access)
    | _ -> invalidArg "store" "the OAuth store needs the SQL store (SqlStore.openStore)"

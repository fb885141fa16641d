/// The authorizers table: one row per authorized account, its profile as JSON (no secrets in it), its
/// tokens sealed with a hash beside the access token (to forget exactly the token that failed).
module WeChatFs.AuthorizerRows

open System
open System.Data.Common
open System.Text.Json
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.SqlAccess

// ---- profile as JSON (no secrets in it) --------------------------------------------------------

let private profileJson (p: AuthorizerProfile) =
    JsonSerializer.Serialize
        {|
            nick_name = p.NickName
            head_img = p.HeadImg
            user_name = p.UserName
            principal_name = p.PrincipalName
            service_type = p.ServiceTypeId
            verify_type = p.VerifyTypeId
            kind = AuthorizerKind.toText p.Kind
        |}

let private readProfile (json: string) =
    use doc = JsonDocument.Parse json
    let r = doc.RootElement
    let s (n: string) = r.GetProperty(n).GetString()

    {
        NickName = s "nick_name"
        HeadImg = s "head_img"
        UserName = s "user_name"
        PrincipalName = s "principal_name"
        ServiceTypeId = r.GetProperty("service_type").GetInt32()
        VerifyTypeId = r.GetProperty("verify_type").GetInt32()
        Kind = AuthorizerKind.ofText (s "kind")
    }

// ---- rows --------------------------------------------------------------------------------------

let private columns =
    "appid, tenant, status, status_reason, func_ids, profile, refresh_token, access_token, access_expires_at, authorized_at, updated_at"

/// The access token in column `at`, its expiry in the next.
let private readAccessToken (sealer: Secrets.Sealer) (r: DbDataReader) (at: int) =
    match text r at, int64Of r (at + 1) with
    | Some t, Some exp ->
        Some
            {
                Token = AuthorizerAccessToken(unseal sealer "access token" t)
                ExpiresAt = ofMs exp
            }
    | _ -> None

let private read (sealer: Secrets.Sealer) (r: DbDataReader) =
    {
        AppId = AuthorizerAppId(r.GetString 0)
        Tenant = text r 1 |> Option.map TenantId
        Status =
            AuthorizerStatus.ofText (r.GetString 2)
            |> Option.defaultValue NeedsReauthorization
        StatusReason = text r 3
        FuncIds =
            (r.GetString 4).Split(',', StringSplitOptions.RemoveEmptyEntries)
            |> Array.choose (fun s ->
                match Int32.TryParse s with
                | true, n -> Some n
                | _ -> None)
            |> List.ofArray
        Profile = text r 5 |> Option.map readProfile
        RefreshToken = text r 6 |> Option.map (unseal sealer "refresh token" >> AuthorizerRefreshToken)
        AccessToken = readAccessToken sealer r 7
        AuthorizedAt = ofMs (r.GetInt64 9)
        UpdatedAt = ofMs (r.GetInt64 10)
    }

/// Upsert (`replace`) or insert-if-absent; the number of rows written.
let write (access: ISqlAccess) (a: Authorizer) (replace: bool) =
    let sealer = access.Sealer

    let conflict =
        if replace then
            "DO UPDATE SET tenant = excluded.tenant, status = excluded.status, status_reason = excluded.status_reason, func_ids = excluded.func_ids, profile = excluded.profile, refresh_token = excluded.refresh_token, access_token = excluded.access_token, access_expires_at = excluded.access_expires_at, authorized_at = excluded.authorized_at, updated_at = excluded.updated_at, access_token_hash = excluded.access_token_hash"
        else
            "DO NOTHING"

    let accessToken = a.AccessToken |> Option.map (fun t -> Ids.authorizerToken t.Token)

    execute
        access
        $"INSERT INTO authorizers ({columns}, access_token_hash) VALUES (@appid, @tenant, @status, @reason, @funcs, @profile, @refresh, @access, @exp, @authorized, @updated, @hash) ON CONFLICT (appid) {conflict}"
        [
            "@appid", box (Ids.authorizerAppId a.AppId)
            "@tenant", a.Tenant |> Option.map (Ids.tenant >> box) |> Option.toObj
            "@status", box (AuthorizerStatus.toText a.Status)
            "@reason", a.StatusReason |> Option.map box |> Option.toObj
            "@funcs", box (a.FuncIds |> List.map string |> String.concat ",")
            "@profile", a.Profile |> Option.map (profileJson >> box) |> Option.toObj
            "@refresh",
            a.RefreshToken
            |> Option.map (Ids.refreshToken >> sealer.Seal >> box)
            |> Option.toObj
            "@access", accessToken |> Option.map (sealer.Seal >> box) |> Option.toObj
            "@exp", a.AccessToken |> Option.map (fun t -> t.ExpiresAt) |> optionalMs
            "@authorized", box (ms a.AuthorizedAt)
            "@updated", box (ms a.UpdatedAt)
            "@hash", accessToken |> Option.map (hashOf >> box) |> Option.toObj
        ]

let get (access: ISqlAccess) (AuthorizerAppId appid) =
    lookup access $"SELECT {columns} FROM authorizers WHERE appid = @a" [ "@a", box appid ] (read access.Sealer)

let list (access: ISqlAccess) (q: AuthorizerQuery) =
    let filter =
        whereOf
            [
                q.Tenant
                |> Option.map (fun t -> "tenant = @tenant", ("@tenant", box (Ids.tenant t)))
                q.Status
                |> Option.map (fun s -> "status = @status", ("@status", box (AuthorizerStatus.toText s)))
            ]

    page access "authorizers" columns filter "appid" (q.Offset, q.Limit) (read access.Sealer)

let saveTokens
    (access: ISqlAccess)
    (AuthorizerAppId appid)
    (token: Expiring<AuthorizerAccessToken>)
    (refresh: AuthorizerRefreshToken)
    (now: DateTimeOffset)
    =
    let value = Ids.authorizerToken token.Token

    execute
        access
        "UPDATE authorizers SET access_token = @access, access_token_hash = @hash, access_expires_at = @exp, refresh_token = @refresh, updated_at = @now WHERE appid = @a"
        [
            "@access", box (access.Sealer.Seal value)
            "@hash", box (hashOf value)
            "@exp", box (ms token.ExpiresAt)
            "@refresh", box (access.Sealer.Seal(Ids.refreshToken refresh))
            "@now", box (ms now)
            "@a", box appid
        ]
    :> Task

/// Forgets the access token only if it is still the one that failed; true when it was.
let invalidateToken (access: ISqlAccess) (AuthorizerAppId appid) (AuthorizerAccessToken failed) =
    task {
        let! n =
            execute
                access
                "UPDATE authorizers SET access_token = NULL, access_token_hash = NULL, access_expires_at = NULL WHERE appid = @a AND access_token_hash = @h"
                [ "@a", box appid; "@h", box (hashOf failed) ]

        return n > 0
    }

let setStatus
    (access: ISqlAccess)
    (AuthorizerAppId appid)
    (status: AuthorizerStatus)
    (reason: string option)
    (now: DateTimeOffset)
    =
    let clearRefresh =
        match status with
        | Revoked -> ", refresh_token = NULL"
        | Authorized
        | NeedsReauthorization -> ""

    let clearAccess =
        match status with
        | Revoked
        | NeedsReauthorization -> ", access_token = NULL, access_token_hash = NULL, access_expires_at = NULL"
        | Authorized -> ""

    execute
        access
        $"UPDATE authorizers SET status = @s, status_reason = @r, updated_at = @now{clearAccess}{clearRefresh} WHERE appid = @a"
        [
            "@s", box (AuthorizerStatus.toText status)
            "@r", reason |> Option.map box |> Option.toObj
            "@now", box (ms now)
            "@a", box appid
        ]
    :> Task

let due (access: ISqlAccess) (before: DateTimeOffset) (limit: int) =
    queryAll
        access
        "SELECT appid FROM authorizers WHERE status = 'authorized' AND refresh_token IS NOT NULL AND (access_expires_at IS NULL OR access_expires_at < @before) ORDER BY COALESCE(access_expires_at, 0), appid LIMIT @limit"
        [ "@before", box (ms before); "@limit", box (int64 limit) ]
        (fun r -> AuthorizerAppId(r.GetString 0))

let after (access: ISqlAccess) (after: AuthorizerAppId option) (count: int) =
    queryAll
        access
        "SELECT appid, status, access_token, access_expires_at FROM authorizers WHERE appid > @after ORDER BY appid LIMIT @count"
        [
            "@after", box (after |> Option.map Ids.authorizerAppId |> Option.defaultValue "")
            "@count", box (int64 count)
        ]
        (fun r ->
            {
                Account = AuthorizerAppId(r.GetString 0)
                State =
                    AuthorizerStatus.ofText (r.GetString 1)
                    |> Option.defaultValue NeedsReauthorization
                Current = readAccessToken access.Sealer r 2
            })

let count (access: ISqlAccess) =
    task {
        let! n =
            access.Run(fun conn -> scalar conn null "SELECT COUNT(*) FROM authorizers" [])

        return Convert.ToInt32 n
    }

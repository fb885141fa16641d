/// The component's rows and the small shared state: the latest verify ticket and the component token
/// (both sealed), the leases instances take turns with, the key-value table, and the typed domain
/// state (IDomainState) kept in it under the keys its earlier string users wrote.
module WeChatFs.ComponentRows

open System
open System.Security.Cryptography
open System.Text
open System.Text.Json
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.SqlAccess

// ---- component ----

let saveTicket (access: ISqlAccess) (ComponentAppId appid) (t: ReceivedTicket) =
    execute
        access
        "INSERT INTO tickets (component_appid, ticket, received_at) VALUES (@a, @t, @at) ON CONFLICT (component_appid) DO UPDATE SET ticket = excluded.ticket, received_at = excluded.received_at WHERE tickets.received_at <= excluded.received_at"
        [
            "@a", box appid
            "@t", box (access.Sealer.Seal(Ids.ticket t.Ticket))
            "@at", box (ms t.ReceivedAt)
        ]
    :> Task

let latestTicket (access: ISqlAccess) (ComponentAppId appid) =
    lookup access "SELECT ticket, received_at FROM tickets WHERE component_appid = @a" [ "@a", box appid ] (fun r ->
        {
            Ticket = VerifyTicket(unseal access.Sealer "ticket" (r.GetString 0))
            ReceivedAt = ofMs (r.GetInt64 1)
        })

let saveComponentToken (access: ISqlAccess) (ComponentAppId appid) (t: Expiring<ComponentAccessToken>) =
    let value = Ids.componentToken t.Token

    execute
        access
        "INSERT INTO component_tokens (component_appid, token, token_hash, expires_at) VALUES (@a, @t, @h, @e) ON CONFLICT (component_appid) DO UPDATE SET token = excluded.token, token_hash = excluded.token_hash, expires_at = excluded.expires_at"
        [
            "@a", box appid
            "@t", box (access.Sealer.Seal value)
            "@h", box (hashOf value)
            "@e", box (ms t.ExpiresAt)
        ]
    :> Task

let componentToken (access: ISqlAccess) (ComponentAppId appid) =
    lookup
        access
        "SELECT token, expires_at FROM component_tokens WHERE component_appid = @a"
        [ "@a", box appid ]
        (fun r ->
            {
                Token = ComponentAccessToken(unseal access.Sealer "component token" (r.GetString 0))
                ExpiresAt = ofMs (r.GetInt64 1)
            })

/// Forgets the token only if it is still the one that failed; true when it was.
let invalidateComponentToken (access: ISqlAccess) (ComponentAppId appid) (ComponentAccessToken failed) =
    task {
        let! n =
            execute
                access
                "DELETE FROM component_tokens WHERE component_appid = @a AND token_hash = @h"
                [ "@a", box appid; "@h", box (hashOf failed) ]

        return n > 0
    }

// ---- leases ----

let tryAcquireLease (access: ISqlAccess) (name: string) (holder: string) (now: DateTimeOffset) (until: DateTimeOffset) =
    task {
        let! n =
            execute
                access
                "INSERT INTO leases (name, holder, expires_at) VALUES (@n, @h, @u) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at WHERE leases.expires_at <= @now OR leases.holder = excluded.holder"
                [ "@n", box name; "@h", box holder; "@u", box (ms until); "@now", box (ms now) ]

        return n > 0
    }

let releaseLease (access: ISqlAccess) (name: string) (holder: string) =
    execute access "DELETE FROM leases WHERE name = @n AND holder = @h" [ "@n", box name; "@h", box holder ] :> Task

/// The lease name and holder an authorization state's mark has always been kept under: the state
/// and the code hashed (16 bytes of SHA-256), so neither appears in the table.
let private stateMark (prefix: string) (value: string) =
    prefix
    + (SHA256.HashData(Encoding.UTF8.GetBytes value)[..15] |> Convert.ToHexStringLower)

/// An authorization state made single-use: a lease named after the state, held by the code.
let claimStateUse
    (access: ISqlAccess)
    (state: string)
    (AuthorizationCode code)
    (now: DateTimeOffset)
    (until: DateTimeOffset)
    =
    tryAcquireLease access (stateMark "state-used:" state) (stateMark "" code) now until

// ---- values ----

let putValue (access: ISqlAccess) (key: string) (value: string) (secret: bool) =
    execute
        access
        "INSERT INTO kv (key, value, secret) VALUES (@k, @v, @s) ON CONFLICT (key) DO UPDATE SET value = excluded.value, secret = excluded.secret"
        [
            "@k", box key
            "@v", box (if secret then access.Sealer.Seal value else value)
            "@s", box (if secret then 1L else 0L)
        ]
    :> Task

let getValue (access: ISqlAccess) (key: string) =
    lookup access "SELECT value, secret FROM kv WHERE key = @k" [ "@k", box key ] (fun r ->
        let v = r.GetString 0

        if Convert.ToInt64(r.GetValue 1) = 1L then
            unseal access.Sealer "value" v
        else
            v)

// ---- typed domain state, in the value table ---------------------------------------------------

/// Codes are hashed so no code appears in a key.
let private hashKey (prefix: string) (value: string) =
    prefix
    + (SHA256.HashData(Encoding.UTF8.GetBytes value)[..11] |> Convert.ToHexStringLower)

let private preAuthKey (PreAuthCode code) = hashKey "preauth:" code
let private exchangedCodeKey (AuthorizationCode code) = hashKey "authcode:" code

/// The lease one instance holds while it exchanges a code with api_query_auth (hashed like the key).
let exchangeLeaseName (AuthorizationCode code) = hashKey "exchange:" code

/// The key of an account's latest authorization code (the full-network release check reads it).
let latestCodeKey (AuthorizerAppId appid) = "lastcode:" + appid
let private rejectedTicketKey = "component:rejected_ticket_at"
let private lastErrorKey = "component:last_error"

/// A stored value read back as its type.
let private getAs access key wrap =
    task {
        let! v = getValue access key
        return v |> Option.map wrap
    }

let rememberPreAuthTenant access code (TenantId tenant) =
    putValue access (preAuthKey code) tenant false

let preAuthTenant access code = getAs access (preAuthKey code) TenantId

let recordExchangedCode access code (AuthorizerAppId appid) =
    putValue access (exchangedCodeKey code) appid false

let exchangedCode access code =
    getAs access (exchangedCodeKey code) AuthorizerAppId

let saveLatestCode access appid (AuthorizationCode code) =
    putValue access (latestCodeKey appid) code true

let latestCode access appid =
    getAs access (latestCodeKey appid) AuthorizationCode

let saveRejectedTicket access (marker: int64) =
    putValue access rejectedTicketKey (string marker) false

let rejectedTicket access =
    task {
        let! v = getValue access rejectedTicketKey

        return
            v
            |> Option.bind (fun r ->
                match Int64.TryParse r with
                | true, n -> Some n
                | _ -> None)
    }

let saveComponentError access (errcode: int option) (message: string) (at: DateTimeOffset) =
    let value =
        JsonSerializer.Serialize
            {|
                errcode = errcode |> Option.toNullable
                message = message
                at = at
            |}

    putValue access lastErrorKey value false

let componentError access =
    task {
        let! raw = getValue access lastErrorKey

        return
            raw
            |> Option.bind (fun r ->
                try
                    use doc = JsonDocument.Parse r
                    let root = doc.RootElement

                    let errcode =
                        match root.TryGetProperty "errcode" with
                        | true, v when v.ValueKind = JsonValueKind.Number -> Some(v.GetInt32())
                        | _ -> None

                    Some(errcode, root.GetProperty("message").GetString(), root.GetProperty("at").GetDateTimeOffset())
                with _ ->
                    None)
    }

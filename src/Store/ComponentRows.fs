/// The component's rows and the small shared state: the latest verify ticket and the component token
/// (both sealed), the leases instances take turns with, and the key-value table.
module WeChatFs.ComponentRows

open System
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

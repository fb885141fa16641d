/// The two push URLs' common first step (size, outer XML, signature, decryption) and the
/// authorization event URL's workflow: a push in, an outcome out, which the edge only turns into
/// the HTTP answer. The ticket is durable before the outcome says `success`.
module WeChatFs.Pushes

open System
open System.Text
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.ComponentTokens

/// What a push request carries besides the path: the query's signature fields and the body, as
/// read (a struct, so that handing it over costs nothing).
[<Struct>]
type SignedPush =
    {
        Timestamp: string
        Nonce: string
        MsgSignature: string
        Body: byte[]
    }

/// The key material a push is opened with.
type PushKeys =
    {
        Token: string
        AesKeys: Crypto.AesKey list
        ComponentAppId: ComponentAppId
    }

/// Outer XML → signature → decrypt. The signature is checked before any decryption, so a forged
/// push costs one SHA-1 and stores nothing. Error: the status and reason to refuse it with.
let openPush (keys: PushKeys) (push: SignedPush) : Result<string * Crypto.AesKey, int * string> =
    match Wire.encryptedPart (Encoding.UTF8.GetString push.Body) with
    | Error e -> Error(400, Wire.describe e)
    | Ok encrypted ->
        let envelope: Crypto.Envelope =
            {
                Timestamp = push.Timestamp
                Nonce = push.Nonce
                MsgSignature = push.MsgSignature
                Encrypt = encrypted
            }

        match Crypto.openEnvelope keys.Token keys.AesKeys (Ids.componentAppId keys.ComponentAppId) envelope with
        | Ok(plain, key) -> Ok(plain, key)
        | Error Crypto.SignatureMismatch -> Error(401, Crypto.describe Crypto.SignatureMismatch)
        | Error e -> Error(400, $"{Crypto.describe e} ({Crypto.errorCode e})")

/// What became of a push to the authorization event URL.
type ComponentPushOutcome =
    /// Not opened (bad size, XML or signature): nothing done, refused with this status.
    | PushRefused of status: int * reason: string
    /// Opened but not readable as an authorization event.
    | PushUnreadable of reason: string
    /// A ticket stamped before the stored one: nothing changed; WeChat still hears `success`.
    | StaleTicket of createTime: int64
    /// Handled (and durable where it stores something): `success`.
    | PushHandled

/// What the authorization event workflow works with.
type ComponentPushDeps =
    {
        Keys: PushKeys
        Store: IStore
        Components: ComponentTokenService
        Clock: TimeProvider
        Logger: ILogger
        /// Authorization events (authorized, updateauthorized, unauthorized, fast registration).
        OnAuthorization: Wire.ComponentPush -> Task
    }

/// The authorization event URL (facts §2): a ticket is stored unless stale, an unknown InfoType is
/// recorded, anything else goes to the authorization handler; each before the outcome is returned.
let componentPush (d: ComponentPushDeps) (push: SignedPush) : Task<ComponentPushOutcome> =
    match openPush d.Keys push with
    | Error(status, reason) -> Task.FromResult(PushRefused(status, reason))
    | Ok(plain, _) ->
        match Wire.parseComponentPush plain with
        | Error e -> Task.FromResult(PushUnreadable(Wire.describe e))
        | Ok parsed ->
            task {
                let now = d.Clock.GetUtcNow()

                match parsed with
                | Wire.TicketPushed(ticket, created) ->
                    let! stored = d.Store.GetValue ticketCreateTimeKey

                    let storedCreated =
                        stored
                        |> Option.bind (fun v ->
                            match Int64.TryParse v with
                            | true, n -> Some n
                            | _ -> None)

                    match ticketCreateTimeToStore storedCreated created (now.ToUnixTimeSeconds()) with
                    // A replay or a late retry: the newer ticket stays.
                    | None -> return StaleTicket created
                    | Some createTime ->
                        // Durable before acknowledged: WeChat hears `success` only after the store has it.
                        do! d.Store.SaveTicket(d.Keys.ComponentAppId, { Ticket = ticket; ReceivedAt = now })
                        do! d.Store.PutValue(ticketCreateTimeKey, string createTime, false)
                        d.Components.OnTicketStored()
                        d.Logger.LogInformation("component_verify_ticket stored")
                        return PushHandled
                | Wire.UnknownInfoType infoType ->
                    d.Logger.LogInformation("authorization event with unknown InfoType {InfoType} answered", infoType)

                    do!
                        d.Store.AppendEvent
                            {
                                Kind = "unknown_info_type"
                                Subject = infoType
                                Detail = ""
                                At = now
                            }

                    return PushHandled
                | other ->
                    do! d.OnAuthorization other
                    return PushHandled
            }

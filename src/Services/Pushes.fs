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

/// The status and reason a push is refused with when it does not open.
let private refusal (e: Crypto.CryptoError) =
    match e with
    | Crypto.SignatureMismatch -> 401, Crypto.describe Crypto.SignatureMismatch
    | e -> 400, $"{Crypto.describe e} ({Crypto.errorCode e})"

/// The reader's way: the body as a string, its fields as a map. For a body the fast path leaves.
let private openBodyText (keys: PushKeys) (push: SignedPush) (body: string) =
    match Wire.encryptedPart body with
    | Error e -> Error(400, Wire.describe e)
    | Ok encrypted ->
        let envelope: Crypto.Envelope =
            {
                Timestamp = push.Timestamp
                Nonce = push.Nonce
                MsgSignature = push.MsgSignature
                Encrypt = encrypted
            }

        Crypto.openEnvelope keys.Token keys.AesKeys (Ids.componentAppId keys.ComponentAppId) envelope
        |> Result.mapError refusal

/// Outer XML → signature → decrypt. The signature is checked before any decryption, so a forged
/// push costs one SHA-1 and stores nothing. Error: the status and reason to refuse it with.
/// The body is decoded into a pooled buffer and, in the shape WeChat sends, its Encrypt is hashed and
/// decrypted where it lies there: no string of the body or of the field (together about a quarter of
/// what a push allocated). Any other body takes the reader's way, which answers the same.
let openPush (keys: PushKeys) (push: SignedPush) : Result<string * Crypto.AesKey, int * string> =
    let pool = Buffers.ArrayPool<char>.Shared
    let chars = pool.Rent(Encoding.UTF8.GetMaxCharCount push.Body.Length)

    try
        let n = Encoding.UTF8.GetChars(push.Body, 0, push.Body.Length, chars, 0)

        match Wire.encryptedRange (ReadOnlySpan(chars, 0, n)) with
        | ValueSome(struct (start, length)) ->
            Crypto.openEnvelopeOf
                keys.Token
                keys.AesKeys
                (Ids.componentAppId keys.ComponentAppId)
                push.Timestamp
                push.Nonce
                push.MsgSignature
                (ReadOnlyMemory(chars, start, length))
            |> Result.mapError refusal
        | ValueNone -> openBodyText keys push (String(chars, 0, n))
    finally
        pool.Return chars

/// The reader's way for any body, the fast path aside: what openPush must answer (its tests).
let openPushText (keys: PushKeys) (push: SignedPush) =
    openBodyText keys push (Encoding.UTF8.GetString push.Body)

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

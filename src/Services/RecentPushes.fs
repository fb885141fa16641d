/// The pushes of the last few minutes, kept in memory so that WeChat's retries are answered at once.
/// Built for the collector: under load this window holds a couple of hundred thousand pushes for a
/// few seconds each, long enough to reach the oldest generation and die there. Held as strings,
/// dictionary nodes and tasks, they were about a million objects that every full collection had to
/// walk, and those pauses were the callback path's slowest answers. Here a push is a 128-bit key
/// and a 128-bit id in arrays of structs, which the collector does not walk at all; only the pushes
/// still on their way to the disk hold a task, in a map of their own.
module WeChatFs.RecentPushes

open System
open System.Collections.Generic
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks

/// A push's identity: the first 128 bits of SHA-256 over the account and its dedupe key (the
/// account's length first, so no two pairs read the same). A collision would answer a new push as a
/// retry; at 2^-128 per pair it is left to arithmetic.
[<Struct>]
type Key = Key of UInt128

let keyOf (account: string) (dedupeKey: string) =
    // "<account's length>:<account><dedupe key>" in UTF-8, written and hashed in one pooled buffer
    // (the digest after the text): no string, array or digest of its own for every push.
    // At most ten digits of the length and the colon, then the text; the digest's 32 bytes follow.
    let textBytes =
        11 + Encoding.UTF8.GetMaxByteCount(account.Length + dedupeKey.Length)

    let buffer = Buffers.ArrayPool<byte>.Shared.Rent(textBytes + 32)

    try
        let span = Span<byte>(buffer)
        let mutable n = 0

        account.Length.TryFormat(span, &n, ReadOnlySpan<char>.Empty, Globalization.CultureInfo.InvariantCulture)
        |> ignore

        span[n] <- byte ':'
        n <- n + 1
        n <- n + Encoding.UTF8.GetBytes(account.AsSpan(), span.Slice n)
        n <- n + Encoding.UTF8.GetBytes(dedupeKey.AsSpan(), span.Slice n)
        SHA256.HashData(ReadOnlySpan<byte>(buffer, 0, n), span.Slice(n, 32)) |> ignore
        Key(UInt128(BitConverter.ToUInt64(buffer, n), BitConverter.ToUInt64(buffer, n + 8)))
    finally
        Buffers.ArrayPool<byte>.Shared.Return buffer

/// What the window says about a push.
type Seen =
    /// New: the caller now owns it and must call `Durable` or `Failed`.
    | First
    /// Seen before, under this id; `durable` resolves when that push is on the disk (and fails if it
    /// never gets there: then ask again).
    | Earlier of durable: Task * id: string

/// An id as the window keeps it: a Guid when it is one in "N" form (as the gateway's ids are), else
/// a string kept aside.
[<Struct>]
type private StoredId = { Guid: Guid; IsGuid: bool }

let private emptyId = { Guid = Guid.Empty; IsGuid = false }

/// At most `capacity` pushes (the oldest go first, and `ForgetBefore` lets the caller set an age).
/// Thread-safe.
type Window(capacity: int) =
    let sync = obj ()
    let known = Dictionary<Key, StoredId>()
    // Ids not in Guid form (tests and callers other than the gateway's push handler).
    let others = Dictionary<Key, string>()
    let pending = Dictionary<Key, struct (Task * string)>()
    // Oldest first, as a ring: which push became durable when.
    let ringKeys = Array.zeroCreate<Key>(max 1 capacity)
    let ringTimes = Array.zeroCreate<int64>(max 1 capacity)
    let mutable head = 0
    let mutable count = 0

    let forgetOldest () =
        let k = ringKeys[head]
        known.Remove k |> ignore
        others.Remove k |> ignore
        head <- (head + 1) % ringKeys.Length
        count <- count - 1

    let idOf (key: Key) (stored: StoredId) =
        if stored.IsGuid then
            stored.Guid.ToString "N"
        else
            others[key]

    /// Looks the push up and, when it is new, takes it: `durable` is what a retry of it awaits.
    member _.Take(key: Key, id: string, durable: Task) : Seen =
        lock sync (fun () ->
            match pending.TryGetValue key with
            | true, struct (t, earlierId) -> Earlier(t, earlierId)
            | _ ->
                match known.TryGetValue key with
                | true, stored -> Earlier(Task.CompletedTask, idOf key stored)
                | _ ->
                    pending[key] <- struct (durable, id)
                    First)

    /// The push taken under `key` is on the disk (at `nowTicks`): a retry is answered at once.
    member _.Durable(key: Key, id: string, nowTicks: int64) =
        lock sync (fun () ->
            pending.Remove key |> ignore

            if not (known.ContainsKey key) then
                if count = ringKeys.Length then
                    forgetOldest ()

                let stored =
                    match Guid.TryParseExact(id, "N") with
                    | true, g when g.ToString "N" = id -> { Guid = g; IsGuid = true }
                    | _ ->
                        others[key] <- id
                        emptyId

                known[key] <- stored
                let tail = (head + count) % ringKeys.Length
                ringKeys[tail] <- key
                ringTimes[tail] <- nowTicks
                count <- count + 1)

    /// The push taken under `key` never reached the disk: the next one with its key takes its place.
    member _.Failed(key: Key) =
        lock sync (fun () -> pending.Remove key |> ignore)

    /// Forgets the pushes that became durable before `horizonTicks`.
    member _.ForgetBefore(horizonTicks: int64) =
        lock sync (fun () ->
            while count > 0 && ringTimes[head] < horizonTicks do
                forgetOldest ())

    /// Pushes answered from memory, and those still on their way to the disk.
    member _.Count = lock sync (fun () -> count + pending.Count)

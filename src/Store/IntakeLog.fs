/// The intake log of the embedded store: pushes are appended to one file and made durable by one
/// fsync per batch, and WeChat is answered then; the inbox table is written from the log afterwards,
/// off the request path, in large transactions. A crash loses nothing acknowledged: at start the log's
/// records are read back and written to the inbox again (inserts that are already there do nothing).
/// The file is emptied once everything in it is in the inbox.
module WeChatFs.IntakeLog

open System
open System.IO
open System.Text
open System.Threading
open System.Threading.Tasks
open WeChatFs.Store

/// What the inbox row's payload is made from: the webhook body itself, or the decrypted XML of a
/// message, turned into the webhook body when the row is written (no JSON on the request path).
type Body =
    | Payload of json: string
    | Xml of plainXml: string

/// One record: an inbox row to be, minus its payload, plus its body.
type Entry = { Item: InboxItem; Body: Body }

// ---- the record format --------------------------------------------------------------------------
// [length: int32][checksum: int32][body: length bytes]. The body is the fields in order, strings as
// BinaryWriter writes them (7-bit length, UTF-8). A torn write at the end of the file (the crash came
// mid-write) fails the length or the checksum, and the file is cut there: such a record was never
// acknowledged, since nobody is answered before the fsync after the write.

/// FNV-1a over the body: enough to tell a torn or stale tail from a record.
let checksum (bytes: ReadOnlySpan<byte>) =
    let mutable h = 2166136261u

    // An indexed loop: the span's enumerator costs several times the hash itself per byte.
    for i in 0 .. bytes.Length - 1 do
        h <- (h ^^^ uint32 bytes[i]) * 16777619u

    int h

let private readOptional (r: BinaryReader) =
    if r.ReadBoolean() then Some(r.ReadString()) else None

// The writing side of BinaryReader's format, straight into the batch's buffer: a BinaryWriter per
// record cost more than the record's bytes.

let private writeInt64 (out: MemoryStream) (v: int64) =
    for shift in 0..8..56 do
        out.WriteByte(byte (v >>> shift))

/// A 7-bit encoded byte length, then the UTF-8 bytes (BinaryWriter.Write(string)).
let private writeString (out: MemoryStream) (s: string) =
    let buffer =
        Buffers.ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount s.Length)

    try
        let n = Encoding.UTF8.GetBytes(s, 0, s.Length, buffer, 0)
        let mutable v = uint32 n

        while v >= 0x80u do
            out.WriteByte(byte (v ||| 0x80u))
            v <- v >>> 7

        out.WriteByte(byte v)
        out.Write(buffer, 0, n)
    finally
        Buffers.ArrayPool<byte>.Shared.Return buffer

let private writeOptional (out: MemoryStream) (v: string option) =
    match v with
    | Some s ->
        out.WriteByte 1uy
        writeString out s
    | None -> out.WriteByte 0uy

/// Appends one record to `out`.
let encode (out: MemoryStream) (e: Entry) =
    let start = out.Position

    for _ in 1..8 do
        out.WriteByte 0uy

    let i = e.Item
    writeString out i.Id
    writeString out i.DedupeKey
    writeString out (Domain.Ids.authorizerAppId i.AuthorizerAppId)
    writeOptional out (i.Tenant |> Option.map Domain.Ids.tenant)
    writeString out i.Kind
    writeInt64 out (i.ReceivedAt.ToUnixTimeMilliseconds())
    writeOptional out i.ClaimedBy

    writeInt64
        out
        (match i.ClaimedUntil with
         | Some t -> t.ToUnixTimeMilliseconds()
         | None -> -1L)

    match e.Body with
    | Payload json ->
        out.WriteByte 0uy
        writeString out json
    | Xml xml ->
        out.WriteByte 1uy
        writeString out xml

    let finish = out.Position
    let length = int (finish - start - 8L)
    let buffer = out.GetBuffer()
    let bodySpan = ReadOnlySpan(buffer, int start + 8, length)
    Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(Span(buffer, int start, 4), length)
    Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(Span(buffer, int start + 4, 4), checksum bodySpan)

let private decodeBody (body: byte[]) =
    use r = new BinaryReader(new MemoryStream(body), Encoding.UTF8)
    let id = r.ReadString()
    let key = r.ReadString()
    let appid = r.ReadString()
    let tenant = readOptional r
    let kind = r.ReadString()
    let received = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadInt64())
    let claimedBy = readOptional r

    let claimedUntil =
        match r.ReadInt64() with
        | -1L -> None
        | ms -> Some(DateTimeOffset.FromUnixTimeMilliseconds ms)

    let body =
        match r.ReadByte() with
        | 0uy -> Payload(r.ReadString())
        | _ -> Xml(r.ReadString())

    {
        Item =
            {
                Id = id
                DedupeKey = key
                AuthorizerAppId = Domain.AuthorizerAppId appid
                Tenant = tenant |> Option.map Domain.TenantId
                Kind = kind
                ReceivedAt = received
                Payload = ""
                ClaimedBy = claimedBy
                ClaimedUntil = claimedUntil
            }
        Body = body
    }

/// The whole records at the start of `bytes`, and the length they take: the rest is a torn tail.
let decodeAll (bytes: byte[]) =
    let entries = ResizeArray<Entry>()
    let mutable at = 0
    let mutable stop = false

    while not stop && bytes.Length - at >= 8 do
        let length =
            Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(bytes, at, 4))

        let sum =
            Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(bytes, at + 4, 4))

        if length <= 0 || length > bytes.Length - at - 8 then
            stop <- true
        elif checksum (ReadOnlySpan(bytes, at + 8, length)) <> sum then
            stop <- true
        else
            match
                (try
                    Some(decodeBody (bytes[at + 8 .. at + 7 + length]))
                 with _ ->
                     None)
            with
            | Some e ->
                entries.Add e
                at <- at + 8 + length
            | None -> stop <- true

    List.ofSeq entries, at

// ---- the file -------------------------------------------------------------------------------------

/// The log file. `Append` resolves once the record is on disk; `onDurable` gets each batch's entries
/// right after its fsync, on the writer's thread (keep it short: hand them on). `Indexed n` says that
/// n more records reached the inbox; the file is emptied when every record in it has, and it is
/// bigger than `compactBytes` or older than `compactAge` (so a restart never writes a row again that
/// the retention purge has since removed). `syncGather`: see the loop.
type Writer
    (
        path: string,
        onDurable: Entry list -> unit,
        compactBytes: int64,
        compactAge: TimeSpan,
        clock: TimeProvider,
        ?syncGather: TimeSpan
    ) =
    let syncGather = defaultArg syncGather TimeSpan.Zero

    let file =
        new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.None)

    let recovered, validLength =
        let bytes = Array.zeroCreate<byte>(int file.Length)
        file.ReadExactly(bytes, 0, bytes.Length)
        decodeAll bytes

    do
        // Cut the torn tail before anything new is written after it.
        file.SetLength(int64 validLength)
        file.Position <- int64 validLength
        file.Flush true

    let gate = obj ()
    let mutable pending = new MemoryStream(64 * 1024)
    let mutable spare = new MemoryStream(64 * 1024)
    let mutable pendingEntries = ResizeArray<Entry>()
    let mutable spareEntries = ResizeArray<Entry>()

    let mutable batchDone =
        TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

    let mutable stopping = false
    let wake = new AutoResetEvent(false)
    let mutable sleeping = 0
    // While the writer gathers: the number of pending records that ends the gathering early, and
    // the event the append that reaches it sets.
    let gathered = new AutoResetEvent(false)
    let mutable gatherTarget = Int32.MaxValue
    // Records in the file, and how many of them the inbox has; written by the writer and `Indexed`.
    let mutable inFile = int64 recovered.Length
    let mutable indexed = 0L
    let mutable fileSince = clock.GetUtcNow()

    let rouse () =
        if Interlocked.Exchange(&sleeping, 0) = 1 then
            wake.Set() |> ignore

    let compactIfDone () =
        if
            inFile > 0L
            && Interlocked.Read &indexed >= inFile
            && (file.Length >= compactBytes || clock.GetUtcNow() - fileSince >= compactAge)
        then
            file.SetLength 0L
            file.Position <- 0L
            file.Flush true
            Interlocked.Add(&indexed, -inFile) |> ignore
            inFile <- 0L
            fileSince <- clock.GetUtcNow()

    let loop () =
        let mutable go = true
        // Records in the batch synced last: more than one means pushes are arriving together.
        let mutable lastBatch = 0

        while go do
            // A sync costs the disk and the processor about the same for one record as for fifty.
            // Under load (the last batch held several), the writer lets the appends of the next
            // `syncGather` join the batch before it writes, so one sync covers them all; a lone push
            // is written at once. It stops gathering once the pending records number as many as the
            // last batch held: under a steady load the pushes of the last batch have come back by
            // then, and waiting longer would leave the processor idle. WeChat waits 5 s; this adds at
            // most `syncGather` to an answer.
            if lastBatch > 1 && syncGather > TimeSpan.Zero then
                Volatile.Write(&gatherTarget, lastBatch)
                gathered.Reset() |> ignore

                if lock gate (fun () -> pendingEntries.Count < lastBatch) then
                    gathered.WaitOne syncGather |> ignore

                Volatile.Write(&gatherTarget, Int32.MaxValue)

            let batch, entries, finished =
                lock gate (fun () ->
                    if pending.Length = 0L then
                        None, null, stopping
                    else
                        let b, e, d = pending, pendingEntries, batchDone
                        pending <- spare
                        pendingEntries <- spareEntries
                        spare <- b
                        spareEntries <- e

                        batchDone <- TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

                        Some(b, d), e, false)

            match batch with
            | Some(buffer, done') ->
                try
                    compactIfDone ()
                    file.Write(buffer.GetBuffer(), 0, int buffer.Length)
                    file.Flush true
                    inFile <- inFile + int64 entries.Count
                    lastBatch <- entries.Count
                    // Handed on before anyone hears it is durable: whatever an acknowledged
                    // append does next (a delivery's outcome) finds its record on the way.
                    onDurable (List.ofSeq entries)
                    done'.TrySetResult() |> ignore
                with ex ->
                    // Not on disk: nobody of this batch is acknowledged (WeChat will retry).
                    done'.TrySetException ex |> ignore

                buffer.SetLength 0L
                entries.Clear()
            | None when finished -> go <- false
            | None ->
                lastBatch <- 0

                try
                    compactIfDone ()
                with _ ->
                    ()

                Volatile.Write(&sleeping, 1)

                if lock gate (fun () -> pending.Length = 0L && not stopping) then
                    // Woken by an append, or now and then to empty an indexed file.
                    wake.WaitOne(TimeSpan.FromSeconds 1.) |> ignore

                Volatile.Write(&sleeping, 0)

    let thread = Thread(loop, IsBackground = true, Name = "wechatfs-intake")
    do thread.Start()

    /// The records found in the file at start (none of them acknowledged twice: they are in the
    /// inbox already or go there now).
    member _.Recovered = recovered

    /// Resolves once the record is durable; fails if the disk refused it.
    member _.Append(entry: Entry) : Task =
        let t =
            lock gate (fun () ->
                if stopping then
                    Task.FromException(ObjectDisposedException "IntakeLog")
                else
                    encode pending entry
                    pendingEntries.Add entry

                    if pendingEntries.Count = Volatile.Read &gatherTarget then
                        gathered.Set() |> ignore

                    batchDone.Task :> Task)

        rouse ()
        t

    /// `n` more records are in the inbox.
    member _.Indexed(n: int) =
        Interlocked.Add(&indexed, int64 n) |> ignore

    interface IDisposable with
        member _.Dispose() =
            lock gate (fun () -> stopping <- true)
            wake.Set() |> ignore
            thread.Join()
            compactIfDone ()
            file.Dispose()
            wake.Dispose()
            gathered.Dispose()

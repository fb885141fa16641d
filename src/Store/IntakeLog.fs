/// The intake log of the embedded store: pushes are appended to a file and made durable by one
/// fsync per batch, and WeChat is answered then; the inbox table is written from the log afterwards,
/// off the request path, in large transactions. A crash loses nothing acknowledged: at start the log's
/// records are read back and written to the inbox again (inserts that are already there do nothing).
/// The log has two files and writes one at a time; once the other one's records are all in the
/// inbox, it is written over from the top.
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
// The file starts with a header, [magic "WXL2"][generation: int32][0: int32][checksum of the twelve
// bytes before: int32], and records follow: [length: int32][generation: int32][checksum of the body:
// int32][body: length bytes]. The body is the fields in order, strings as BinaryWriter writes them
// (7-bit length, UTF-8).
//
// A file is written over in place, not emptied: once the inbox has every record in it, the writer
// starts it again after the header with the next generation, and an fsync of bytes written over costs
// the disk half of one that makes the file longer (no block to allocate, no size to record). The
// records of an earlier generation still lie beyond the new ones; a record is read only with the
// header's generation, so reading stops at the first of them. A torn write at the end (the crash
// came mid-write) fails the length or the checksum, and reading stops there too: such a record was
// never acknowledged, since nobody is answered before the fsync after the write.

/// The header's length, where the first record begins.
let headerLength = 16

let private magic = 0x324C5857 // "WXL2", little-endian

/// FNV-1a: enough to tell a torn or stale record from a whole one.
let private checksum (bytes: ReadOnlySpan<byte>) =
    let mutable h = 2166136261u

    // An indexed loop: the span's enumerator costs several times the hash itself per byte.
    for i in 0 .. bytes.Length - 1 do
        h <- (h ^^^ uint32 bytes[i]) * 16777619u

    int h

let private readInt (bytes: byte[]) (at: int) =
    Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(bytes, at, 4))

let private writeInt (bytes: byte[]) (at: int) (v: int) =
    Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(Span(bytes, at, 4), v)

/// The header of a file of `generation`.
let fileHeader (generation: int) =
    let bytes = Array.zeroCreate<byte> headerLength
    writeInt bytes 0 magic
    writeInt bytes 4 generation
    writeInt bytes 12 (checksum (ReadOnlySpan(bytes, 0, 12)))
    bytes

/// The generation after `g` (never 0, which `encode` leaves in a record until it is stamped).
let private nextGeneration (g: int) = if g = Int32.MaxValue then 1 else g + 1

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

/// Appends one record to `out`, of generation 0 until it is stamped.
let encode (out: MemoryStream) (e: Entry) =
    let start = out.Position

    for _ in 1..12 do
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
    let length = int (finish - start - 12L)
    let buffer = out.GetBuffer()
    writeInt buffer (int start) length
    writeInt buffer (int start + 8) (checksum (ReadOnlySpan(buffer, int start + 12, length)))

/// Writes `generation` into each of the records that `encode` put in `bytes[0 .. length-1]`: the
/// writer learns which generation a batch belongs to only when it writes it.
let stamp (bytes: byte[]) (length: int) (generation: int) =
    let mutable at = 0

    while at < length do
        writeInt bytes (at + 4) generation
        at <- at + 12 + readInt bytes at

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

/// The whole records of `generation` from `start` in `bytes`, and where they end: what follows is
/// a torn tail or an earlier generation. `generation = None` reads the format before generations,
/// whose records have no generation field (`[length][checksum][body]`, from the start of the file).
let decodeRecords (generation: int option) (bytes: byte[]) (start: int) =
    let fieldsLength = if generation.IsSome then 12 else 8
    let entries = ResizeArray<Entry>()
    let mutable at = start
    let mutable stop = false

    while not stop && bytes.Length - at >= fieldsLength do
        let length = readInt bytes at
        let sum = readInt bytes (at + fieldsLength - 4)
        let body = at + fieldsLength

        if length <= 0 || length > bytes.Length - body then
            stop <- true
        elif generation.IsSome && readInt bytes (at + 4) <> generation.Value then
            stop <- true
        elif checksum (ReadOnlySpan(bytes, body, length)) <> sum then
            stop <- true
        else
            match
                (try
                    Some(decodeBody bytes[body .. body + length - 1])
                 with _ ->
                     None)
            with
            | Some e ->
                entries.Add e
                at <- body + length
            | None -> stop <- true

    List.ofSeq entries, at

/// What a log file holds.
type Image =
    /// A file of this format: its generation, its records, and where they end.
    | Current of generation: int * entries: Entry list * recordsEnd: int
    /// No file yet, a file of the format before generations, or one whose header was torn (the
    /// writer was writing it when the crash came, so everything before it was in the inbox): the
    /// records to write again into a new file.
    | Rewrite of entries: Entry list

/// Reads a whole file.
let readImage (bytes: byte[]) =
    if bytes.Length >= headerLength && readInt bytes 0 = magic then
        if readInt bytes 12 = checksum (ReadOnlySpan(bytes, 0, 12)) then
            let generation = readInt bytes 4
            let entries, recordsEnd = decodeRecords (Some generation) bytes headerLength
            Current(generation, entries, recordsEnd)
        else
            Rewrite []
    else
        Rewrite(fst (decodeRecords None bytes 0))

// ---- the file -------------------------------------------------------------------------------------

/// Opens the log at `path` to write after its records; its generation and records. A file of
/// another kind (or none) is first written again with its records beside it and moved over it: a
/// crash before the move leaves the old file, which the next start reads the same way.
let private openFile (path: string) =
    let openStream () =
        new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 1, FileOptions.None)

    let file = openStream ()

    let image =
        let bytes = Array.zeroCreate<byte>(int file.Length)
        file.ReadExactly(bytes, 0, bytes.Length)
        readImage bytes

    match image with
    | Current(generation, entries, recordsEnd) ->
        // What follows the records is a torn write or an earlier generation: written over next.
        file.Position <- int64 recordsEnd
        file, generation, entries
    | Rewrite entries ->
        file.Dispose()
        let temp = path + ".new"
        let generation = 1

        do
            use records = new MemoryStream()

            for e in entries do
                encode records e

            stamp (records.GetBuffer()) (int records.Length) generation
            use t = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None)
            t.Write(fileHeader generation)
            t.Write(records.GetBuffer(), 0, int records.Length)
            t.Flush true

        File.Move(temp, path, true)
        let file = openStream ()
        file.Position <- file.Length
        file, generation, entries

/// The path of the log's second file, beside the first: `intake.log` and `intake-b.log`.
let secondPath (path: string) =
    Path.Combine(Path.GetDirectoryName path, Path.GetFileNameWithoutExtension path + "-b" + Path.GetExtension path)

/// Whether a file of generation `a` was started after one of generation `b`: the log starts a file
/// with the generation after the other's (generations wrap after 2^31 starts).
let private startedAfter (a: int) (b: int) =
    a = nextGeneration b || (b <> nextGeneration a && a > b)

/// The log: two files, one written at a time. `Append` resolves once the record is on disk;
/// `onDurable` gets each batch's entries right after its sync, on the writer's thread (keep it
/// short: hand them on). `Indexed n` says that n more records reached the inbox, in the order they
/// were appended. Once the file being written holds more than `compactBytes` and the other one's
/// records are all in the inbox, the writer starts the other one again from its top, with the next
/// generation, and writes there: under a steady load the inbox is always a few milliseconds behind,
/// and a single file could only start again once it had caught up, so it grew for as long as the
/// load lasted (13 MB a second in the kit's runs), and every sync that makes a file longer costs the
/// file system a journal commit. When the inbox has every record and the file is older than
/// `compactAge`, both files start again empty (so a restart never writes a row again that the
/// retention purge has since removed). `syncGather`: see the loop. `onSync` hears how long each
/// batch's sync took (on the writer's thread: keep it short).
type Writer
    (
        path: string,
        onDurable: Entry list -> unit,
        compactBytes: int64,
        compactAge: TimeSpan,
        clock: TimeProvider,
        ?syncGather: TimeSpan,
        ?onSync: TimeSpan -> unit
    ) =
    let syncGather = defaultArg syncGather TimeSpan.Zero
    let onSync = defaultArg onSync ignore

    // Both files, and which one is written: the one started after the other. Its records are the
    // newer; a start reads the other's first.
    let files, generations, written, recovered, otherCount =
        let fileA, genA, entriesA = openFile path
        let fileB, genB, entriesB = openFile (secondPath path)
        let written = if startedAfter genB genA then 1 else 0
        let entries = [| entriesA; entriesB |]

        [| fileA; fileB |],
        [| genA; genB |],
        written,
        entries[1 - written] @ entries[written],
        int64 entries[1 - written].Length

    let mutable current = written
    let file () = files[current]

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
    // Records by their place in the order of appending (those found at start first): how many were
    // written, how many of them the inbox has (`Indexed`), where the other file's end (the written
    // file holds the rest), and how many the other file holds. Written by the writer's thread,
    // except `indexed`.
    let mutable appended = int64 recovered.Length
    let mutable indexed = 0L
    let mutable otherEnd = otherCount
    let mutable otherRecords = otherCount
    let currentRecords () = appended - otherEnd
    let mutable fileSince = clock.GetUtcNow()

    let rouse () =
        if Interlocked.Exchange(&sleeping, 0) = 1 then
            wake.Set() |> ignore

    // File `i` starts again from its top, as generation `generation`. After a backlog (the inbox was
    // away for a while) it may have grown far past its usual size: that space goes back to the disk.
    let restart (i: int) (generation: int) =
        let f = files[i]

        if f.Length / 4L > compactBytes then
            f.SetLength(int64 headerLength)

        f.Position <- 0L
        f.Write(fileHeader generation)
        FileSync.syncData f
        generations[i] <- generation

    let compactIfDone () =
        let inInbox = Interlocked.Read &indexed
        let aged = clock.GetUtcNow() - fileSince >= compactAge

        if inInbox >= appended && aged && (currentRecords () > 0L || otherRecords > 0L) then
            // Everything is in the inbox: both files start again empty. The other first, so that
            // the one written stays the newer (a crash between the two reads only records the
            // inbox has).
            let other = 1 - current
            restart other (nextGeneration generations[current])
            restart current (nextGeneration generations[other])
            otherEnd <- appended
            otherRecords <- 0L
            fileSince <- clock.GetUtcNow()
        elif
            currentRecords () > 0L
            && inInbox >= otherEnd
            && (file ()).Position - int64 headerLength >= compactBytes
        then
            // The other file's records are all in the inbox: it is written next, over its old bytes.
            let other = 1 - current
            restart other (nextGeneration generations[current])
            current <- other
            otherRecords <- currentRecords ()
            otherEnd <- appended
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
                    stamp (buffer.GetBuffer()) (int buffer.Length) generations[current]
                    (file ()).Write(buffer.GetBuffer(), 0, int buffer.Length)
                    let syncStart = Diagnostics.Stopwatch.GetTimestamp()
                    FileSync.syncData (file ())
                    onSync (Diagnostics.Stopwatch.GetElapsedTime syncStart)
                    appended <- appended + int64 entries.Count
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

    /// `n` more records are in the inbox, the next ones in the order of appending.
    member _.Indexed(n: int) =
        Interlocked.Add(&indexed, int64 n) |> ignore

    interface IDisposable with
        member _.Dispose() =
            lock gate (fun () -> stopping <- true)
            wake.Set() |> ignore
            thread.Join()
            compactIfDone ()

            for f in files do
                f.Dispose()

            wake.Dispose()
            gathered.Dispose()

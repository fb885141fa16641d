/// WeChat's message crypto (WXBizMsgCrypt): the msg_signature, AES-256-CBC with the key from the
/// 43-character EncodingAESKey, PKCS#7 padding to 32-byte blocks and the framing
/// `16 random bytes | big-endian length | message | appid`.
/// Every function is total: failures are CryptoError values, randomness is a parameter.
module WeChatFs.Crypto

open System
open System.Security.Cryptography
open System.Text

type CryptoError =
    | SignatureMismatch
    | InvalidAesKey
    | InvalidBase64
    | AesDecryptFailed
    | InvalidPadding
    | InvalidLength of declared: int * available: int
    | AppIdMismatch of actual: string
    | InvalidUtf8

/// The official library's return codes (-40001 ... -40011), for logs and operators.
let errorCode =
    function
    | SignatureMismatch -> -40001
    | InvalidAesKey -> -40004
    | AppIdMismatch _ -> -40005
    | AesDecryptFailed -> -40007
    | InvalidPadding
    | InvalidLength _
    | InvalidUtf8 -> -40008
    | InvalidBase64 -> -40010

let describe =
    function
    | SignatureMismatch -> "msg_signature does not match the token, timestamp, nonce and Encrypt"
    | InvalidAesKey -> "EncodingAESKey must be 43 characters of [A-Za-z0-9]"
    | InvalidBase64 -> "Encrypt is not valid base64"
    | AesDecryptFailed -> "ciphertext is not a whole number of AES blocks"
    | InvalidPadding -> "padding is not PKCS#7 over 32-byte blocks"
    | InvalidLength(d, a) -> $"declared message length {d} does not fit the {a} bytes available"
    | AppIdMismatch actual -> $"message is addressed to appid '{actual}'"
    | InvalidUtf8 -> "message is not valid UTF-8"

/// The 32-byte AES key; only AesKey.create makes one.
type AesKey = private AesKey of byte[]

module AesKey =
    let private alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    /// Decodes the 43 characters by hand: 43 × 6 = 258 bits, of which the last two are unused.
    /// WeChat issues keys whose unused bits are not zero, which strict base64 decoders refuse.
    let create (encodingAesKey: string) : Result<AesKey, CryptoError> =
        if isNull encodingAesKey || encodingAesKey.Length <> 43 then
            Error InvalidAesKey
        else
            let sextets = encodingAesKey |> Seq.map alphabet.IndexOf |> Array.ofSeq

            if sextets |> Array.exists (fun i -> i < 0 || i > 61) then
                Error InvalidAesKey
            else
                let key = Array.zeroCreate<byte> 32
                let mutable acc = 0
                let mutable bits = 0
                let mutable n = 0

                for s in sextets do
                    acc <- ((acc <<< 6) ||| s) &&& 0xFFFF
                    bits <- bits + 6

                    if bits >= 8 && n < 32 then
                        bits <- bits - 8
                        key[n] <- byte ((acc >>> bits) &&& 0xFF)
                        n <- n + 1

                Ok(AesKey key)

    let bytes (AesKey k) = Array.copy k

/// sha1 over the parts sorted ordinally and joined, lower-case hex; encoded into one pooled buffer.
/// The parts are spans, so a push's Encrypt is hashed where the body was decoded.
let private sortedSha1Hex (parts: ReadOnlyMemory<char>[]) =
    Array.sortInPlaceWith (fun (a: ReadOnlyMemory<char>) b -> a.Span.SequenceCompareTo b.Span) parts
    let mutable size = 0

    for p in parts do
        size <- size + Encoding.UTF8.GetByteCount p.Span

    let buffer = Buffers.ArrayPool<byte>.Shared.Rent size

    try
        let mutable length = 0

        for p in parts do
            length <-
                length
                + Encoding.UTF8.GetBytes(p.Span, Span(buffer, length, buffer.Length - length))

        SHA1.HashData(ReadOnlySpan(buffer, 0, length)) |> Convert.ToHexStringLower
    finally
        Buffers.ArrayPool<byte>.Shared.Return buffer

// A null part counts as empty (AsMemory gives an empty span for null).
let private signatureOf (token: string) (timestamp: string) (nonce: string) (encrypted: ReadOnlyMemory<char>) =
    sortedSha1Hex [| token.AsMemory(); timestamp.AsMemory(); nonce.AsMemory(); encrypted |]

/// msg_signature = sha1 over the sorted token, timestamp, nonce and Encrypt, lower-case hex.
let msgSignature (token: string) (timestamp: string) (nonce: string) (encrypted: string) =
    signatureOf token timestamp nonce (encrypted.AsMemory())

/// The plain-mode signature (token, timestamp, nonce), used by the URL verification handshake.
let plainSignature (token: string) (timestamp: string) (nonce: string) =
    sortedSha1Hex [| token.AsMemory(); timestamp.AsMemory(); nonce.AsMemory() |]

/// Compares in constant time so the check leaks nothing about how much of a forgery was right.
/// Hex digits compare case-insensitively. No allocation: this runs for every push.
let private sameHex (a: string) (b: string) =
    if isNull a || isNull b || a.Length <> b.Length then
        false
    else
        // Anything outside ASCII becomes 0, which no hex digit equals.
        let lower (c: char) =
            if c > '\u007F' then 0
            elif c >= 'A' && c <= 'Z' then int c ||| 0x20
            else int c

        // Every position is looked at whatever the earlier ones held.
        let mutable differences = 0

        for i in 0 .. a.Length - 1 do
            differences <- differences ||| (lower a[i] ^^^ lower b[i])

        differences = 0

let private verifySignatureOf token timestamp nonce (encrypted: ReadOnlyMemory<char>) (signature: string) =
    if sameHex (signatureOf token timestamp nonce encrypted) signature then
        Ok()
    else
        Error SignatureMismatch

let verifySignature token timestamp nonce (encrypted: string) signature =
    verifySignatureOf token timestamp nonce (encrypted.AsMemory()) signature

let private blockSize = 32

let private pad (data: byte[]) =
    let n = blockSize - data.Length % blockSize
    Array.append data (Array.create n (byte n))

/// The plaintext's length without the padding (no copy).
let private unpad (data: byte[], length: int) =
    if length = 0 then
        Error InvalidPadding
    else
        let n = int data[length - 1]

        if n < 1 || n > blockSize || n > length then
            Error InvalidPadding
        else
            Ok(data, length - n)

/// One Aes object per thread for the key in use: making one for every push (an OpenSSL context,
/// the key schedule) costs more than decrypting the push. The one-shot CBC calls keep no state
/// between calls, so a thread can reuse its object; a different key (a rotation) replaces it.
type private ThreadAes =
    [<ThreadStatic; DefaultValue>]
    static val mutable private key: byte[]

    [<ThreadStatic; DefaultValue>]
    static val mutable private aes: Aes

    static member For(AesKey key) =
        if
            isNull ThreadAes.aes
            || not (ReadOnlySpan(ThreadAes.key).SequenceEqual(ReadOnlySpan key))
        then
            if not (isNull ThreadAes.aes) then
                ThreadAes.aes.Dispose()

            let a = Aes.Create()
            a.Key <- key
            ThreadAes.aes <- a
            ThreadAes.key <- Array.copy key

        ThreadAes.aes

/// The IV is the key's first 16 bytes (WXBizMsgCrypt).
let private iv (AesKey key) = ReadOnlySpan(key, 0, 16)

/// Encrypts `message` for `appId` with the given 16 random bytes; returns the base64 Encrypt value.
let encrypt (key: AesKey) (appId: string) (random16: byte[]) (message: string) =
    let msg = Encoding.UTF8.GetBytes(if isNull message then "" else message)
    let id = Encoding.UTF8.GetBytes(if isNull appId then "" else appId)
    let len = BitConverter.GetBytes(uint32 msg.Length)

    if BitConverter.IsLittleEndian then
        Array.Reverse len

    let prefix =
        Array.init 16 (fun i -> if i < random16.Length then random16[i] else 0uy)

    let plain = Array.concat [ prefix; len; msg; id ] |> pad

    (ThreadAes.For key).EncryptCbc(ReadOnlySpan plain, iv key, PaddingMode.None)
    |> Convert.ToBase64String

let private strictUtf8 = UTF8Encoding(false, true)

/// Splits `random | length | message | appid` of the first `length` bytes, checking that the
/// message fits and the appid matches.
let private unframe (expectedAppId: string) (plain: byte[], length: int) =
    if length < 20 then
        Error(InvalidLength(0, max 0 (length - 20)))
    else
        let declared =
            (int plain[16] <<< 24)
            ||| (int plain[17] <<< 16)
            ||| (int plain[18] <<< 8)
            ||| int plain[19]

        let available = length - 20

        if declared < 0 || declared > available then
            Error(InvalidLength(declared, available))
        else
            let actualAppId =
                Text.Encoding.UTF8.GetString(plain, 20 + declared, available - declared)

            if actualAppId <> expectedAppId then
                Error(AppIdMismatch actualAppId)
            else
                try
                    Ok(strictUtf8.GetString(plain, 20, declared))
                with :? ArgumentException ->
                    Error InvalidUtf8

/// Base64 → AES-CBC → strip padding → unframe, for one key. The ciphertext and the plaintext are
/// bytes in pooled buffers: only the message and its appid become strings (before: two new arrays
/// per push, besides the strings).
let private decryptChars (key: AesKey) (appId: string) (encrypted: ReadOnlySpan<char>) : Result<string, CryptoError> =
    let pool = Buffers.ArrayPool<byte>.Shared
    let cipher = pool.Rent(encrypted.Length * 3 / 4 + 3)

    try
        let mutable written = 0

        if not (Convert.TryFromBase64Chars(encrypted, Span cipher, &written)) then
            Error InvalidBase64
        elif written = 0 || written % 16 <> 0 then
            Error AesDecryptFailed
        else
            let plain = pool.Rent written

            try
                let n =
                    (ThreadAes.For key)
                        .DecryptCbc(ReadOnlySpan(cipher, 0, written), iv key, Span(plain, 0, written), PaddingMode.None)

                unpad (plain, n) |> Result.bind (unframe appId)
            finally
                // A customer's message does not stay behind in a buffer that other code rents next.
                pool.Return(plain, true)
    finally
        pool.Return cipher

let decrypt (key: AesKey) (appId: string) (encrypted: string) : Result<string, CryptoError> =
    if isNull encrypted then
        Error InvalidBase64
    else
        decryptChars key appId (encrypted.AsSpan())

/// The query parameters and the Encrypt element of one push.
type Envelope =
    {
        Timestamp: string
        Nonce: string
        MsgSignature: string
        Encrypt: string
    }

/// Verifies the signature, then tries each key in turn (the current key first, then the previous one
/// after a rotation). Returns the message and the key that opened it, so a reply can use the same key.
/// `encrypted` is the Encrypt field where it was read (a push's decoded body).
let openEnvelopeOf
    (token: string)
    (keys: AesKey list)
    (appId: string)
    (timestamp: string)
    (nonce: string)
    (msgSignature: string)
    (encrypted: ReadOnlyMemory<char>)
    =
    verifySignatureOf token timestamp nonce encrypted msgSignature
    |> Result.bind (fun () ->
        let rec attempt firstError remaining =
            match remaining with
            | [] -> Error(defaultArg firstError InvalidAesKey)
            | k :: rest ->
                match decryptChars k appId encrypted.Span with
                | Ok msg -> Ok(msg, k)
                | Error err -> attempt (Some(defaultArg firstError err)) rest

        attempt None keys)

let openEnvelope (token: string) (keys: AesKey list) (appId: string) (e: Envelope) =
    if isNull e.Encrypt then
        // Signed as empty, refused as base64 (as decrypt refuses null).
        verifySignature token e.Timestamp e.Nonce e.Encrypt e.MsgSignature
        |> Result.bind (fun () ->
            if keys.IsEmpty then
                Error InvalidAesKey
            else
                Error InvalidBase64)
    else
        openEnvelopeOf token keys appId e.Timestamp e.Nonce e.MsgSignature (e.Encrypt.AsMemory())

/// An encrypted passive reply: the four fields WeChat expects.
type SealedReply =
    {
        Encrypt: string
        MsgSignature: string
        TimeStamp: string
        Nonce: string
    }

let sealReply token key appId random16 timestamp nonce message =
    let encrypted = encrypt key appId random16 message

    {
        Encrypt = encrypted
        MsgSignature = msgSignature token timestamp nonce encrypted
        TimeStamp = timestamp
        Nonce = nonce
    }

/// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`, the body of an encrypted reply.
let replyXml (r: SealedReply) =
    $"<xml><Encrypt><![CDATA[{r.Encrypt}]]></Encrypt><MsgSignature><![CDATA[{r.MsgSignature}]]></MsgSignature><TimeStamp>{r.TimeStamp}</TimeStamp><Nonce><![CDATA[{r.Nonce}]]></Nonce></xml>"

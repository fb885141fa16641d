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
let private sortedSha1Hex (parts: string[]) =
    let parts = parts |> Array.map (fun s -> if isNull s then "" else s)
    Array.sortInPlaceWith (fun a b -> String.CompareOrdinal(a, b)) parts

    let buffer =
        Buffers.ArrayPool<byte>.Shared.Rent(parts |> Array.sumBy Encoding.UTF8.GetByteCount)

    try
        let mutable length = 0

        for p in parts do
            length <- length + Encoding.UTF8.GetBytes(p, 0, p.Length, buffer, length)

        SHA1.HashData(ReadOnlySpan(buffer, 0, length)) |> Convert.ToHexStringLower
    finally
        Buffers.ArrayPool<byte>.Shared.Return buffer

/// msg_signature = sha1 over the sorted token, timestamp, nonce and Encrypt, lower-case hex.
let msgSignature (token: string) (timestamp: string) (nonce: string) (encrypted: string) =
    sortedSha1Hex [| token; timestamp; nonce; encrypted |]

/// The plain-mode signature (token, timestamp, nonce), used by the URL verification handshake.
let plainSignature (token: string) (timestamp: string) (nonce: string) =
    sortedSha1Hex [| token; timestamp; nonce |]

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

let verifySignature token timestamp nonce encrypted (signature: string) =
    if sameHex (msgSignature token timestamp nonce encrypted) signature then
        Ok()
    else
        Error SignatureMismatch

let private blockSize = 32

let private pad (data: byte[]) =
    let n = blockSize - data.Length % blockSize
    Array.append data (Array.create n (byte n))

/// The plaintext and its length without the padding (no copy).
let private unpad (data: byte[]) =
    if data.Length = 0 then
        Error InvalidPadding
    else
        let n = int data[data.Length - 1]

        if n < 1 || n > blockSize || n > data.Length then
            Error InvalidPadding
        else
            Ok(data, data.Length - n)

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

let private fromBase64 (s: string) =
    if isNull s then
        Error InvalidBase64
    else
        let buffer = Array.zeroCreate<byte>(s.Length * 3 / 4 + 3)
        let mutable written = 0

        if Convert.TryFromBase64String(s, Span buffer, &written) then
            Ok(ArraySegment(buffer, 0, written))
        else
            Error InvalidBase64

let private decryptBlocks (key: AesKey) (cipher: ArraySegment<byte>) =
    if cipher.Count = 0 || cipher.Count % 16 <> 0 then
        Error AesDecryptFailed
    else
        Ok(
            (ThreadAes.For key)
                .DecryptCbc(ReadOnlySpan(cipher.Array, cipher.Offset, cipher.Count), iv key, PaddingMode.None)
        )

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

/// Base64 → AES-CBC → strip padding → unframe, for one key.
let decrypt (key: AesKey) (appId: string) (encrypted: string) : Result<string, CryptoError> =
    fromBase64 encrypted
    |> Result.bind (decryptBlocks key)
    |> Result.bind unpad
    |> Result.bind (unframe appId)

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
let openEnvelope (token: string) (keys: AesKey list) (appId: string) (e: Envelope) =
    verifySignature token e.Timestamp e.Nonce e.Encrypt e.MsgSignature
    |> Result.bind (fun () ->
        let rec attempt firstError remaining =
            match remaining with
            | [] -> Error(defaultArg firstError InvalidAesKey)
            | k :: rest ->
                match decrypt k appId e.Encrypt with
                | Ok msg -> Ok(msg, k)
                | Error err -> attempt (Some(defaultArg firstError err)) rest

        attempt None keys)

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

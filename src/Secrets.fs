/// Secrets at rest: tickets, tokens and refresh tokens are sealed with AES-256-GCM under the master key
/// (`WeChatFs:Secrets:MasterKey`) before they reach the store, so a copied database file gives nothing.
module WeChatFs.Secrets

open System
open System.Security.Cryptography
open System.Text

type SecretError =
    | NotSealed
    | Tampered
    | InvalidMasterKey of reason: string

/// 32 bytes; only MasterKey.ofBase64 / MasterKey.ofBytes make one.
type MasterKey = private MasterKey of byte[]

module MasterKey =
    let ofBytes (bytes: byte[]) =
        if isNull bytes || bytes.Length <> 32 then
            Error(InvalidMasterKey "must be exactly 32 bytes")
        else
            Ok(MasterKey(Array.copy bytes))

    let ofBase64 (text: string) =
        try
            ofBytes (Convert.FromBase64String(if isNull text then "" else text.Trim()))
        with :? FormatException ->
            Error(InvalidMasterKey "is not valid base64")

    /// A short fingerprint so operators can tell keys apart without seeing one.
    let fingerprint (MasterKey k) =
        SHA256.HashData(k)[..3] |> Convert.ToHexStringLower

let private prefix = "v1:"

/// `v1:` + base64(nonce 12 | tag 16 | ciphertext); the nonce is the caller's fresh randomness.
let seal (MasterKey key) (nonce12: byte[]) (plain: string) =
    let data = Encoding.UTF8.GetBytes plain
    let cipher = Array.zeroCreate<byte> data.Length
    let tag = Array.zeroCreate<byte> 16
    use gcm = new AesGcm(key, 16)
    gcm.Encrypt(ReadOnlySpan nonce12, ReadOnlySpan data, Span cipher, Span tag)
    prefix + Convert.ToBase64String(Array.concat [ nonce12; tag; cipher ])

let unseal (MasterKey key) (sealedText: string) =
    if isNull sealedText || not (sealedText.StartsWith prefix) then
        Error NotSealed
    else
        try
            let raw = Convert.FromBase64String(sealedText.Substring prefix.Length)

            if raw.Length < 28 then
                Error Tampered
            else
                let plain = Array.zeroCreate<byte>(raw.Length - 28)
                use gcm = new AesGcm(key, 16)

                gcm.Decrypt(
                    ReadOnlySpan(raw, 0, 12),
                    ReadOnlySpan(raw, 28, raw.Length - 28),
                    ReadOnlySpan(raw, 12, 16),
                    Span plain
                )

                Ok(Encoding.UTF8.GetString plain)
        with
        | :? FormatException
        | :? AuthenticationTagMismatchException -> Error Tampered

/// The edge's sealer: draws a fresh nonce for every value.
type Sealer(key: MasterKey) =
    member _.Seal(plain: string) =
        seal key (RandomNumberGenerator.GetBytes 12) plain

    member _.Unseal(sealedText: string) = unseal key sealedText

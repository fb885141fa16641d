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

/// A key for one purpose, derived from the master key (HKDF-SHA256), so no second secret is needed.
let deriveKey (MasterKey key) (purpose: string) =
    HKDF.DeriveKey(HashAlgorithmName.SHA256, key, 32, Array.empty, Encoding.UTF8.GetBytes purpose)

/// The `state` of an authorization link: the tenant and an expiry, HMAC-signed, so nobody can bind an
/// account to another tenant or reuse an old link.
module AuthState =
    type StateError =
        | Malformed
        | BadSignature
        | Expired

    let private b64url (bytes: byte[]) =
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_')

    let private unb64url (text: string) =
        let s = text.Replace('-', '+').Replace('_', '/')
        let padded = s + String('=', (4 - s.Length % 4) % 4)

        try
            Some(Convert.FromBase64String padded)
        with :? FormatException ->
            None

    let private mac (key: byte[]) (payload: string) =
        HMACSHA256.HashData(key, Encoding.UTF8.GetBytes payload)

    /// `<base64url(tenant)>.<expiry unix seconds>.<base64url(nonce)>.<base64url(hmac)>`
    let sign (key: byte[]) (expiresAt: DateTimeOffset) (nonce: byte[]) (tenant: string) =
        let payload =
            $"{b64url (Encoding.UTF8.GetBytes tenant)}.{expiresAt.ToUnixTimeSeconds()}.{b64url nonce}"

        payload + "." + b64url (mac key payload)

    let verify (key: byte[]) (now: DateTimeOffset) (state: string) =
        match (if isNull state then "" else state).Split '.' with
        | [| t; exp; n; sigText |] ->
            let payload = $"{t}.{exp}.{n}"

            match unb64url sigText, unb64url t, Int64.TryParse exp with
            | Some given, Some tenant, (true, expiry) ->
                // The signature's last character carries bits that decoding drops: only the one
                // spelling sign writes is accepted, so no change to a state goes unnoticed.
                if
                    b64url given <> sigText
                    || not (CryptographicOperations.FixedTimeEquals(ReadOnlySpan given, ReadOnlySpan(mac key payload)))
                then
                    Error BadSignature
                elif now.ToUnixTimeSeconds() > expiry then
                    Error Expired
                else
                    try
                        Ok(UTF8Encoding(false, true).GetString tenant)
                    with :? ArgumentException ->
                        Error Malformed
            | _ -> Error Malformed
        | _ -> Error Malformed

/// WeChat's message crypto as the simulator's servers do it (facts §2), written separately from the
/// gateway's so that a mistake in one is caught by the other.
module WeChatFs.Simulator.SimCrypto

open System
open System.Security.Cryptography
open System.Text

/// EncodingAESKey + "=" is base64 of the 32-byte key (facts §2.1). The 43rd character carries two
/// unused bits that may be set, so the bits are taken by hand instead of through a strict decoder.
let aesKey (encodingAesKey: string) =
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    if encodingAesKey.Length <> 43 then
        invalidArg (nameof encodingAesKey) "an EncodingAESKey has 43 characters"

    let bits =
        encodingAesKey
        |> Seq.collect (fun c ->
            let v = alphabet.IndexOf c

            if v < 0 then
                invalidArg (nameof encodingAesKey) "not a base64 character"

            [ for shift in 5..-1..0 -> (v >>> shift) &&& 1 ])
        |> Array.ofSeq

    Array.init 32 (fun i -> Seq.fold (fun acc b -> (acc <<< 1) ||| bits[i * 8 + b]) 0 [ 0..7 ] |> byte)

/// sha1 of the four values sorted as plain strings and concatenated (facts §2.3).
let signature (token: string) (timestamp: string) (nonce: string) (encrypt: string) =
    let joined =
        [ token; timestamp; nonce; encrypt ]
        |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
        |> String.Concat

    SHA1.HashData(Encoding.UTF8.GetBytes joined)
    |> Array.map (fun b -> b.ToString "x2")
    |> String.Concat

let private cipher (key: byte[]) =
    let aes = Aes.Create()
    aes.Key <- key
    aes.IV <- key[0..15]
    aes.Mode <- CipherMode.CBC
    aes.Padding <- PaddingMode.None
    aes

/// random(16) | length (4, big-endian) | message | appid, padded PKCS#7-style to 32 bytes (facts §2.2).
let encrypt (key: byte[]) (appId: string) (random16: byte[]) (message: string) =
    let body = Encoding.UTF8.GetBytes message

    let length =
        [|
            byte (body.Length >>> 24)
            byte (body.Length >>> 16)
            byte (body.Length >>> 8)
            byte body.Length
        |]

    let plain = Array.concat [ random16; length; body; Encoding.UTF8.GetBytes appId ]
    let padLength = 32 - plain.Length % 32
    let padded = Array.append plain (Array.create padLength (byte padLength))
    use aes = cipher key
    use enc = aes.CreateEncryptor()
    Convert.ToBase64String(enc.TransformFinalBlock(padded, 0, padded.Length))

/// Returns the message and the appid at its end; None for anything that does not decrypt cleanly.
let decrypt (key: byte[]) (encrypted: string) =
    try
        let data = Convert.FromBase64String encrypted
        use aes = cipher key
        use dec = aes.CreateDecryptor()
        let plain = dec.TransformFinalBlock(data, 0, data.Length)
        let pad = int plain[plain.Length - 1]

        if pad < 1 || pad > 32 then
            None
        else
            let content = plain[.. plain.Length - pad - 1]

            let length =
                (int content[16] <<< 24)
                ||| (int content[17] <<< 16)
                ||| (int content[18] <<< 8)
                ||| int content[19]

            let message = Encoding.UTF8.GetString(content, 20, length)

            let appId =
                Encoding.UTF8.GetString(content, 20 + length, content.Length - 20 - length)

            Some(message, appId)
    with _ ->
        None

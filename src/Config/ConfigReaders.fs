/// Reading one configuration value under `WeChatFs:`: text, URLs, keys, durations, numbers and flags,
/// each with its default, and a ConfigError naming the key, the problem and the fix when it is bad.
/// Config.fs and OAuthConfig.fs read every setting through these.
module WeChatFs.ConfigReaders

open System
open Microsoft.Extensions.Configuration
open WeChatFs.Settings

let key (name: string) = "WeChatFs:" + name

let text (cfg: IConfiguration) name =
    match cfg[key name] with
    | null -> None
    | v when String.IsNullOrWhiteSpace v -> None
    | v -> Some(v.Trim())

let required cfg name fix =
    match text cfg name with
    | Some v -> Ok v
    | None ->
        Error
            {
                Key = key name
                Problem = "is not set"
                Fix = fix
            }

let absoluteUrl cfg name (defaultValue: string) =
    let raw = text cfg name |> Option.defaultValue defaultValue

    match Uri.TryCreate(raw.TrimEnd '/', UriKind.Absolute) with
    | true, u when u.Scheme = "http" || u.Scheme = "https" -> Ok u
    | _ ->
        Error
            {
                Key = key name
                Problem = $"'{raw}' is not an absolute http(s) URL"
                Fix = "give the full URL, e.g. https://gateway.example.com"
            }

let optionalUrl cfg name =
    match text cfg name with
    | None -> Ok None
    | Some raw -> absoluteUrl cfg name raw |> Result.map Some

let aesKey cfg name =
    match text cfg name with
    | None -> Ok None
    | Some v ->
        match Crypto.AesKey.create v with
        | Ok k -> Ok(Some k)
        | Error _ ->
            Error
                {
                    Key = key name
                    Problem = "is not a 43-character EncodingAESKey of letters and digits"
                    Fix = "copy the 消息加解密Key exactly as WeChat's console shows it"
                }

let timeSpan cfg name (defaultValue: TimeSpan) (minimum: TimeSpan) =
    match text cfg name with
    | None -> Ok defaultValue
    | Some v ->
        match TimeSpan.TryParse v with
        | true, t when t >= minimum -> Ok t
        | _ ->
            Error
                {
                    Key = key name
                    Problem = $"'{v}' is not a duration of at least {minimum}"
                    Fix = "write it as hh:mm:ss, e.g. 00:10:00"
                }

let positiveInt cfg name (fallback: int) =
    match text cfg name with
    | None -> Ok fallback
    | Some v ->
        match Int32.TryParse v with
        | true, n when n >= 1 -> Ok n
        | _ ->
            Error
                {
                    Key = key name
                    Problem = $"'{v}' is not a whole number of at least 1"
                    Fix = "write a number, e.g. 10"
                }

let flag cfg name (fallback: bool) =
    match text cfg name with
    | None -> Ok fallback
    | Some v ->
        match v.ToLowerInvariant() with
        | "true" -> Ok true
        | "false" -> Ok false
        | _ ->
            Error
                {
                    Key = key name
                    Problem = $"'{v}' is not true or false"
                    Fix = "write true or false"
                }

let byteCount cfg name (fallback: int64) =
    match text cfg name with
    | None -> Ok fallback
    | Some v ->
        match Int64.TryParse v with
        | true, n when n >= 1024L && n <= int64 Int32.MaxValue -> Ok n
        | _ ->
            Error
                {
                    Key = key name
                    Problem = $"'{v}' is not a number of bytes between 1024 and {Int32.MaxValue}"
                    Fix = "write the limit in bytes, e.g. 10485760 for 10 MiB"
                }

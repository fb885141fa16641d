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

/// The one reader of a value with a default: absent or blank takes `fallback`; otherwise `parse`
/// must accept it, or the error names the key, says `problem` of the value and gives `fix`.
let parsed cfg name (fallback: 'T) (parse: string -> 'T option) (problem: string -> string) (fix: string) =
    match text cfg name with
    | None -> Ok fallback
    | Some v ->
        match parse v with
        | Some x -> Ok x
        | None ->
            Error
                {
                    Key = key name
                    Problem = problem v
                    Fix = fix
                }

let private tryParseWith (tryParse: string -> bool * 'T) (accept: 'T -> bool) (v: string) =
    match tryParse v with
    | true, x when accept x -> Some x
    | _ -> None

let timeSpan cfg name (defaultValue: TimeSpan) (minimum: TimeSpan) =
    parsed
        cfg
        name
        defaultValue
        (tryParseWith (fun v -> TimeSpan.TryParse v) (fun t -> t >= minimum))
        (fun v -> $"'{v}' is not a duration of at least {minimum}")
        "write it as hh:mm:ss, e.g. 00:10:00"

/// A duration inside [minimum, maximum]; `fix` shows a sensible example for this setting.
let timeSpanBetween cfg name (defaultValue: TimeSpan) (minimum: TimeSpan) (maximum: TimeSpan) (fix: string) =
    parsed
        cfg
        name
        defaultValue
        (tryParseWith (fun v -> TimeSpan.TryParse v) (fun t -> t >= minimum && t <= maximum))
        (fun v -> $"'{v}' is not a duration between {minimum} and {maximum}")
        fix

/// A whole number of at least `minimum`; `fix` shows a sensible example for this setting.
let private wholeNumberFrom (minimum: int) (fix: string) cfg name (fallback: int) =
    parsed
        cfg
        name
        fallback
        (tryParseWith (fun v -> Int32.TryParse v) (fun n -> n >= minimum))
        (fun v -> $"'{v}' is not a whole number of at least {minimum}")
        fix

let positiveInt cfg name fallback =
    wholeNumberFrom 1 "write a number, e.g. 10" cfg name fallback

/// 0 turns the setting off.
let nonNegativeInt cfg name fallback =
    wholeNumberFrom 0 "write a number, e.g. 10000, or 0 to turn it off" cfg name fallback

let flag cfg name (fallback: bool) =
    parsed
        cfg
        name
        fallback
        (fun v ->
            match v.ToLowerInvariant() with
            | "true" -> Some true
            | "false" -> Some false
            | _ -> None)
        (fun v -> $"'{v}' is not true or false")
        "write true or false"

let byteCount cfg name (fallback: int64) =
    parsed
        cfg
        name
        fallback
        (tryParseWith (fun v -> Int64.TryParse v) (fun n -> n >= 1024L && n <= int64 Int32.MaxValue))
        (fun v -> $"'{v}' is not a number of bytes between 1024 and {Int32.MaxValue}")
        "write the limit in bytes, e.g. 10485760 for 10 MiB"

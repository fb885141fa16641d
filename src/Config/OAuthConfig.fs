/// The settings of web pages on behalf of accounts, read like Config.fs reads the rest: the wxTkId
/// lifetime, funcKey routes and domain verification files seeded from configuration. A bad value
/// names the key, the problem and the fix.
module WeChatFs.OAuthConfig

open System
open System.Text
open Microsoft.Extensions.Configuration
open WeChatFs.Config
open WeChatFs.ConfigReaders
open WeChatFs.Settings
open WeChatFs.OAuth

type OAuthOptions =
    {
        /// How long a wxTkId resolves to its follower.
        TrackingTokenLifetime: TimeSpan
        /// Routes from `WeChatFs:OAuth:FuncKeys:{funcKey}:...`, stored at start (they win over the API's).
        FuncKeys: FuncKeyRoute list
        /// Files from `WeChatFs:VerificationFiles:{name}` (the value is the content), stored at start.
        VerificationFiles: (string * string) list
    }

let defaults =
    {
        TrackingTokenLifetime = TimeSpan.FromMinutes 30.
        FuncKeys = []
        VerificationFiles = []
    }

/// A setting's text by its full key, "" when absent or blank (a route's parts are checked by OAuth.route).
let private value (cfg: IConfiguration) (fullKey: string) =
    text cfg (fullKey.Substring "WeChatFs:".Length) |> Option.defaultValue ""

let private lifetime (cfg: IConfiguration) =
    timeSpanBetween
        cfg
        "OAuth:TrackingTokenLifetime"
        defaults.TrackingTokenLifetime
        (TimeSpan.FromSeconds 10.)
        (TimeSpan.FromDays 30.)
        "write it as hh:mm:ss, e.g. 00:30:00"

let private funcKeys (cfg: IConfiguration) =
    [
        for child in cfg.GetSection("WeChatFs:OAuth:FuncKeys").GetChildren() do
            let prefix = $"WeChatFs:OAuth:FuncKeys:{child.Key}"

            match
                route
                    child.Key
                    (value cfg (prefix + ":TargetUrl"))
                    (match value cfg (prefix + ":Scope") with
                     | "" -> "snsapi_base"
                     | s -> s)
                    (value cfg (prefix + ":Description"))
                    (value cfg (prefix + ":Tenant"))
            with
            | Ok r -> Ok r
            | Error e ->
                let key, fix =
                    match e.Field with
                    | "func_key" -> prefix, "name the section with letters, digits, '_' or '-' only"
                    | "target_url" ->
                        prefix + ":TargetUrl", "give the business page's full URL, e.g. https://shop.example.com/member"
                    | "scope" -> prefix + ":Scope", "use snsapi_base (silent) or snsapi_userinfo (consent and profile)"
                    | _ -> prefix + ":Description", "shorten it"

                Error
                    {
                        Key = key
                        Problem = e.Problem
                        Fix = fix
                    }
    ]

let private verificationFiles (cfg: IConfiguration) =
    [
        for child in cfg.GetSection("WeChatFs:VerificationFiles").GetChildren() do
            let key = $"WeChatFs:VerificationFiles:{child.Key}"
            let content = if isNull child.Value then "" else child.Value

            if not (isVerificationFileName child.Key) then
                Error
                    {
                        Key = key
                        Problem = "is not a verification file name"
                        Fix =
                            "use the name WeChat gives, e.g. MP_verify_abc123.txt (letters, digits, '_', '-', then .txt)"
                    }
            elif Encoding.UTF8.GetByteCount content > maxVerificationFileBytes then
                Error
                    {
                        Key = key
                        Problem = $"holds more than {maxVerificationFileBytes} bytes"
                        Fix = "give the file's content exactly as WeChat shows it"
                    }
            else
                Ok(child.Key, content)
    ]

/// Every problem at once, like Config.load.
let load (cfg: IConfiguration) : Result<OAuthOptions, ConfigError list> =
    let routes = funcKeys cfg
    let files = verificationFiles cfg
    let life = lifetime cfg

    let errors =
        [
            match life with
            | Error e -> e
            | Ok _ -> ()
            for r in routes do
                match r with
                | Error e -> e
                | Ok _ -> ()
            for f in files do
                match f with
                | Error e -> e
                | Ok _ -> ()
        ]

    match errors, life with
    | [], Ok l ->
        Ok
            {
                TrackingTokenLifetime = l
                FuncKeys =
                    routes
                    |> List.choose (function
                        | Ok r -> Some r
                        | Error _ -> None)
                VerificationFiles =
                    files
                    |> List.choose (function
                        | Ok f -> Some f
                        | Error _ -> None)
            }
    | errors, _ -> Error errors

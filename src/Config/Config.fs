/// The gateway's settings, read from standard ASP.NET configuration (appsettings.json, environment
/// variables such as WeChatFs__Component__AppId, or --WeChatFs:Component:AppId=...) and validated once
/// at start: a bad value stops the start with a message naming the key and the fix.
module WeChatFs.Config

open System
open System.IO
open FsToolkit.ErrorHandling
open Microsoft.Extensions.Configuration
open WeChatFs.Domain

type ConfigError =
    {
        Key: string
        Problem: string
        Fix: string
    }

let describe (e: ConfigError) = $"{e.Key}: {e.Problem}. Fix: {e.Fix}"

type WebhookOptions =
    {
        /// Where messages and events go; None = stored only.
        Url: Uri option
        /// A different URL for some tenants.
        TenantUrls: Map<string, Uri>
        /// Signs each body (X-WeChatFs-Signature); None = unsigned.
        Secret: string option
        /// How long WeChat's answer waits for the webhook's reply (WeChat itself waits 5 s).
        ReplyTimeout: TimeSpan
        /// Attempts in all before a delivery is dead-lettered.
        MaxAttempts: int
        /// The first retry's delay; each further one doubles it, up to ten minutes.
        RetryBase: TimeSpan
        /// How often each instance looks for due deliveries.
        PollInterval: TimeSpan
        /// How long a delivered message stays in the inbox (and in `GET /api/deliveries`) before it
        /// is deleted. At least an hour, so that WeChat's retries of it are still recognised.
        DeliveredRetention: TimeSpan
    }

/// Cash red packets (`WeChatFs:RedPacks:*`).
type RedPackOptions =
    {
        /// How often a sent packet is checked with gethbinfo until a final status.
        ReconcileInterval: TimeSpan
        /// The first wait before an undecided packet is queried; doubled each time, up to five minutes.
        ResolveRetryBase: TimeSpan
        /// How long one call to WeChat Pay may take.
        SendTimeout: TimeSpan
        /// How often each instance looks for packets due a check.
        PollInterval: TimeSpan
        /// gethbinfo's err_code values that mean "no such mch_billno" (facts §11.2 names none: [U]).
        NotFoundCodes: Set<string>
        /// client_ip sent to WeChat Pay; None = the address the request came in on.
        ClientIp: string option
    }

/// Limits that keep a flood or a trick from costing more than it should (see the README's
/// "Security and failure behaviour").
type HardeningOptions =
    {
        /// The largest body the proxies pass on to WeChat; larger ones are answered 413 unread.
        ProxyMaxBodyBytes: int64
        /// Whether `/wechat/component/authorize?tenant=X` works without a link the business issued.
        AllowUnsignedTenant: bool
        /// Refusals of one reason logged per minute; the rest are only counted.
        RefusalLogsPerMinute: int
        /// At most one api_start_push_ticket per this interval after WeChat refused the ticket.
        TicketPushRequestInterval: TimeSpan
    }

/// Mini-program deployments (MiniPrograms.fs, Deployments.fs).
type MiniProgramOptions =
    {
        /// get_auditstatus when no audit event came within this long.
        AuditPollInterval: TimeSpan
        /// How often each instance looks for targets that are due.
        WorkerInterval: TimeSpan
        /// How long a claimed target stays with its worker before another instance may take it.
        ClaimLease: TimeSpan
        /// The first retry's delay after -1 or a broken connection; doubled each time.
        RetryDelay: TimeSpan
        /// The wait after 61039 (code scan not finished).
        ScanRetryDelay: TimeSpan
        /// The wait after 85085, or while queryquota says no submission is left.
        QuotaRetryDelay: TimeSpan
        /// How often a deployment asks wxa/queryquota before submitting.
        QuotaCheckInterval: TimeSpan
        /// Attempts of one step before a transient error counts as failed.
        MaxAttempts: int
    }

type GatewayOptions =
    {
        ComponentAppId: ComponentAppId
        AppSecret: string
        Token: string
        /// The current EncodingAESKey first, then the previous one after a rotation.
        AesKeys: Crypto.AesKey list
        PublicBaseUrl: Uri
        ApiBaseUrl: Uri
        MpBaseUrl: Uri
        OpenBaseUrl: Uri
        PayBaseUrl: Uri
        /// A PEM file with the CA that WeChat Pay's server certificate must chain to; None = system trust.
        PayServerCaCertificate: string option
        StorageProvider: string
        ConnectionString: string
        /// Where the SQLite file and a generated master key live.
        DataFolder: string
        /// SQLite only: pushes are acknowledged once in the intake log, and written to the inbox
        /// table from there (Storage:IntakeLog, default true).
        IntakeLog: bool
        MasterKey: string option
        AdminApiKey: string option
        TokenPolicy: TokenPolicy
        /// How often the background check refreshes tokens that are due.
        CheckInterval: TimeSpan
        /// How long a refresh may hold the cross-instance lease before another instance may take over.
        RefreshLease: TimeSpan
        /// Name of this instance in leases and logs.
        InstanceId: string
        /// Where the browser goes after a successful authorization (with appid and tenant); None = our page.
        AuthorizationReturnUrl: Uri option
        /// How long an authorization link's signed state stays valid.
        AuthorizationStateLifetime: TimeSpan
        /// Spreads authorizer refreshes over up to this much before the margin, per account.
        AuthorizerRefreshJitter: TimeSpan
        Webhooks: WebhookOptions
        /// How long the event log (unknown pushes, fast-register results, ...) keeps a record.
        EventRetention: TimeSpan
        /// Answers WeChat's full-network release check for its test accounts (facts §6).
        ReleaseResponder: bool
        RedPacks: RedPackOptions
        Hardening: HardeningOptions
        MiniProgram: MiniProgramOptions
    }

let private key (name: string) = "WeChatFs:" + name

let private text (cfg: IConfiguration) name =
    match cfg[key name] with
    | null -> None
    | v when String.IsNullOrWhiteSpace v -> None
    | v -> Some(v.Trim())

let private required cfg name fix =
    match text cfg name with
    | Some v -> Ok v
    | None ->
        Error
            {
                Key = key name
                Problem = "is not set"
                Fix = fix
            }

let private absoluteUrl cfg name (defaultValue: string) =
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

let private optionalUrl cfg name =
    match text cfg name with
    | None -> Ok None
    | Some raw -> absoluteUrl cfg name raw |> Result.map Some

let private aesKey cfg name =
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

let private timeSpan cfg name (defaultValue: TimeSpan) (minimum: TimeSpan) =
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

/// The SQLite file's folder, from `Data Source=...`; the data folder for a generated master key.
let dataFolderOf (provider: string) (connectionString: string) =
    if provider = "sqlite" then
        connectionString.Split(';', StringSplitOptions.RemoveEmptyEntries)
        |> Array.tryPick (fun part ->
            match part.Split('=', 2) with
            | [| k; v |] when
                k.Trim().Equals("Data Source", StringComparison.OrdinalIgnoreCase)
                || k.Trim().Equals("DataSource", StringComparison.OrdinalIgnoreCase)
                ->
                Some(v.Trim())
            | _ -> None)
        |> Option.map (fun file ->
            match Path.GetDirectoryName file with
            | null
            | "" -> "."
            | dir -> dir)
        |> Option.defaultValue "data"
    else
        "data"

let private positiveInt cfg name (fallback: int) =
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

let private tenantUrls (cfg: IConfiguration) =
    cfg.GetSection(key "Webhooks:Tenants").GetChildren()
    |> Seq.map (fun child ->
        let name = $"Webhooks:Tenants:{child.Key}:Url"

        match text cfg name with
        | Some raw -> absoluteUrl cfg name raw |> Result.map (fun u -> child.Key, u)
        | None ->
            Error
                {
                    Key = key name
                    Problem = "is not set"
                    Fix = "give the tenant's webhook URL, or remove the tenant's section"
                })
    |> Seq.fold
        (fun acc r ->
            match acc, r with
            | Ok m, Ok(k, u) -> Ok(Map.add k u m)
            | Error e, _ -> Error e
            | _, Error e -> Error e)
        (Ok Map.empty)

let private webhooks cfg =
    validation {
        let! url = optionalUrl cfg "Webhooks:Url"
        and! tenants = tenantUrls cfg

        and! replyTimeout =
            timeSpan cfg "Webhooks:ReplyTimeout" (TimeSpan.FromSeconds 3.) TimeSpan.Zero

        and! maxAttempts = positiveInt cfg "Webhooks:MaxAttempts" 10

        and! retryBase =
            timeSpan cfg "Webhooks:RetryBase" (TimeSpan.FromSeconds 2.) (TimeSpan.FromMilliseconds 10.)

        and! poll =
            timeSpan cfg "Webhooks:PollInterval" (TimeSpan.FromSeconds 1.) (TimeSpan.FromMilliseconds 10.)

        and! retention =
            timeSpan cfg "Webhooks:DeliveredRetention" (TimeSpan.FromDays 7.) (TimeSpan.FromHours 1.)

        return
            {
                Url = url
                TenantUrls = tenants
                Secret = text cfg "Webhooks:Secret"
                ReplyTimeout = replyTimeout
                MaxAttempts = maxAttempts
                RetryBase = retryBase
                PollInterval = poll
                DeliveredRetention = retention
            }
    }

let private miniProgram cfg =
    let span name (d: TimeSpan) =
        timeSpan cfg ("MiniProgram:" + name) d (TimeSpan.FromMilliseconds 10.)

    validation {
        let! poll = span "AuditPollInterval" (TimeSpan.FromMinutes 30.)
        and! worker = span "WorkerInterval" (TimeSpan.FromSeconds 1.)

        and! lease =
            timeSpan cfg "MiniProgram:ClaimLease" (TimeSpan.FromMinutes 2.) (TimeSpan.FromSeconds 1.)

        and! retry = span "RetryDelay" (TimeSpan.FromSeconds 30.)
        and! scan = span "ScanRetryDelay" (TimeSpan.FromMinutes 5.)
        and! quota = span "QuotaRetryDelay" (TimeSpan.FromHours 1.)
        and! quotaCheck = span "QuotaCheckInterval" (TimeSpan.FromMinutes 10.)
        and! attempts = positiveInt cfg "MiniProgram:MaxAttempts" 5

        return
            {
                AuditPollInterval = poll
                WorkerInterval = worker
                ClaimLease = lease
                RetryDelay = retry
                ScanRetryDelay = scan
                QuotaRetryDelay = quota
                QuotaCheckInterval = quotaCheck
                MaxAttempts = attempts
            }
    }

let private requireAesKey cfg name =
    aesKey cfg name
    |> Result.bind (function
        | Some k -> Ok k
        | None ->
            Error
                {
                    Key = key name
                    Problem = "is not set"
                    Fix = "set the 43-character 消息加解密Key from WeChat's console"
                })

let private storage cfg =
    let provider = text cfg "Storage:Provider" |> Option.defaultValue "sqlite"

    let connectionString =
        text cfg "Storage:ConnectionString"
        |> Option.defaultValue (
            if provider = "sqlite" then
                "Data Source=data/wechatfs.db"
            else
                ""
        )

    if provider <> "sqlite" && provider <> "postgres" then
        Error
            {
                Key = key "Storage:Provider"
                Problem = $"'{provider}' is not a known store"
                Fix = "use sqlite (embedded, the default) or postgres"
            }
    elif connectionString = "" then
        Error
            {
                Key = key "Storage:ConnectionString"
                Problem = "is required for postgres"
                Fix = "give an Npgsql connection string, e.g. Host=db;Username=wechatfs;Password=...;Database=wechatfs"
            }
    else
        Ok(provider, connectionString)

let private masterKey cfg =
    match text cfg "Secrets:MasterKey" with
    | None -> Ok None
    | Some v ->
        match Secrets.MasterKey.ofBase64 v with
        | Ok _ -> Ok(Some v)
        | Error _ ->
            Error
                {
                    Key = key "Secrets:MasterKey"
                    Problem = "is not base64 of exactly 32 bytes"
                    Fix =
                        "generate one with `openssl rand -base64 32`, or remove it to have one generated into the data folder"
                }

let private payServerCa cfg =
    match text cfg "WeChat:PayServerCaCertificate" with
    | None -> Ok None
    | Some path when not (File.Exists path) ->
        Error
            {
                Key = key "WeChat:PayServerCaCertificate"
                Problem = $"the file '{path}' does not exist"
                Fix =
                    "give the path of a PEM file with the CA certificate, or remove the key to use the system's trust store"
            }
    | Some path ->
        try
            use _ =
                Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText path)

            Ok(Some path)
        with ex ->
            Error
                {
                    Key = key "WeChat:PayServerCaCertificate"
                    Problem = $"'{path}' is not a PEM certificate ({ex.Message})"
                    Fix = "give a file starting with -----BEGIN CERTIFICATE-----"
                }

let private redPacks cfg =
    validation {
        let! reconcile =
            timeSpan cfg "RedPacks:ReconcileInterval" (TimeSpan.FromMinutes 10.) (TimeSpan.FromMilliseconds 100.)

        and! retryBase =
            timeSpan cfg "RedPacks:ResolveRetryBase" (TimeSpan.FromSeconds 1.) (TimeSpan.FromMilliseconds 10.)

        and! timeout =
            timeSpan cfg "RedPacks:SendTimeout" (TimeSpan.FromSeconds 15.) (TimeSpan.FromMilliseconds 100.)

        and! poll =
            timeSpan cfg "RedPacks:PollInterval" (TimeSpan.FromSeconds 1.) (TimeSpan.FromMilliseconds 10.)

        and! clientIp =
            match text cfg "RedPacks:ClientIp" with
            | Some ip when ip.Length > 15 || not (fst (Net.IPAddress.TryParse ip)) ->
                Error
                    {
                        Key = key "RedPacks:ClientIp"
                        Problem = $"'{ip}' is not an IPv4 address"
                        Fix = "give the gateway's outbound IPv4 address, e.g. 203.0.113.7, or remove the key"
                    }
            | other -> Ok other

        return
            {
                ReconcileInterval = reconcile
                ResolveRetryBase = retryBase
                SendTimeout = timeout
                PollInterval = poll
                NotFoundCodes =
                    text cfg "RedPacks:NotFoundCodes"
                    |> Option.defaultValue "NOT_FOUND"
                    |> fun v -> v.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
                    |> Set.ofArray
                ClientIp = clientIp
            }
    }

let private flag cfg name (fallback: bool) =
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

let private byteCount cfg name (fallback: int64) =
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

let private hardening cfg =
    validation {
        let! maxBody = byteCount cfg "Proxy:MaxBodyBytes" (10L * 1024L * 1024L)
        and! unsigned = flag cfg "Authorization:AllowUnsignedTenant" false
        and! perMinute = positiveInt cfg "Logging:RefusalLogsPerMinute" 10

        and! pushInterval =
            timeSpan cfg "Component:TicketPushRequestInterval" (TimeSpan.FromMinutes 1.) (TimeSpan.FromSeconds 1.)

        return
            {
                ProxyMaxBodyBytes = maxBody
                AllowUnsignedTenant = unsigned
                RefusalLogsPerMinute = perMinute
                TicketPushRequestInterval = pushInterval
            }
    }

/// Reads and validates everything, reporting all problems at once so one restart fixes them all.
let load (cfg: IConfiguration) : Result<GatewayOptions, ConfigError list> =
    validation {
        let! appId =
            required cfg "Component:AppId" "set the platform's AppID (第三方平台 appid), e.g. WeChatFs__Component__AppId"

        and! secret =
            required cfg "Component:AppSecret" "set the platform's AppSecret from WeChat's console"

        and! token =
            required cfg "Component:Token" "set the message verification Token (消息校验Token)"

        and! aes = requireAesKey cfg "Component:EncodingAesKey"
        and! previous = aesKey cfg "Component:PreviousEncodingAesKey"
        and! publicBase = absoluteUrl cfg "PublicBaseUrl" "http://127.0.0.1:5080"
        and! apiBase = absoluteUrl cfg "WeChat:ApiBaseUrl" "https://api.weixin.qq.com"
        and! mpBase = absoluteUrl cfg "WeChat:MpBaseUrl" "https://mp.weixin.qq.com"
        and! openBase = absoluteUrl cfg "WeChat:OpenBaseUrl" "https://open.weixin.qq.com"
        and! payBase = absoluteUrl cfg "WeChat:PayBaseUrl" "https://api.mch.weixin.qq.com"

        and! margin =
            timeSpan cfg "Component:TokenRefreshMargin" (TimeSpan.FromMinutes 10.) TimeSpan.Zero

        and! check =
            timeSpan cfg "Component:CheckInterval" (TimeSpan.FromSeconds 30.) (TimeSpan.FromMilliseconds 50.)

        and! lease =
            timeSpan cfg "Storage:RefreshLease" (TimeSpan.FromSeconds 30.) (TimeSpan.FromSeconds 1.)

        and! provider, connectionString = storage cfg
        and! intakeLog = flag cfg "Storage:IntakeLog" true
        and! master = masterKey cfg
        and! returnUrl = optionalUrl cfg "Authorization:ReturnUrl"

        and! stateLifetime =
            timeSpan cfg "Authorization:StateLifetime" (TimeSpan.FromHours 1.) (TimeSpan.FromMinutes 1.)

        and! jitter =
            timeSpan cfg "Authorizers:RefreshJitter" (TimeSpan.FromMinutes 2.) TimeSpan.Zero

        and! hooks = webhooks cfg
        and! mini = miniProgram cfg

        and! eventRetention =
            timeSpan cfg "Events:Retention" (TimeSpan.FromDays 90.) (TimeSpan.FromDays 1.)

        and! payCa = payServerCa cfg
        and! redPackOptions = redPacks cfg
        and! limits = hardening cfg

        return
            {
                ComponentAppId = ComponentAppId appId
                AppSecret = secret
                Token = token
                AesKeys = aes :: Option.toList previous
                PublicBaseUrl = publicBase
                ApiBaseUrl = apiBase
                MpBaseUrl = mpBase
                OpenBaseUrl = openBase
                PayBaseUrl = payBase
                PayServerCaCertificate = payCa
                StorageProvider = provider
                ConnectionString = connectionString
                DataFolder =
                    text cfg "Storage:DataFolder"
                    |> Option.defaultValue (dataFolderOf provider connectionString)
                IntakeLog = intakeLog && provider = "sqlite"
                MasterKey = master
                AdminApiKey = text cfg "Admin:ApiKey"
                TokenPolicy =
                    { TokenPolicy.defaults with
                        RefreshMargin = margin
                    }
                CheckInterval = check
                RefreshLease = lease
                InstanceId =
                    text cfg "InstanceId"
                    |> Option.defaultValue $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}"
                AuthorizationReturnUrl = returnUrl
                AuthorizationStateLifetime = stateLifetime
                AuthorizerRefreshJitter = jitter
                Webhooks = hooks
                EventRetention = eventRetention
                ReleaseResponder =
                    text cfg "ReleaseTest:Enabled"
                    |> Option.forall (fun v -> v.ToLowerInvariant() <> "false")
                RedPacks = redPackOptions
                Hardening = limits
                MiniProgram = mini
            }
    }

// ---- the operator's side: console and metrics ------------------------------------------------------

/// The operator console and the metrics endpoint; kept apart from GatewayOptions so that a host can
/// read them without the platform's credentials.
type OperatorOptions =
    {
        /// `/console` is mapped (sign-in with the admin key).
        ConsoleEnabled: bool
        /// How long a console sign-in lasts before the operator signs in again.
        SessionLifetime: TimeSpan
        /// `/metrics` answers without the admin key (for a Prometheus on a private network).
        MetricsAnonymous: bool
    }

let loadOperator (cfg: IConfiguration) : Result<OperatorOptions, ConfigError list> =
    validation {
        let! enabled = flag cfg "Console:Enabled" true

        and! lifetime =
            timeSpan cfg "Console:SessionLifetime" (TimeSpan.FromHours 8.) (TimeSpan.FromMinutes 1.)

        and! anonymous = flag cfg "Metrics:Anonymous" false

        return
            {
                ConsoleEnabled = enabled
                SessionLifetime = lifetime
                MetricsAnonymous = anonymous
            }
    }

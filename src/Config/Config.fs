/// The gateway's settings, read from standard ASP.NET configuration (appsettings.json, environment
/// variables such as WeChatFs__Component__AppId, or --WeChatFs:Component:AppId=...) and validated once
/// at start: a bad value stops the start with a message naming the key and the fix.
module WeChatFs.Config

open System
open System.IO
open FsToolkit.ErrorHandling
open Microsoft.Extensions.Configuration
open WeChatFs.Domain

open WeChatFs.Settings
open WeChatFs.ConfigReaders


/// The SQLite file's folder, from `Data Source=...`; the data folder for a generated master key.
let dataFolderOf (provider: StorageProvider) (connectionString: string) =
    if provider = Sqlite then
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
    let name = text cfg "Storage:Provider" |> Option.defaultValue "sqlite"
    let provider = StorageProvider.ofName name

    let connectionString =
        text cfg "Storage:ConnectionString"
        |> Option.defaultValue (
            if provider = Some Sqlite then
                "Data Source=data/wechatfs.db"
            else
                ""
        )

    match provider with
    | None ->
        Error
            {
                Key = key "Storage:Provider"
                Problem = $"'{name}' is not a known store"
                Fix = "use sqlite (embedded, the default) or postgres"
            }
    | Some _ when connectionString = "" ->
        Error
            {
                Key = key "Storage:ConnectionString"
                Problem = "is required for postgres"
                Fix = "give an Npgsql connection string, e.g. Host=db;Username=wechatfs;Password=...;Database=wechatfs"
            }
    | Some provider -> Ok(provider, connectionString)

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

        and! intakeGather =
            timeSpanBetween
                cfg
                "Storage:IntakeSyncGather"
                (TimeSpan.FromMilliseconds 1.)
                TimeSpan.Zero
                (TimeSpan.FromMilliseconds 100.)
                "write it as hh:mm:ss.fff, e.g. 00:00:00.001"

        and! vacuumAfter = nonNegativeInt cfg "Storage:InboxVacuumAfter" 10000
        and! master = masterKey cfg
        and! returnUrl = optionalUrl cfg "Authorization:ReturnUrl"

        and! stateLifetime =
            timeSpan cfg "Authorization:StateLifetime" (TimeSpan.FromHours 1.) (TimeSpan.FromMinutes 1.)

        and! jitter =
            timeSpan cfg "Authorizers:RefreshJitter" (TimeSpan.FromMinutes 2.) TimeSpan.Zero

        and! pacedFrom = positiveInt cfg "Authorizers:PacedFrom" 1000
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
                IntakeLog = intakeLog && provider = Sqlite
                IntakeSyncGather = intakeGather
                InboxVacuumAfter = vacuumAfter
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
                AuthorizerPacedFrom = pacedFrom
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

/// The gateway's settings as types: what Config.fs reads and validates from configuration, and the
/// error that names a bad key, the problem and the fix.
module WeChatFs.Settings

open System
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

/// Where the gateway keeps its state (`WeChatFs:Storage:Provider`).
type StorageProvider =
    /// The embedded file database, the default.
    | Sqlite
    /// A PostgreSQL server, for several instances.
    | Postgres

module StorageProvider =
    /// The name in configuration, and the store's name for it.
    let name =
        function
        | Sqlite -> "sqlite"
        | Postgres -> "postgres"

    let ofName =
        function
        | "sqlite" -> Some Sqlite
        | "postgres" -> Some Postgres
        | _ -> None

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
        StorageProvider: StorageProvider
        ConnectionString: string
        /// Where the SQLite file and a generated master key live.
        DataFolder: string
        /// SQLite only: pushes are acknowledged once in the intake log, and written to the inbox
        /// table from there (Storage:IntakeLog, default true).
        IntakeLog: bool
        /// Under load, how long the intake log lets appends gather before its next sync, so that
        /// one sync covers many pushes (Storage:IntakeSyncGather, default 1 ms; zero: sync at once).
        IntakeSyncGather: TimeSpan
        /// PostgreSQL only: the delivery worker vacuums the inbox once this many of its rows were
        /// written or changed since its last vacuum (Storage:InboxVacuumAfter, default 10,000; 0
        /// leaves it to autovacuum).
        InboxVacuumAfter: int
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
        /// From this many accounts on, refreshes are paced evenly over a token's life (Decisions.Pacing).
        AuthorizerPacedFrom: int
        Webhooks: WebhookOptions
        /// How long the event log (unknown pushes, fast-register results, ...) keeps a record.
        EventRetention: TimeSpan
        /// Answers WeChat's full-network release check for its test accounts (facts §6).
        ReleaseResponder: bool
        RedPacks: RedPackOptions
        Hardening: HardeningOptions
        MiniProgram: MiniProgramOptions
    }

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

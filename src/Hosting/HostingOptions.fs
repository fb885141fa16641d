/// The options overload for C# hosts: `services.AddWeChatFs(o => { o.ComponentAppId = ...; })`, with
/// plain properties mapped onto the documented configuration keys and validated by the same code
/// (and with the same messages) as `check-config`; and check-config itself as a C# call.
namespace WeChatFs

open System
open System.Collections.Generic
open System.Globalization
open System.Runtime.CompilerServices
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection

/// <summary>The gateway's settings as properties. Each one is a configuration key of the README's
/// table (named in its documentation); a property left null takes that key's default. Validated when
/// <c>AddWeChatFs</c> runs.</summary>
[<Sealed>]
type WeChatFsOptions() =
    /// WeChatFs:Component:AppId, the platform's AppID. Required.
    member val ComponentAppId: string | null = null with get, set
    /// WeChatFs:Component:AppSecret. Required.
    member val ComponentAppSecret: string | null = null with get, set
    /// WeChatFs:Component:Token, the message verification token. Required.
    member val Token: string | null = null with get, set
    /// WeChatFs:Component:EncodingAesKey, 43 characters. Required.
    member val EncodingAesKey: string | null = null with get, set
    /// WeChatFs:Component:PreviousEncodingAesKey, still accepted after a rotation.
    member val PreviousEncodingAesKey: string | null = null with get, set
    /// WeChatFs:Component:TokenRefreshMargin (default 10 minutes).
    member val TokenRefreshMargin = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Component:CheckInterval (default 30 seconds).
    member val CheckInterval = Nullable<TimeSpan>() with get, set
    /// WeChatFs:PublicBaseUrl, how WeChat and browsers reach the gateway.
    member val PublicBaseUrl: string | null = null with get, set
    /// WeChatFs:WeChat:ApiBaseUrl (WeChat's API host; the simulator's URL in tests).
    member val ApiBaseUrl: string | null = null with get, set
    /// WeChatFs:WeChat:MpBaseUrl.
    member val MpBaseUrl: string | null = null with get, set
    /// WeChatFs:WeChat:OpenBaseUrl.
    member val OpenBaseUrl: string | null = null with get, set
    /// WeChatFs:WeChat:PayBaseUrl.
    member val PayBaseUrl: string | null = null with get, set
    /// WeChatFs:Storage:Provider, sqlite (default) or postgres.
    member val StorageProvider: string | null = null with get, set
    /// WeChatFs:Storage:ConnectionString.
    member val ConnectionString: string | null = null with get, set
    /// WeChatFs:Storage:DataFolder, where a generated master key is kept.
    member val DataFolder: string | null = null with get, set
    /// WeChatFs:Storage:IntakeLog (SQLite only, default true): pushes acknowledged once in the
    /// intake log, and written to the inbox table from there.
    member val IntakeLog = Nullable<bool>() with get, set

    /// WeChatFs:Storage:IntakeSyncGather (default 1 ms, at most 100 ms): under load, how long the
    /// intake log lets pushes gather before its next sync; zero syncs at once.
    member val IntakeSyncGather = Nullable<TimeSpan>() with get, set

    /// WeChatFs:Storage:InboxVacuumAfter (PostgreSQL only, default 10,000; 0 leaves it to
    /// autovacuum): how many inbox rows written or changed since its last vacuum make the delivery
    /// worker vacuum it.
    member val InboxVacuumAfter = Nullable<int>() with get, set

    /// WeChatFs:Storage:RefreshLease (default 30 seconds).
    member val RefreshLease = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Secrets:MasterKey, base64 of 32 bytes.
    member val MasterKey: string | null = null with get, set
    /// WeChatFs:Admin:ApiKey, the bearer key of the internal API.
    member val AdminApiKey: string | null = null with get, set
    /// WeChatFs:InstanceId.
    member val InstanceId: string | null = null with get, set
    /// WeChatFs:Authorization:ReturnUrl.
    member val AuthorizationReturnUrl: string | null = null with get, set
    /// WeChatFs:Authorization:StateLifetime (default 1 hour).
    member val AuthorizationStateLifetime = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Authorizers:RefreshJitter (default 2 minutes).
    member val AuthorizerRefreshJitter = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Webhooks:Url.
    member val WebhookUrl: string | null = null with get, set
    /// WeChatFs:Webhooks:Secret.
    member val WebhookSecret: string | null = null with get, set
    /// WeChatFs:Webhooks:ReplyTimeout (default 3 seconds).
    member val WebhookReplyTimeout = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Webhooks:MaxAttempts (default 10).
    member val WebhookMaxAttempts = Nullable<int>() with get, set
    /// WeChatFs:Webhooks:RetryBase (default 2 seconds).
    member val WebhookRetryBase = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Webhooks:PollInterval (default 1 second).
    member val WebhookPollInterval = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Webhooks:DeliveredRetention (default 7 days).
    member val WebhookDeliveredRetention = Nullable<TimeSpan>() with get, set
    /// WeChatFs:Webhooks:Tenants:&lt;tenant&gt;:Url, a tenant's own webhook.
    member val WebhookTenantUrls: IDictionary<string, string> = Dictionary<string, string>() with get, set
    /// WeChatFs:Events:Retention (default 90 days).
    member val EventRetention = Nullable<TimeSpan>() with get, set
    /// WeChatFs:ReleaseTest:Enabled (default true).
    member val ReleaseTestEnabled = Nullable<bool>() with get, set

    /// <summary>Any other key, by its name under <c>WeChatFs:</c> (e.g. <c>Component:AppId</c>); a
    /// property above wins over the same key here.</summary>
    member val Settings: IDictionary<string, string> = Dictionary<string, string>() with get, set

    /// <summary>The options as configuration keys and values (<c>WeChatFs:...</c>).</summary>
    member this.ToConfiguration() : IDictionary<string, string> =
        let values = Dictionary<string, string>()

        let put (name: string) (value: string | null) =
            match value with
            | null -> ()
            | value -> values["WeChatFs:" + name] <- value

        let span name (value: Nullable<TimeSpan>) =
            if value.HasValue then
                put name (value.Value.ToString("c", CultureInfo.InvariantCulture))

        // Null only when a caller ignored the annotation; such a caller gets the defaults.
        if not (obj.ReferenceEquals(this.Settings, null)) then
            for KeyValue(k, v) in this.Settings do
                put k v

        put "Component:AppId" this.ComponentAppId
        put "Component:AppSecret" this.ComponentAppSecret
        put "Component:Token" this.Token
        put "Component:EncodingAesKey" this.EncodingAesKey
        put "Component:PreviousEncodingAesKey" this.PreviousEncodingAesKey
        span "Component:TokenRefreshMargin" this.TokenRefreshMargin
        span "Component:CheckInterval" this.CheckInterval
        put "PublicBaseUrl" this.PublicBaseUrl
        put "WeChat:ApiBaseUrl" this.ApiBaseUrl
        put "WeChat:MpBaseUrl" this.MpBaseUrl
        put "WeChat:OpenBaseUrl" this.OpenBaseUrl
        put "WeChat:PayBaseUrl" this.PayBaseUrl
        put "Storage:Provider" this.StorageProvider
        put "Storage:ConnectionString" this.ConnectionString
        put "Storage:DataFolder" this.DataFolder
        span "Storage:RefreshLease" this.RefreshLease
        put "Secrets:MasterKey" this.MasterKey
        put "Admin:ApiKey" this.AdminApiKey
        put "InstanceId" this.InstanceId
        put "Authorization:ReturnUrl" this.AuthorizationReturnUrl
        span "Authorization:StateLifetime" this.AuthorizationStateLifetime
        span "Authorizers:RefreshJitter" this.AuthorizerRefreshJitter
        put "Webhooks:Url" this.WebhookUrl
        put "Webhooks:Secret" this.WebhookSecret
        span "Webhooks:ReplyTimeout" this.WebhookReplyTimeout

        if this.WebhookMaxAttempts.HasValue then
            put "Webhooks:MaxAttempts" (this.WebhookMaxAttempts.Value.ToString CultureInfo.InvariantCulture)

        span "Webhooks:RetryBase" this.WebhookRetryBase
        span "Webhooks:PollInterval" this.WebhookPollInterval
        span "Webhooks:DeliveredRetention" this.WebhookDeliveredRetention

        if not (obj.ReferenceEquals(this.WebhookTenantUrls, null)) then
            for KeyValue(tenant, url) in this.WebhookTenantUrls do
                put $"Webhooks:Tenants:{tenant}:Url" url

        span "Events:Retention" this.EventRetention

        if this.ReleaseTestEnabled.HasValue then
            put "ReleaseTest:Enabled" (if this.ReleaseTestEnabled.Value then "true" else "false")

        if this.IntakeLog.HasValue then
            put "Storage:IntakeLog" (if this.IntakeLog.Value then "true" else "false")

        span "Storage:IntakeSyncGather" this.IntakeSyncGather

        if this.InboxVacuumAfter.HasValue then
            put "Storage:InboxVacuumAfter" (this.InboxVacuumAfter.Value.ToString CultureInfo.InvariantCulture)

        values

/// check-config as a call: the configuration's problems, each as `key: problem. Fix: fix`.
[<AbstractClass; Sealed>]
type WeChatFsConfiguration =
    /// <summary>Every problem of <paramref name="configuration"/>; empty when the gateway can start with it.</summary>
    static member Check(configuration: IConfiguration) : IReadOnlyList<string> =
        match Startup.loadAll configuration with
        | Ok _ -> Array.empty :> _
        | Error errors -> errors |> List.map Settings.describe |> Array.ofList :> _

    /// <summary>Every problem of <paramref name="options"/>; empty when the gateway can start with them.</summary>
    static member Check(options: WeChatFsOptions) : IReadOnlyList<string> =
        WeChatFsConfiguration.Check(ConfigurationBuilder().AddInMemoryCollection(options.ToConfiguration()).Build())

/// services.AddWeChatFs(options => ...), for C# hosts.
[<Extension; AbstractClass; Sealed>]
type WeChatFsOptionsExtensions =
    /// <summary>Registers the gateway configured by <paramref name="configure"/>; the options are
    /// validated now, as <c>check-config</c> does (throws <see cref="WeChatFsConfigurationException"/>
    /// naming each key, problem and fix).</summary>
    [<Extension>]
    static member AddWeChatFs(services: IServiceCollection, configure: Action<WeChatFsOptions>) : IServiceCollection =
        ArgumentNullException.ThrowIfNull configure
        let options = WeChatFsOptions()
        configure.Invoke options

        let configuration =
            ConfigurationBuilder().AddInMemoryCollection(options.ToConfiguration()).Build()

        services.AddWeChatFs(configuration :> IConfiguration)

/// WeChat's errcodes explained (`wechatfs explain`), for C# callers.
[<AbstractClass; Sealed>]
type WeChatFsErrorGuide =
    /// <summary>What <paramref name="errcode"/> means and what to do about it.</summary>
    static member Explain(errcode: int) : string = ErrorGuide.explain errcode

    /// <summary>Whether the guide knows <paramref name="errcode"/>.</summary>
    static member IsKnown(errcode: int) : bool = (ErrorGuide.tryFind errcode).IsSome

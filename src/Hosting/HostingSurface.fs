/// The gateway's in-process surface for C# applications: IWeChatFsTokens (the component and
/// authorizer tokens, through the same single-flight, leases and store as the HTTP API), the
/// exception it throws, and the store migration that runs when the host starts. Only .NET types
/// appear in these signatures, so C# needs no F# library to call them.
namespace WeChatFs

open System
open System.Runtime.InteropServices
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain

/// Why a token could not be had.
type WeChatFsTokenFailure =
    /// No component_verify_ticket that WeChat would accept has arrived yet; WeChat pushes one every 10 minutes.
    | NoTicket = 1
    /// WeChat refused the refresh or could not be reached; <see cref="WeChatFsTokenException.Errcode"/> says which errcode.
    | RefreshFailed = 2
    /// The token is being refreshed (by another instance, or after a failure backing off); try again shortly.
    | RefreshBusy = 3
    /// No account with this appid has authorized the platform.
    | UnknownAuthorizer = 4
    /// The refresh token was refused (61023) and none could be recovered: the merchant must authorize again.
    | NeedsReauthorization = 5
    /// The account withdrew its authorization (61003 or an unauthorized push).
    | Revoked = 6

/// An access token and the instant it expires.
[<Sealed>]
type WeChatFsAccessToken(token: string, expiresAt: DateTimeOffset) =
    /// The token to pass to WeChat as access_token (or component_access_token).
    member _.Token = token
    /// When WeChat stops accepting it; the gateway refreshes it before then.
    member _.ExpiresAt = expiresAt
    /// Never the token itself, so that logging the object cannot leak it.
    override _.ToString() = $"access token (expires {expiresAt:O})"

/// A token could not be had. <see cref="Failure"/> says why; <see cref="Errcode"/> is WeChat's errcode
/// when WeChat gave one (explained by <c>wechatfs explain &lt;errcode&gt;</c>).
type WeChatFsTokenException(failure: WeChatFsTokenFailure, errcode: Nullable<int>, message: string) =
    inherit Exception(message)
    /// Why the token could not be had.
    member _.Failure = failure
    /// WeChat's errcode (e.g. 61023), or null when WeChat gave none.
    member _.Errcode = errcode

/// The component and authorizer access tokens, in-process: the same tokens, refreshes and store as
/// the gateway's token API (one refresh at a time across every instance on the store).
type IWeChatFsTokens =
    /// The component_access_token. Throws <see cref="WeChatFsTokenException"/> when none can be had.
    abstract GetComponentAccessTokenAsync:
        [<Optional>] cancellationToken: CancellationToken -> Task<WeChatFsAccessToken>

    /// The authorizer_access_token of the account <paramref name="authorizerAppId"/>. Throws
    /// <see cref="WeChatFsTokenException"/> when none can be had (unknown account, authorization
    /// withdrawn or to be renewed, WeChat refusing).
    abstract GetAuthorizerAccessTokenAsync:
        authorizerAppId: string * [<Optional>] cancellationToken: CancellationToken -> Task<WeChatFsAccessToken>

/// IWeChatFsTokens over the gateway's own token services.
type internal WeChatFsTokens
    (components: ComponentTokens.ComponentTokenService, authorizers: Authorizers.AuthorizerService) =
    static let componentFailure (e: ComponentTokens.TokenError) =
        let failure, errcode =
            match e with
            | ComponentTokens.NoTicket -> WeChatFsTokenFailure.NoTicket, Nullable()
            | ComponentTokens.RefreshFailed w ->
                WeChatFsTokenFailure.RefreshFailed, WeChatClient.errcodeOfError w |> Option.toNullable
            | ComponentTokens.RefreshBusy -> WeChatFsTokenFailure.RefreshBusy, Nullable()

        WeChatFsTokenException(failure, errcode, ComponentTokens.describeTokenError e)

    static let authorizerFailure (e: AuthorizerCommon.AuthorizerTokenError) =
        match e with
        | AuthorizerCommon.UnknownAuthorizer ->
            WeChatFsTokenException(
                WeChatFsTokenFailure.UnknownAuthorizer,
                Nullable(),
                "no account with this appid has authorized the platform"
            )
        | AuthorizerCommon.Unusable(Revoked, reason) ->
            WeChatFsTokenException(WeChatFsTokenFailure.Revoked, Nullable 61003, reason)
        | AuthorizerCommon.Unusable(status, reason) ->
            let errcode =
                if reason.StartsWith("61023", StringComparison.Ordinal) then
                    Nullable 61023
                else
                    Nullable()

            let failure =
                match status with
                | Authorized -> WeChatFsTokenFailure.RefreshFailed
                | _ -> WeChatFsTokenFailure.NeedsReauthorization

            WeChatFsTokenException(failure, errcode, reason)
        | AuthorizerCommon.ComponentTokenUnavailable t -> componentFailure t
        | AuthorizerCommon.AuthorizerRefreshFailed w ->
            WeChatFsTokenException(
                WeChatFsTokenFailure.RefreshFailed,
                WeChatClient.errcodeOfError w |> Option.toNullable,
                WeChatClient.describeError w
            )
        | AuthorizerCommon.AuthorizerRefreshBusy ->
            WeChatFsTokenException(
                WeChatFsTokenFailure.RefreshBusy,
                Nullable(),
                "the token is being refreshed or backing off after a failure; try again shortly"
            )

    interface IWeChatFsTokens with
        member _.GetComponentAccessTokenAsync(cancellationToken) =
            task {
                let! result = components.GetToken().WaitAsync cancellationToken

                match result with
                | Ok t ->
                    let (ComponentAccessToken value) = t.Token
                    return WeChatFsAccessToken(value, t.ExpiresAt)
                | Error e -> return raise (componentFailure e)
            }

        member _.GetAuthorizerAccessTokenAsync(authorizerAppId, cancellationToken) =
            if String.IsNullOrWhiteSpace authorizerAppId then
                raise (ArgumentException("an authorizer appid is required", nameof authorizerAppId))

            task {
                let! result =
                    authorizers.GetToken(AuthorizerAppId authorizerAppId).WaitAsync cancellationToken

                match result with
                | Ok t ->
                    let (AuthorizerAccessToken value) = t.Token
                    return WeChatFsAccessToken(value, t.ExpiresAt)
                | Error e -> return raise (authorizerFailure e)
            }

/// Brings the store's schema up to date when the host starts, before any hosted service or request
/// uses it (the lifecycle's Starting step runs before every StartAsync, the server's included).
type internal StoreMigrator
    (options: Settings.GatewayOptions, store: Store.IStore, key: Secrets.MasterKey, logger: ILogger<StoreMigrator>) =
    interface IHostedLifecycleService with
        member _.StartingAsync(_cancellationToken) =
            task {
                do! store.Migrate()
                // Before anything is served: claims this instance held before a crash are free again.
                let! released = store.ReleaseClaims(options.InstanceId)

                if released > 0 then
                    logger.LogInformation("released {Count} deliveries claimed before a restart", released)

                logger.LogInformation(
                    "store {Provider} ready (master key {Fingerprint})",
                    store.Provider,
                    Secrets.MasterKey.fingerprint key
                )
            }

        member _.StartedAsync _ = Task.CompletedTask
        member _.StoppingAsync _ = Task.CompletedTask
        member _.StoppedAsync _ = Task.CompletedTask

    interface IHostedService with
        member _.StartAsync _ = Task.CompletedTask
        member _.StopAsync _ = Task.CompletedTask

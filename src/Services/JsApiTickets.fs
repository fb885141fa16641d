/// The jsapi_ticket of each authorizer (facts §8), kept like its tokens: from memory while fresh,
/// stored sealed, fetched before expiry by one caller across every instance (an in-process gate plus
/// a store lease), and fetched again with a renewed authorizer token when WeChat says 40001.
module WeChatFs.JsApiTickets

open System
open System.Collections.Concurrent
open System.Security.Cryptography
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.Wire
open WeChatFs.AuthorizerCommon
open WeChatFs.Authorizers
open WeChatFs.OAuthStore

type JsApiError =
    | AuthorizerUnavailable of AuthorizerTokenError
    | TicketRefused of WeChatError
    /// Another instance holds the lease and did not finish in time.
    | TicketBusy

/// What `wx.config` takes (facts §8).
type JsSdkConfig =
    {
        AppId: string
        Timestamp: int64
        NonceStr: string
        Signature: string
    }

type JsApiTicketService
    (
        options: GatewayOptions,
        store: IStore,
        oauthStore: IOAuthStore,
        client: Client,
        authorizers: AuthorizerService,
        clock: TimeProvider,
        logger: ILogger<JsApiTicketService>
    ) =
    let margin = options.TokenPolicy.RefreshMargin
    let cache = ConcurrentDictionary<AuthorizerAppId, Expiring<string>>()
    let gates = ConcurrentDictionary<AuthorizerAppId, SemaphoreSlim>()

    let fresh (t: Expiring<string>) =
        not (Expiring.isDue margin (clock.GetUtcNow()) t)

    let getTicket (token: AuthorizerAccessToken) =
        client.GetJson(
            "/cgi-bin/ticket/getticket",
            [ "access_token", Ids.authorizerToken token; "type", "jsapi" ],
            fun root ->
                match stringProp "ticket" root with
                | Some t when t <> "" -> Ok(t, defaultArg (intProp "expires_in" root) 7200)
                | _ -> Error(InvalidResponse "ticket is missing")
        )

    /// getticket with the authorizer's token; a token WeChat rejects is renewed once.
    let fetch (appid: AuthorizerAppId) =
        task {
            match! authorizers.GetToken appid with
            | Error e -> return Error(AuthorizerUnavailable e)
            | Ok t ->
                match! getTicket t.Token with
                | Error err when failureKind err = TokenRejected ->
                    let! _ = authorizers.Invalidate(appid, t.Token)

                    match! authorizers.GetToken appid with
                    | Error e -> return Error(AuthorizerUnavailable e)
                    | Ok renewed ->
                        let! second = getTicket renewed.Token
                        return second |> Result.mapError TicketRefused
                | other -> return other |> Result.mapError TicketRefused
        }

    let awaitOtherInstance appid (fallback: Expiring<string> option) =
        task {
            let deadline = DateTime.UtcNow + options.RefreshLease
            let mutable result = None

            while result.IsNone && DateTime.UtcNow < deadline do
                do! Task.Delay 50

                match! oauthStore.JsApiTicket appid with
                | Some t when fresh t ->
                    cache[appid] <- t
                    result <- Some t
                | _ -> ()

            return
                match result |> Option.orElse fallback with
                | Some t -> Ok t
                | None -> Error TicketBusy
        }

    let slowPath (appid: AuthorizerAppId) =
        task {
            let gate = gates.GetOrAdd(appid, fun _ -> new SemaphoreSlim(1, 1))
            do! gate.WaitAsync()

            try
                match! oauthStore.JsApiTicket appid with
                | Some t when fresh t ->
                    cache[appid] <- t
                    return Ok t
                | stored ->
                    let now = clock.GetUtcNow()
                    // A ticket inside the margin still works: it answers while a new one cannot be had.
                    let fallback = stored |> Option.filter (Expiring.isUsable now)
                    let lease = "jsapi-ticket:" + Ids.authorizerAppId appid

                    let! outcome =
                        Leases.run store lease options.InstanceId now (now + options.RefreshLease) (fun () ->
                            task {
                                // Re-read under the lease: another instance may have fetched one already.
                                match! oauthStore.JsApiTicket appid with
                                | Some t when fresh t -> return Ok t
                                | _ ->
                                    match! fetch appid with
                                    | Ok(ticket, expiresIn) ->
                                        let issued = Expiring.issued (clock.GetUtcNow()) expiresIn ticket
                                        do! oauthStore.SaveJsApiTicket(appid, issued)
                                        return Ok issued
                                    | Error e ->
                                        logger.LogWarning(
                                            "jsapi_ticket of {AppId} could not be fetched: {Error}",
                                            Ids.authorizerAppId appid,
                                            (match e with
                                             | TicketRefused w -> describeError w
                                             | AuthorizerUnavailable _ -> "no usable authorizer token"
                                             | TicketBusy -> "busy")
                                        )

                                        return
                                            match fallback with
                                            | Some t -> Ok t
                                            | None -> Error e
                            })

                    match outcome with
                    | Some(Ok t) ->
                        cache[appid] <- t
                        return Ok t
                    | Some(Error e) -> return Error e
                    | None -> return! awaitOtherInstance appid fallback
            finally
                gate.Release() |> ignore
        }

    /// The authorizer's jsapi_ticket: from memory while fresh, else from the store, else fetched once.
    member _.GetTicket(appid: AuthorizerAppId) : Task<Result<Expiring<string>, JsApiError>> =
        match cache.TryGetValue appid with
        | true, t when fresh t -> Task.FromResult(Ok t)
        | _ -> slowPath appid

    /// The `wx.config` fields for a page of `url` (its `#` part is not signed).
    member this.Config(appid: AuthorizerAppId, url: string) =
        task {
            match! this.GetTicket appid with
            | Error e -> return Error e
            | Ok ticket ->
                let timestamp = clock.GetUtcNow().ToUnixTimeSeconds()
                let nonce = OAuth.nonceStr (RandomNumberGenerator.GetBytes 16)

                return
                    Ok
                        {
                            AppId = Ids.authorizerAppId appid
                            Timestamp = timestamp
                            NonceStr = nonce
                            Signature = OAuth.jsSdkSignature ticket.Token nonce timestamp url
                        }
        }

/// What the authorizer services share: their error unions, the authorization links and the URLs of
/// WeChat's authorization pages, the refresh jitter and coalescing windows, and the component-token
/// wrapper every call to WeChat on an account's behalf goes through.
module WeChatFs.AuthorizerCommon

open System
open System.Security.Cryptography
open System.Text
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens

type AuthorizationError =
    | ComponentUnavailable of TokenError
    | WeChatRefused of WeChatError
    /// Another instance held the code's exchange lease for the whole lease time without finishing.
    | ExchangeBusy

let describeAuthorizationError =
    function
    | ComponentUnavailable e -> describeTokenError e
    | WeChatRefused e -> describeError e
    | ExchangeBusy -> "another instance is still exchanging this authorization code"

type AuthorizerTokenError =
    | UnknownAuthorizer
    | Unusable of AuthorizerStatus * reason: string
    | ComponentTokenUnavailable of TokenError
    | AuthorizerRefreshFailed of WeChatError
    | AuthorizerRefreshBusy

type AuthorizationLinks =
    {
        PreAuthCode: PreAuthCode
        PcUrl: string
        MobileUrl: string
        ExpiresAt: DateTimeOffset
    }

type SyncReport =
    {
        Total: int
        Imported: int
        Updated: int
    }

/// Spreads refreshes of tokens issued together over a few minutes, the same for every instance.
let jitterFor (maxJitter: TimeSpan) (AuthorizerAppId appid) =
    if maxJitter <= TimeSpan.Zero then
        TimeSpan.Zero
    else
        let h = SHA256.HashData(Encoding.UTF8.GetBytes appid)
        let n = BitConverter.ToUInt32(h, 0)
        TimeSpan.FromSeconds(float (n % uint32 (max 1.0 maxJitter.TotalSeconds)))

let private query (pairs: (string * string option) list) =
    pairs
    |> List.choose (fun (k, v) -> v |> Option.map (fun v -> $"{k}={Uri.EscapeDataString v}"))
    |> String.concat "&"

/// The PC scan page and the mobile link (facts §4.1, §4.2).
let authorizationUrls
    (mpBase: Uri)
    (ComponentAppId appId)
    (PreAuthCode code)
    (redirectUri: string)
    (authType: int option)
    (bizAppId: string option)
    =
    let common =
        [
            "component_appid", Some appId
            "pre_auth_code", Some code
            "redirect_uri", Some redirectUri
            "auth_type", authType |> Option.map string
            "biz_appid", bizAppId
        ]

    let baseUrl = mpBase.ToString().TrimEnd '/'
    let pc = $"{baseUrl}/cgi-bin/componentloginpage?{query common}"

    let mobile =
        $"""{baseUrl}/safe/bindcomponent?{query ([ "action", Some "bindcomponent"; "no_scan", Some "1" ] @ common)}#wechat_redirect"""

    pc, mobile

/// Forced refreshes this close to the last one share its token.
let forceCoalescing = TimeSpan.FromSeconds 5.

/// Whether a forced refresh at `now` is answered by the token fetched at `refreshedAt`.
let coalesced (now: DateTimeOffset) (refreshedAt: DateTimeOffset) =
    now - refreshedAt < forceCoalescing && now >= refreshedAt

/// A call with the component token, its failure as an AuthorizationError.
let withComponent (components: ComponentTokenService) call =
    task {
        match! components.WithToken call with
        | Ok v -> return Ok v
        | Error(ComponentTokenFailed e) -> return Error(ComponentUnavailable e)
        | Error(WeChatCallFailed e) -> return Error(WeChatRefused e)
    }

/// Appends to the event log what happened to an account, now.
let appendEvent (store: IStore) (clock: TimeProvider) kind (AuthorizerAppId subject) detail =
    store.AppendEvent
        {
            Kind = kind
            Subject = subject
            Detail = detail
            At = clock.GetUtcNow()
        }

/// Pages through api_get_authorizer_list, 500 at a time (facts §3.8).
let listAll (components: ComponentTokenService) (client: Client) =
    task {
        let mutable offset = 0
        let mutable total = Int32.MaxValue
        let mutable items = []
        let mutable failure = None

        while failure.IsNone && offset < total do
            match! withComponent components (fun t -> client.GetAuthorizerList(t, offset, 500)) with
            | Ok(count, page) ->
                total <- count
                items <- items @ page
                offset <- if page.IsEmpty then total else offset + page.Length
            | Error e -> failure <- Some e

        return
            match failure with
            | Some e -> Error e
            | None -> Ok items
    }

/// Web OAuth on behalf of an official account (facts §7): funcKey routes, the start URL that sends a
/// follower to WeChat's consent, and the way back: the code exchanged with the component token, the
/// profile fetched for snsapi_userinfo, the follower stored, and a wxTkId minted for the business page.
module WeChatFs.OAuthFlow

open System
open System.Security.Cryptography
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Domain
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.OAuth
open WeChatFs.OAuthConfig
open WeChatFs.OAuthStore
open WeChatFs.Store
open WeChatFs.Wire
open WeChatFs.WeChatClient
open WeChatFs.ComponentTokens

type ReceiveError =
    | Refused of Refusal
    /// The path names another platform's component appid.
    | WrongComponent
    /// A code without the `appid` WeChat adds to the redirect (facts §7).
    | MissingAppId
    /// The same code again (a reload): WeChat would refuse it; nothing is asked.
    | CodeAlreadyUsed
    /// 40029 / 40163: the code is invalid, expired or used.
    | CodeRejected of WeChatError
    | ComponentUnavailable of TokenError
    | WeChatFailed of WeChatError

/// What sns/oauth2/component/access_token answers (facts §7 step 2).
type OAuthGrant =
    {
        AccessToken: string
        ExpiresIn: int
        RefreshToken: string
        OpenId: string
        Scope: string
        UnionId: string option
    }

/// The OAuth refresh token lives 30 days (facts §13).
let refreshTokenLifetime = TimeSpan.FromDays 30.

let private readGrant (root: Text.Json.JsonElement) =
    match stringProp "openid" root, stringProp "access_token" root with
    | Some openid, Some token ->
        Ok
            {
                AccessToken = token
                ExpiresIn = defaultArg (intProp "expires_in" root) 7200
                RefreshToken = stringProp "refresh_token" root |> Option.defaultValue ""
                OpenId = openid
                Scope = stringProp "scope" root |> Option.defaultValue ""
                UnionId = stringProp "unionid" root |> Option.filter (fun u -> u <> "")
            }
    | _ -> Error(InvalidResponse "openid or access_token is missing")

let private readProfile (root: Text.Json.JsonElement) =
    let s name =
        stringProp name root |> Option.defaultValue ""

    Ok(
        {
            NickName = s "nickname"
            Sex = defaultArg (intProp "sex" root) 0
            Province = s "province"
            City = s "city"
            Country = s "country"
            HeadImgUrl = s "headimgurl"
            Privilege = arrayProp "privilege" root |> List.map (fun e -> e.ToString())
        },
        stringProp "unionid" root |> Option.filter (fun u -> u <> "")
    )

type OAuthService
    (
        options: GatewayOptions,
        oauthOptions: OAuthOptions,
        store: IStore,
        oauthStore: IOAuthStore,
        client: Client,
        components: ComponentTokenService,
        clock: TimeProvider,
        logger: ILogger<OAuthService>
    ) =
    let componentAppId = Ids.componentAppId options.ComponentAppId

    let check (appid: AuthorizerAppId) (funcKey: string) =
        task {
            let! route =
                if isFuncKey funcKey then
                    oauthStore.GetFuncKey(FuncKey funcKey)
                else
                    Task.FromResult None

            let! account = store.GetAuthorizer appid
            return admit (route |> Option.map (fun r -> r.Route)) account
        }

    member _.Store = oauthStore
    member _.Options = oauthOptions

    /// The start URL's answer: WeChat's authorize URL for this account and route (facts §7).
    member _.AuthorizeUrl(appid: AuthorizerAppId, funcKey: string, state: string) =
        task {
            match! check appid funcKey with
            | Error r -> return Error r
            | Ok(route, _) ->
                let redirect = receiveUri options.PublicBaseUrl options.ComponentAppId route.FuncKey

                return Ok(authorizeUrl options.OpenBaseUrl appid redirect route.Scope state options.ComponentAppId)
        }

    /// WeChat's redirect back: exchange the code once, store the follower, mint a wxTkId; answers
    /// the business page's URL.
    member _.Receive(pathComponent: string, funcKey: string, code: string option, state: string, appid: string option) =
        task {
            let! route =
                if isFuncKey funcKey then
                    oauthStore.GetFuncKey(FuncKey funcKey)
                else
                    Task.FromResult None

            match route, code, appid with
            | _ when pathComponent <> componentAppId -> return Error WrongComponent
            | None, _, _ -> return Error(Refused UnknownFuncKey)
            // No code: the follower declined (facts §7). WeChat does not say for which account.
            | Some r, None, _ -> return Ok(deniedRedirect r.Route.TargetUrl state)
            | Some _, Some _, None -> return Error MissingAppId
            | Some _, Some code, Some appid ->
                let appid = AuthorizerAppId appid

                match! check appid funcKey with
                | Error refusal -> return Error(Refused refusal)
                | Ok(route, account) ->
                    let codeHash = hashCode code
                    let! claimed = oauthStore.ClaimCode(codeHash, clock.GetUtcNow())

                    if not claimed then
                        return Error CodeAlreadyUsed
                    else
                        let exchange (t: ComponentAccessToken) =
                            client.GetJson(
                                "/sns/oauth2/component/access_token",
                                [
                                    "appid", Ids.authorizerAppId appid
                                    "code", code
                                    "grant_type", "authorization_code"
                                    "component_appid", componentAppId
                                    "component_access_token", Ids.componentToken t
                                ],
                                readGrant
                            )

                        match! components.WithToken exchange with
                        | Error(ComponentTokenFailed e) ->
                            // WeChat never saw the code: a reload may try it again.
                            do! oauthStore.ReleaseCode codeHash
                            return Error(ComponentUnavailable e)
                        | Error(WeChatCallFailed(ApiError((40029 | 40163), _) as e)) -> return Error(CodeRejected e)
                        | Error(WeChatCallFailed e) ->
                            if failureKind e = Transient then
                                do! oauthStore.ReleaseCode codeHash

                            return Error(WeChatFailed e)
                        | Ok grant ->
                            let! profile =
                                match route.Scope with
                                | SnsapiBase -> Task.FromResult None
                                | SnsapiUserinfo ->
                                    task {
                                        match!
                                            client.GetJson(
                                                "/sns/userinfo",
                                                [
                                                    "access_token", grant.AccessToken
                                                    "openid", grant.OpenId
                                                    "lang", "zh_CN"
                                                ],
                                                readProfile
                                            )
                                        with
                                        | Ok p -> return Some p
                                        | Error e ->
                                            // The openid is known; the business page still gets its visitor.
                                            logger.LogWarning("sns/userinfo failed: {Error}", describeError e)
                                            return None
                                    }

                            let now = clock.GetUtcNow()

                            let unionId = grant.UnionId |> Option.orElse (profile |> Option.bind snd)

                            do!
                                oauthStore.SaveFollower
                                    {
                                        AuthorizerAppId = appid
                                        OpenId = OpenId grant.OpenId
                                        UnionId = unionId
                                        Scope = route.Scope
                                        Profile = profile |> Option.map fst
                                        RefreshToken =
                                            if grant.RefreshToken = "" then
                                                None
                                            else
                                                Some grant.RefreshToken
                                        RefreshExpiresAt =
                                            if grant.RefreshToken = "" then
                                                None
                                            else
                                                Some(now + refreshTokenLifetime)
                                        FirstSeenAt = now
                                        UpdatedAt = now
                                    }

                            let token = trackingToken (RandomNumberGenerator.GetBytes 32)

                            do!
                                oauthStore.SaveTrackingToken(
                                    hashTrackingToken token,
                                    {
                                        AuthorizerAppId = appid
                                        OpenId = OpenId grant.OpenId
                                        UnionId = unionId
                                        Tenant = account.Tenant
                                        FuncKey = FuncKey route.FuncKey
                                        Scope = route.Scope
                                        NickName = profile |> Option.map (fun (p, _) -> p.NickName)
                                        HeadImgUrl = profile |> Option.map (fun (p, _) -> p.HeadImgUrl)
                                        ExpiresAt = now + oauthOptions.TrackingTokenLifetime
                                    }
                                )

                            let! _ = oauthStore.PurgeTrackingTokens(now, 100)
                            return Ok(businessRedirect route.TargetUrl token state)
        }

    /// What a wxTkId stands for, while it has not expired.
    member _.Resolve(wxTkId: string) =
        if String.IsNullOrEmpty wxTkId || wxTkId.Length > 200 then
            Task.FromResult None
        else
            oauthStore.GetTrackingToken(hashTrackingToken wxTkId, clock.GetUtcNow())

/// Stores the routes and verification files of the configuration at start, before requests arrive.
type OAuthSeeder(oauthOptions: OAuthOptions, oauthStore: IOAuthStore, clock: TimeProvider, logger: ILogger<OAuthSeeder>)
    =
    interface IHostedService with
        member _.StartAsync(_: CancellationToken) =
            task {
                let now = clock.GetUtcNow()

                for r in oauthOptions.FuncKeys do
                    do! oauthStore.SaveFuncKey(r, "configuration", now)

                for name, content in oauthOptions.VerificationFiles do
                    do! oauthStore.PutVerificationFile(name, content, now)

                if not oauthOptions.FuncKeys.IsEmpty || not oauthOptions.VerificationFiles.IsEmpty then
                    logger.LogInformation(
                        "seeded {Routes} funcKey routes and {Files} verification files from configuration",
                        oauthOptions.FuncKeys.Length,
                        oauthOptions.VerificationFiles.Length
                    )
            }

        member _.StopAsync(_: CancellationToken) = Task.CompletedTask

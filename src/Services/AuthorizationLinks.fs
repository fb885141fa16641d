/// Who may start binding an account to a tenant, and how often a link completes: the authorization
/// start page needs a signed, expiring link that the business issued (`POST /api/authorization-links`),
/// unless `WeChatFs:Authorization:AllowUnsignedTenant` is on; and a `state` completes one
/// authorization: a second authorization code arriving with it is refused.
module WeChatFs.AuthorizationLinks

open System
open System.Security.Cryptography
open System.Text
open System.Threading
open System.Threading.Tasks
open WeChatFs.Store

/// The link's signing key, apart from the state's, so neither can stand in for the other.
let linkKey (stateKey: byte[]) =
    HMACSHA256.HashData(stateKey, Encoding.UTF8.GetBytes "wechatfs/authorization-link")

/// What a link carries: the tenant and the page's options, as the business asked for them.
type LinkContent =
    {
        Tenant: string
        AuthType: string
        BizAppId: string
    }

let private separator = '\n'

/// A signed, expiring token for `?link=`: the content travels inside, so the page cannot be pointed
/// at another tenant without the key.
let sign (key: byte[]) (expiresAt: DateTimeOffset) (content: LinkContent) =
    let payload =
        String.Join(string separator, [| content.Tenant; content.AuthType; content.BizAppId |])

    Secrets.AuthState.sign key expiresAt (RandomNumberGenerator.GetBytes 9) payload

let verify (key: byte[]) (now: DateTimeOffset) (token: string) =
    Secrets.AuthState.verify key now token
    |> Result.bind (fun payload ->
        match payload.Split separator with
        | [| tenant; authType; bizAppId |] ->
            Ok
                {
                    Tenant = tenant
                    AuthType = authType
                    BizAppId = bizAppId
                }
        | _ -> Error Secrets.AuthState.Malformed)

/// The state's nonce, derived from the pre_auth_code it is issued with: one state per code, and the
/// code itself never appears in the browser's address bar beyond WeChat's own page.
let stateNonce (stateKey: byte[]) (preAuthCode: string) =
    HMACSHA256.HashData(stateKey, Encoding.UTF8.GetBytes("preauth:" + preAuthCode))[..8]

type StateUse =
    /// The first code with this state, or the same code again (a reload): go on.
    | FirstUse
    /// Another code already completed (or is completing) with this state.
    | UsedByAnotherCode

/// Marks `state` as used by `code`, unless another code has it already. The mark is taken
/// atomically in the store (IDomainState.ClaimStateUse), so two instances that receive two codes for
/// one state at the same instant cannot both bind an account with it; the same code (a reload) finds
/// its own mark. The mark outlives the state itself, which stops verifying after `StateLifetime`.
let claim (states: IDomainState) (now: DateTimeOffset) (stateLifetime: TimeSpan) (state: string) (code: string) =
    task {
        let! taken =
            states.ClaimStateUse(state, Domain.AuthorizationCode code, now, now + stateLifetime + stateLifetime)

        return if taken then FirstUse else UsedByAnotherCode
    }

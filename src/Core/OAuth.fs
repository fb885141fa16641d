/// Web pages on behalf of accounts, the pure part: funcKey routes and their validation, WeChat's web
/// OAuth authorize URL (facts §7), the redirect to the business page with the wxTkId tracking token,
/// the JS-SDK signature (facts §8) and the names of domain verification files. No IO here: random
/// bytes and the clock come in as values.
module WeChatFs.OAuth

open System
open System.Security.Cryptography
open System.Text
open System.Text.RegularExpressions
open WeChatFs.Domain

/// snsapi_base: silent, openid only; snsapi_userinfo: a consent page and the follower's profile.
type OAuthScope =
    | SnsapiBase
    | SnsapiUserinfo

module OAuthScope =
    let toText =
        function
        | SnsapiBase -> "snsapi_base"
        | SnsapiUserinfo -> "snsapi_userinfo"

    let ofText =
        function
        | "snsapi_base" -> Some SnsapiBase
        | "snsapi_userinfo" -> Some SnsapiUserinfo
        | _ -> None

/// One destination of the platform: where a follower lands after consenting, and with which scope.
type FuncKeyRoute =
    {
        /// Letters, digits, `_` and `-`; the last segment of the start and receive URLs.
        FuncKey: string
        /// Absolute http(s) URL of the business page.
        TargetUrl: Uri
        Scope: OAuthScope
        Description: string option
        /// Only this tenant's accounts may use the route; None = every account.
        Tenant: TenantId option
    }

/// A bad field of a funcKey route: the field's name and what is wrong with it.
type RouteError = { Field: string; Problem: string }

let private funcKeyPattern =
    Regex("^[A-Za-z0-9_-]{1,64}$", RegexOptions.CultureInvariant)

let isFuncKey (value: string) =
    not (isNull value) && funcKeyPattern.IsMatch value

/// An absolute http or https URL, or None.
let httpUrl (value: string) =
    match value with
    | null -> None
    | v ->
        match Uri.TryCreate(v.Trim(), UriKind.Absolute) with
        | true, u when (u.Scheme = Uri.UriSchemeHttp || u.Scheme = Uri.UriSchemeHttps) && u.Host <> "" -> Some u
        | _ -> None

let private blankToNone (v: string) =
    if String.IsNullOrWhiteSpace v then None else Some(v.Trim())

/// Validates a route as an operator (or the configuration) gives it; the first bad field is named.
let route (funcKey: string) (targetUrl: string) (scope: string) (description: string) (tenant: string) =
    if not (isFuncKey funcKey) then
        Error
            {
                Field = "func_key"
                Problem = "must be 1 to 64 letters, digits, '_' or '-'"
            }
    else
        match httpUrl targetUrl with
        | None ->
            Error
                {
                    Field = "target_url"
                    Problem = "must be an absolute http or https URL"
                }
        | Some target when target.Fragment <> "" ->
            Error
                {
                    Field = "target_url"
                    Problem = "must not have a '#' part: the state travels there"
                }
        | Some target ->
            match OAuthScope.ofText (if isNull scope then "" else scope.Trim()) with
            | None ->
                Error
                    {
                        Field = "scope"
                        Problem = "must be snsapi_base or snsapi_userinfo"
                    }
            | Some s ->
                match blankToNone description with
                | Some d when d.Length > 500 ->
                    Error
                        {
                            Field = "description"
                            Problem = "must be at most 500 characters"
                        }
                | d ->
                    Ok
                        {
                            FuncKey = funcKey
                            TargetUrl = target
                            Scope = s
                            Description = d
                            Tenant = blankToNone tenant |> Option.map TenantId
                        }

/// Why a start URL (or the redirect back) is refused before WeChat is asked anything.
type Refusal =
    | UnknownFuncKey
    | UnknownAccount
    /// Revoked, or waiting for a new authorization.
    | AccountNotAuthorized of AuthorizerStatus
    /// The route belongs to another tenant than the account.
    | TenantMismatch of route: TenantId * account: TenantId option

/// Whether `account` may use `route`: both must exist, the account must be authorized, and a
/// tenant's route serves only that tenant's accounts.
let admit (route: FuncKeyRoute option) (account: Authorizer option) =
    match route, account with
    | None, _ -> Error UnknownFuncKey
    | Some _, None -> Error UnknownAccount
    | Some _, Some a when a.Status <> Authorized -> Error(AccountNotAuthorized a.Status)
    | Some { Tenant = Some t }, Some a when a.Tenant <> Some t -> Error(TenantMismatch(t, a.Tenant))
    | Some r, Some a -> Ok(r, a)

/// WeChat carries at most 128 bytes of state (facts §7).
let maxStateBytes = 128

let stateFits (state: string) =
    Encoding.UTF8.GetByteCount(if isNull state then "" else state) <= maxStateBytes

let private trimBase (u: Uri) = u.ToString().TrimEnd '/'

/// Where WeChat sends the follower back: one URL per funcKey on the platform's own domain.
let receiveUri (publicBase: Uri) (ComponentAppId componentAppId) (funcKey: string) =
    $"{trimBase publicBase}/wechat/oauth/authUserReceive/{Uri.EscapeDataString componentAppId}/{Uri.EscapeDataString funcKey}"

/// WeChat's authorize URL, in the documented parameter order, with `#wechat_redirect` (facts §7).
let authorizeUrl
    (openBase: Uri)
    (AuthorizerAppId appid)
    (redirectUri: string)
    (scope: OAuthScope)
    (state: string)
    (ComponentAppId componentAppId)
    =
    let e (v: string) = Uri.EscapeDataString v

    $"{trimBase openBase}/connect/oauth2/authorize?appid={e appid}&redirect_uri={e redirectUri}&response_type=code&scope={OAuthScope.toText scope}&state={e state}&component_appid={e componentAppId}#wechat_redirect"

let private fragmentOf (state: string) =
    if String.IsNullOrEmpty state then
        ""
    else
        "#" + Uri.EscapeDataString state

let private withQuery (target: Uri) (pairs: string) =
    let text = target.GetLeftPart(UriPartial.Query)

    let sep =
        if target.Query = "" || target.Query = "?" then "?"
        elif text.EndsWith "&" then ""
        else "&"

    (if target.Query = "?" then text.TrimEnd '?' else text) + sep + pairs

/// `<target>?wxTkId=<token>#<state>` (`&wxTkId=` when the target has a query; no `#` without state).
let businessRedirect (target: Uri) (wxTkId: string) (state: string) =
    withQuery target ("wxTkId=" + Uri.EscapeDataString wxTkId) + fragmentOf state

/// The follower said no: `<target>?wxTkId=&error=access_denied#<state>`.
let deniedRedirect (target: Uri) (state: string) =
    withQuery target "wxTkId=&error=access_denied" + fragmentOf state

// ---- the wxTkId tracking token --------------------------------------------------------------------

let private b64url (bytes: byte[]) =
    Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_')

/// 32 random bytes (256 bits) as base64url: 43 characters, safe in a URL as they are.
let trackingToken (random32: byte[]) =
    if isNull random32 || random32.Length < 16 then
        invalidArg "random32" "a tracking token needs at least 128 random bits"

    b64url random32

/// Only this reaches the store: a copied database gives no usable token.
let hashTrackingToken (token: string) =
    SHA256.HashData(Encoding.UTF8.GetBytes(if isNull token then "" else token))
    |> Convert.ToHexStringLower

/// A stored code is kept as its hash too: it must not be usable from a copy of the database.
let hashCode (code: string) = "code:" + hashTrackingToken code

// ---- JS-SDK (facts §8) -------------------------------------------------------------------------

/// The page URL as signed: everything before `#`.
let pageUrlForSignature (url: string) =
    match url.IndexOf '#' with
    | -1 -> url
    | i -> url.Substring(0, i)

/// sha1 of `jsapi_ticket=…&noncestr=…&timestamp=…&url=…` (keys in ASCII order, raw values), hex lower.
let jsSdkSignature (ticket: string) (nonceStr: string) (timestamp: int64) (url: string) =
    let text =
        $"jsapi_ticket={ticket}&noncestr={nonceStr}&timestamp={timestamp}&url={pageUrlForSignature url}"

    SHA1.HashData(Encoding.UTF8.GetBytes text) |> Convert.ToHexStringLower

let private nonceAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/// A 16-character nonce from random bytes (one per character).
let nonceStr (random: byte[]) =
    random
    |> Array.truncate 16
    |> Array.map (fun b -> nonceAlphabet[int b % nonceAlphabet.Length])
    |> String

// ---- domain verification files (seed §3.1.2.1) -----------------------------------------------------

let private fileNamePattern =
    Regex("^[A-Za-z0-9_-]{1,64}\\.txt$", RegexOptions.CultureInvariant)

/// `MP_verify_<code>.txt` and the like: letters, digits, `_`, `-`, then `.txt`.
let isVerificationFileName (name: string) =
    not (isNull name) && fileNamePattern.IsMatch name

/// What a verification file may hold: WeChat's files are a few bytes.
let maxVerificationFileBytes = 1024

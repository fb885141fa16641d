/// What the simulated WeChat is made of: the catalog of simulated accounts and the
/// release-test accounts, tokens with their overlap rule, the records SimState keeps, and opaque
/// values shaped like WeChat's.
module WeChatFs.Simulator.SimModel

open System
open System.Collections.Generic
open System.Security.Cryptography

type AccountKind =
    | OfficialAccount
    | MiniProgram

type Account =
    {
        AppId: string
        UserName: string
        NickName: string
        Principal: string
        Kind: AccountKind
        /// service_type_info.id: 2 service account, 0 subscription (and mini programs) (facts §3.5).
        ServiceType: int
        /// verify_type_info.id: 0 WeChat verified, -1 unverified (facts §3.5).
        VerifyType: int
    }

let account appid user nick principal kind service verify =
    {
        AppId = appid
        UserName = user
        NickName = nick
        Principal = principal
        Kind = kind
        ServiceType = service
        VerifyType = verify
    }

/// The full-network release test groups, exactly as WeChat lists them (facts §6).
let releaseTestAccounts =
    [
        "wx570bc396a51b8ff8", "gh_3c884a361561", "wxd101a85aa106f53e", "gh_8dad206e9538"
        "wx9252c5e0bb1836fc", "gh_c0f28a78b318", "wxc39235c15087f6f3", "gh_905ae9d01059"
        "wx8e1097c5bc82cde9", "gh_3f222ed8d140", "wx7720d01d4b2a4500", "gh_393666f1fdf4"
        "wx14550af28c71a144", "gh_26128078e9ab", "wx05d483572dcd5d8b", "gh_39abb5d4e1b7"
        "wxa35b9c23cfe664eb", "gh_2b3713f184a6", "wx5910277cae6fd970", "gh_7818dcb60240"
    ]
    |> List.mapi (fun i (oa, oaUser, mp, mpUser) ->
        [
            account oa oaUser $"Release test account {i + 1}" "Tencent" OfficialAccount 2 0
            account mp mpUser $"Release test mini program {i + 1}" "Tencent" MiniProgram 0 0
        ])
    |> List.concat

let catalog =
    [
        account "wxsimoa00000000001" "gh_5a1c0ffee0001" "Demo Coffee Shop" "Demo Coffee Co., Ltd." OfficialAccount 2 0
        account "wxsimoa00000000002" "gh_5a1bakery0002" "Demo Bakery News" "Demo Bakery Co., Ltd." OfficialAccount 0 -1
        account "wxsimoa00000000003" "gh_5a1florist003" "Demo Florist" "Demo Flowers Co., Ltd." OfficialAccount 2 0
        account "wxsimmp00000000001" "gh_5a1shopmini01" "Demo Shop Mini" "Demo Coffee Co., Ltd." MiniProgram 0 0
        account "wxsimmp00000000002" "gh_5a1bookmini02" "Demo Booking Mini" "Demo Bakery Co., Ltd." MiniProgram 0 0
    ]
    @ releaseTestAccounts

/// Permission sets offered on the page (facts §3.6), with the ones checked by default.
let permissionSets kind =
    match kind with
    | OfficialAccount ->
        [
            1, "Message management", true
            2, "User management", true
            3, "Account services", true
            4, "Web page services", true
            7, "Broadcast and notifications", false
            11, "Media management", true
            15, "Custom menu", true
        ]
    | MiniProgram ->
        [
            17, "Account management", true
            18, "Development management and data analysis", true
            19, "Customer-service messages", true
            30, "Basic info settings", true
        ]

/// The permission sets the page checks by default.
let defaultPermissions kind =
    permissionSets kind
    |> List.filter (fun (_, _, on) -> on)
    |> List.map (fun (id, _, _) -> id)

/// A token as WeChat tracks it: replaced tokens keep working for five minutes (facts §13).
type IssuedToken =
    {
        Value: string
        IssuedAt: DateTimeOffset
        ExpiresAt: DateTimeOffset
        mutable ReplacedAt: DateTimeOffset option
    }

let overlap = TimeSpan.FromMinutes 5.

/// Ok, or the errcode WeChat gives for that token: 40001 unknown or replaced beyond the overlap,
/// 42001 expired (facts §12, §13).
let checkToken (now: DateTimeOffset) (token: IssuedToken option) =
    match token with
    | None -> Error 40001
    | Some t when now >= t.ExpiresAt -> Error 42001
    | Some { ReplacedAt = Some r } when now >= r + overlap -> Error 40001
    | Some _ -> Ok()

/// A new 7200 s token; the ones it replaces start their five-minute overlap now (facts §13).
let issueReplacing (tokens: List<IssuedToken>) (now: DateTimeOffset) (value: string) =
    for t in tokens do
        if t.ReplacedAt.IsNone then
            t.ReplacedAt <- Some now

    let token =
        {
            Value = value
            IssuedAt = now
            ExpiresAt = now.AddSeconds 7200.
            ReplacedAt = None
        }

    tokens.Add token
    token

type Authorization =
    {
        Account: Account
        mutable Authorized: bool
        mutable FuncIds: int list
        mutable RefreshToken: string
        /// A rotated-away refresh token keeps a 5-minute grace (facts §3.4).
        mutable PreviousRefreshToken: (string * DateTimeOffset) option
        mutable RotateNext: bool
        mutable AuthTime: DateTimeOffset
        Tokens: List<IssuedToken>
    }

type AuthCode =
    {
        Code: string
        AppId: string
        ExpiresAt: DateTimeOffset
    }

type Fault =
    {
        Errcode: int option
        HttpStatus: int option
        LatencyMs: int
    }

type PushRecord =
    {
        Kind: string
        Target: string
        Status: int
        Body: string
        At: DateTimeOffset
    }

type CustomMessage =
    {
        AppId: string
        ToUser: string
        MsgType: string
        Content: string
        At: DateTimeOffset
    }

/// When the `authorized` push is sent relative to the browser's redirect (facts §4.3: either may come first).
type PushOrder =
    | PushBeforeRedirect
    | PushAfterRedirect
    | NoPush

let private random (prefix: string) (bytes: int) =
    prefix
    + Convert.ToBase64String(RandomNumberGenerator.GetBytes bytes).Replace('+', '-').Replace('/', '_').TrimEnd('=')

/// Opaque values shaped like WeChat's (facts §0).
let newTicket () = random "ticket@@@" 24
let newComponentToken () = "61_" + random "" 48
let newAuthorizerToken () = "49_" + random "" 48
let newPreAuthCode () = random "preauthcode@@@" 24
let newAuthCode () = random "queryauthcode@@@" 24
let newRefreshToken () = random "refreshtoken@@@" 24

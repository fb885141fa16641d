/// Cash red packets (现金红包, facts §11), the pure part: ids, the checks made before WeChat Pay is
/// asked, the MD5 signature, the XML of sendredpack and gethbinfo, and the state machine that makes
/// sure a packet is paid at most once and ends in a known state. No clock, randomness or IO here.
module WeChatFs.RedPacks

open System
open System.Security.Cryptography
open System.Text

/// A WeChat Pay merchant id (商户号).
type MchId = MchId of string

/// The merchant's order number for one packet: WeChat Pay's idempotency key; never changed on a retry.
type MchBillNo = MchBillNo of string

/// Who receives a packet: an openid under the official account, or a tracking token that stands for one.
type Recipient =
    | OpenId of string
    | TrackingToken of string

module PayIds =
    let mchId (MchId v) = v
    let billNo (MchBillNo v) = v

// ---- the signature (facts §11.3) -----------------------------------------------------------------

/// The string that is hashed: non-empty parameters except `sign`, sorted by name (ordinal), joined
/// raw as k=v&..., then `&key=API_KEY`.
let signingString (apiKey: string) (fields: (string * string) list) =
    let parts =
        fields
        |> List.filter (fun (k, v) -> k <> "sign" && not (String.IsNullOrEmpty v))
        |> List.sortWith (fun (a, _) (b, _) -> String.CompareOrdinal(a, b))
        |> List.map (fun (k, v) -> k + "=" + v)

    String.Join("&", parts) + "&key=" + apiKey

/// MD5 over the signing string, hex, upper case.
let sign (apiKey: string) (fields: (string * string) list) =
    MD5.HashData(Encoding.UTF8.GetBytes(signingString apiKey fields))
    |> Convert.ToHexString

/// True when `sign` is present and matches the other fields.
let verify (apiKey: string) (fields: (string * string) list) =
    match fields |> List.tryFind (fun (k, _) -> k = "sign") with
    | Some(_, given) ->
        let expected = Encoding.ASCII.GetBytes(sign apiKey fields)
        let given = Encoding.ASCII.GetBytes(given: string)
        CryptographicOperations.FixedTimeEquals(ReadOnlySpan expected, ReadOnlySpan given)
    | None -> false

/// `<xml><k><![CDATA[v]]></k>...</xml>`, as Pay v2 takes it.
let toXml (fields: (string * string) list) =
    let body =
        fields
        |> List.map (fun (k, v) -> $"<{k}>{Replies.cdata v}</{k}>")
        |> String.concat ""

    "<xml>" + body + "</xml>"

// ---- mch_billno ------------------------------------------------------------------------------------

/// mch_id + yyyyMMdd (Beijing time, as WeChat Pay counts days) + digits, 28 characters in all: ten
/// digits for a ten-digit mch_id. `digits` is the caller's randomness (at least 20 digits).
let billNo (MchId mch) (now: DateTimeOffset) (digits: string) =
    let day = now.ToOffset(TimeSpan.FromHours 8.).ToString("yyyyMMdd")
    let count = 28 - mch.Length - day.Length
    MchBillNo(mch + day + digits.Substring(0, count))

let private isAlnum (c: char) =
    (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')

/// A merchant id that leaves room for ten digits in a 28-character mch_billno.
let validMchId (mch: string) =
    not (String.IsNullOrEmpty mch)
    && mch.Length <= 10
    && mch |> Seq.forall Char.IsAsciiDigit

// ---- the send request and its checks ---------------------------------------------------------------

type SendRequest =
    {
        MchId: MchId
        AuthorizerAppId: string
        Recipient: Recipient
        AmountFen: int64
        Wishing: string
        ActName: string
        Remark: string
        SendName: string option
        SceneId: string option
        RiskInfo: string option
        ClientIp: string option
    }

/// A field that cannot be sent, named as the API names it.
type FieldError = { Field: string; Problem: string }

let private lengthCheck (field: string) (max: int) (required: bool) (value: string option) =
    match value with
    | None
    | Some "" when required ->
        Some
            {
                Field = field
                Problem = "is required"
            }
    | Some v when v.Length > max ->
        Some
            {
                Field = field
                Problem = $"is {v.Length} characters; WeChat Pay takes at most {max}"
            }
    | _ -> None

/// scene_id values of facts §11.1 ([U]: PRODUCT_1..PRODUCT_8).
let sceneIds = [ for i in 1..8 -> $"PRODUCT_{i}" ]

/// The checks of facts §11.1 made before anything is stored or sent; every problem, field by field.
/// `sendName` is the name that will be sent (the request's, else the merchant's).
let check (r: SendRequest) (sendName: string) : FieldError list =
    let recipient =
        match r.Recipient with
        | OpenId o -> lengthCheck "openid" 32 true (Some o)
        | TrackingToken t -> lengthCheck "wx_tk_id" 512 true (Some t)

    let amount =
        match r.SceneId with
        | None when r.AmountFen < 100L || r.AmountFen > 20000L ->
            Some
                {
                    Field = "amount_fen"
                    Problem = $"{r.AmountFen} is outside 100-20000 fen (1-200 CNY); amounts outside need a scene_id"
                }
        | Some _ when r.AmountFen < 1L ->
            Some
                {
                    Field = "amount_fen"
                    Problem = $"{r.AmountFen} is not a positive amount of fen"
                }
        | _ -> None

    let scene =
        match r.SceneId with
        | Some s when not (List.contains s sceneIds) ->
            Some
                {
                    Field = "scene_id"
                    Problem = $"'{s}' is not one of PRODUCT_1 .. PRODUCT_8"
                }
        | _ -> None

    let ip =
        match r.ClientIp with
        | Some ip when ip.Length > 15 || not (Net.IPAddress.TryParse ip |> fst) ->
            Some
                {
                    Field = "client_ip"
                    Problem = $"'{ip}' is not an IPv4 address (at most 15 characters)"
                }
        | _ -> None

    [
        recipient
        amount
        scene
        ip
        lengthCheck "authorizer_appid" 32 true (Some r.AuthorizerAppId)
        lengthCheck "wishing" 128 true (Some r.Wishing)
        lengthCheck "act_name" 32 true (Some r.ActName)
        lengthCheck "remark" 256 true (Some r.Remark)
        lengthCheck "send_name" 32 true (Some sendName)
        lengthCheck "risk_info" 128 false r.RiskInfo
    ]
    |> List.choose id

/// What one packet sends, kept with it so that every (re)send is the same request.
type SendContent =
    {
        MchId: MchId
        BillNo: MchBillNo
        WxAppId: string
        OpenId: string
        AmountFen: int64
        SendName: string
        Wishing: string
        ActName: string
        Remark: string
        SceneId: string option
        RiskInfo: string option
        ClientIp: string
    }

/// The sendredpack fields (without sign); empty optional fields are left out.
let sendFields (c: SendContent) (nonce: string) =
    [
        "nonce_str", nonce
        "mch_billno", PayIds.billNo c.BillNo
        "mch_id", PayIds.mchId c.MchId
        "wxappid", c.WxAppId
        "send_name", c.SendName
        "re_openid", c.OpenId
        "total_amount", string c.AmountFen
        "total_num", "1"
        "wishing", c.Wishing
        "client_ip", c.ClientIp
        "act_name", c.ActName
        "remark", c.Remark
        "scene_id", defaultArg c.SceneId ""
        "risk_info", defaultArg c.RiskInfo ""
    ]
    |> List.filter (fun (_, v) -> v <> "")

// ---- answers --------------------------------------------------------------------------------------

/// What sendredpack's answer means for the packet.
type SendOutcome =
    /// result_code SUCCESS: WeChat took it, with its send_listid.
    | Accepted of sendListId: string
    /// A refusal that is known to mean nothing was paid.
    | Refused of errCode: string * errCodeDes: string
    /// SYSTEMERROR, PROCESSING, an unknown code, a timeout, a dropped connection: maybe paid.
    | Unknown of reason: string

/// Codes that mean the request was refused and nothing paid (facts §11.1); everything else,
/// unknown codes included, is undecided and resolved with gethbinfo, never with a new mch_billno.
let refusalCodes =
    set
        [
            "NO_AUTH"
            "SENDNUM_LIMIT"
            "ILLEGAL_APPID"
            "MONEY_LIMIT"
            "SEND_FAILED"
            "CA_ERROR"
            "SIGN_ERROR"
            "XML_ERROR"
            "NOTENOUGH"
            "OPENID_ERROR"
            "MSGAPPID_ERROR"
            "ACCEPTMODE_ERROR"
            "PARAM_ERROR"
            "SENDAMOUNT_LIMIT"
            "RCVDAMOUNT_LIMIT"
        ]

let private get (fields: Map<string, string>) name =
    fields |> Map.tryFind name |> Option.defaultValue ""

/// Reads sendredpack's XML fields (already parsed) into an outcome.
let sendOutcome (fields: Map<string, string>) =
    let field = get fields

    match field "return_code", field "result_code" with
    | "SUCCESS", "SUCCESS" when field "send_listid" <> "" -> Accepted(field "send_listid")
    | "SUCCESS", "SUCCESS" -> Unknown "result_code SUCCESS without send_listid"
    | "SUCCESS", _ when refusalCodes.Contains(field "err_code") -> Refused(field "err_code", field "err_code_des")
    | "SUCCESS", _ -> Unknown("err_code " + field "err_code" + ": " + field "err_code_des")
    | _, _ -> Unknown("return_code " + field "return_code" + ": " + field "return_msg")

/// What gethbinfo said about a packet.
type QueryOutcome =
    /// status (SENDING, SENT, FAILED, RECEIVED, RFUND_ING, REFUND) and detail_id.
    | Found of status: string * detailId: string * reason: string
    /// WeChat Pay never saw this mch_billno: sending it (again, with the same number) is safe.
    | NotFound
    | QueryUnknown of reason: string

let queryOutcome (notFoundCodes: Set<string>) (fields: Map<string, string>) =
    let field = get fields

    match field "return_code", field "result_code" with
    | "SUCCESS", "SUCCESS" when field "status" <> "" -> Found(field "status", field "detail_id", field "reason")
    | "SUCCESS", _ when notFoundCodes.Contains(field "err_code") -> NotFound
    | "SUCCESS", _ -> QueryUnknown("err_code " + field "err_code" + ": " + field "err_code_des")
    | _, _ -> QueryUnknown("return_code " + field "return_code" + ": " + field "return_msg")

// ---- err_code explanations (facts §11.1; the list is [U], hence "unknown" has its own advice) -----

/// Meaning and action for WeChat Pay's err_code values.
let errCodeGuide =
    Map
        [
            "SYSTEMERROR",
            ("WeChat Pay has not decided", "nothing: the packet is resolved with gethbinfo under the same mch_billno")
            "PROCESSING",
            ("request accepted, result later",
             "nothing: the packet is resolved with gethbinfo under the same mch_billno")
            "FATAL_ERROR",
            ("WeChat Pay failed internally", "nothing: the same mch_billno is queried and sent again if unseen")
            "FREQ_LIMIT", ("too many requests", "nothing: the same mch_billno is retried later")
            "NO_AUTH",
            ("the merchant may not send red packets (or is restricted)",
             "check the merchant's product permissions in WeChat Pay's console")
            "SENDNUM_LIMIT",
            ("the user has received the most packets allowed today", "send again tomorrow, with a new Idempotency-Key")
            "ILLEGAL_APPID",
            ("the appid is not bound to the merchant", "bind the account to the merchant in WeChat Pay's console")
            "MONEY_LIMIT", ("amount outside the allowed range", "send an amount within the limits, or give a scene_id")
            "SEND_FAILED", ("refused by WeChat Pay's risk control", "do not retry the same user at once")
            "CA_ERROR",
            ("the merchant certificate was refused", "upload the merchant's current apiclient certificate and key")
            "SIGN_ERROR", ("the signature does not match", "upload the merchant's current API key")
            "XML_ERROR", ("the request XML was not accepted", "report it: the gateway builds the XML")
            "NOTENOUGH",
            ("the merchant's balance is too low", "top up the merchant account, then send with a new Idempotency-Key")
            "OPENID_ERROR", ("the openid does not belong to the appid", "use the openid the account gave for this user")
            "MSGAPPID_ERROR", ("the appid cannot send red packets", "use an official account bound to the merchant")
            "ACCEPTMODE_ERROR", ("the user cannot accept red packets this way", "none")
            "PARAM_ERROR", ("a field was refused", "fix the field named in err_code_des")
            "SENDAMOUNT_LIMIT", ("the merchant's daily amount is used up", "send tomorrow")
            "RCVDAMOUNT_LIMIT", ("the user's daily amount is used up", "send tomorrow")
            "FAILED",
            ("gethbinfo reports the packet failed", "send a new packet with a new Idempotency-Key if still wanted")
        ]

let explainErrCode (code: string) =
    match errCodeGuide |> Map.tryFind code with
    | Some(meaning, action) -> meaning, action
    | None ->
        "an err_code this gateway does not know",
        "the packet is treated as undecided and resolved with gethbinfo; never resent under a new mch_billno"

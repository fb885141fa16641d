/// Pushes to the gateway as WeChat does: encrypted, signed, to the authorization event URL (facts §1,
/// §2) and to the per-account message URL (facts §5).
module WeChatFs.Simulator.Pusher

open System
open System.Net.Http
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState

let private http = new HttpClient(Timeout = TimeSpan.FromSeconds 10.)

let private cdata (s: string) =
    "<![CDATA[" + s.Replace("]]>", "]]]]><![CDATA[>") + "]]>"

/// Encrypts `plainXml` and POSTs it with the query WeChat sends; `outer` names the body's first
/// element (`AppId` for component pushes, `ToUserName` for messages, facts §14.5).
let post (state: SimState) (url: string) (outerName: string, outerValue: string) (plainXml: string) =
    task {
        let o = state.Options
        let key = SimCrypto.aesKey o.EncodingAesKey

        let encrypted =
            SimCrypto.encrypt key o.ComponentAppId (RandomNumberGenerator.GetBytes 16) plainXml

        let timestamp = string (state.Now().ToUnixTimeSeconds())
        let nonce = string (Random.Shared.Next(100_000_000, 999_999_999))

        let plainSignature =
            [ o.Token; timestamp; nonce ]
            |> List.sortWith (fun a b -> String.CompareOrdinal(a, b))
            |> String.Concat
            |> Encoding.UTF8.GetBytes
            |> SHA1.HashData
            |> Convert.ToHexStringLower

        let msgSignature = SimCrypto.signature o.Token timestamp nonce encrypted
        let sep = if url.Contains '?' then "&" else "?"

        let target =
            $"{url}{sep}signature={plainSignature}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msgSignature}"

        let body =
            $"<xml><{outerName}>{cdata outerValue}</{outerName}><Encrypt>{cdata encrypted}</Encrypt></xml>"

        try
            use! response =
                http.PostAsync(target, new StringContent(body, Encoding.UTF8, "text/xml"))

            let! answer = response.Content.ReadAsStringAsync()
            return int response.StatusCode, answer
        with ex ->
            return 0, ex.Message
    }

/// One push to the authorization event URL, recorded with the gateway's answer.
let pushComponentEvent (state: SimState) (kind: string) (plainXml: string) =
    task {
        match state.EventUrl with
        | None -> return None
        | Some url ->
            let! status, body = post state url ("AppId", state.Options.ComponentAppId) plainXml

            let record =
                {
                    Kind = kind
                    Target = url
                    Status = status
                    Body = body
                    At = state.Now()
                }

            state.RecordPush record
            return Some record
    }

/// component_verify_ticket (facts §1.1): a new ticket each push.
let pushTicket (state: SimState) =
    let kind = "component_verify_ticket"
    let ticket = state.IssueTicket()
    let now = state.Now().ToUnixTimeSeconds()

    let xml =
        $"<xml><AppId>{cdata state.Options.ComponentAppId}</AppId><CreateTime>{now}</CreateTime><InfoType>{cdata kind}</InfoType><ComponentVerifyTicket>{cdata ticket}</ComponentVerifyTicket></xml>"

    pushComponentEvent state kind xml

/// authorized / updateauthorized (facts §1.2); AuthorizationCodeExpiredTime as an absolute time.
let pushAuthorized (state: SimState) (infoType: string) (appid: string) (code: AuthCode) (preAuthCode: string) =
    let now = state.Now().ToUnixTimeSeconds()

    let xml =
        $"<xml><AppId>{cdata state.Options.ComponentAppId}</AppId><CreateTime>{now}</CreateTime><InfoType>{cdata infoType}</InfoType><AuthorizerAppid>{cdata appid}</AuthorizerAppid><AuthorizationCode>{cdata code.Code}</AuthorizationCode><AuthorizationCodeExpiredTime>{code.ExpiresAt.ToUnixTimeSeconds()}</AuthorizationCodeExpiredTime><PreAuthCode>{cdata preAuthCode}</PreAuthCode></xml>"

    pushComponentEvent state infoType xml

/// The registration request's fields, echoed in the push's <info>.
type FastRegisterInfo =
    {
        Name: string
        Code: string
        CodeType: int
        LegalPersonaWechat: string
        LegalPersonaName: string
        ComponentPhone: string
    }

/// notify_third_fasteregister (facts §1.3): lower-case tags; appid and auth_code only on success.
let pushFastRegister (state: SimState) (status: int) (msg: string) (created: AuthCode option) (info: FastRegisterInfo) =
    let now = state.Now().ToUnixTimeSeconds()

    let result =
        match created with
        | Some code ->
            $"<appid>{cdata code.AppId}</appid><status>{status}</status><auth_code>{cdata code.Code}</auth_code>"
        | None -> $"<status>{status}</status>"

    let infoXml =
        $"<info><name>{cdata info.Name}</name><code>{cdata info.Code}</code><code_type>{info.CodeType}</code_type><legal_persona_wechat>{cdata info.LegalPersonaWechat}</legal_persona_wechat><legal_persona_name>{cdata info.LegalPersonaName}</legal_persona_name><component_phone>{cdata info.ComponentPhone}</component_phone></info>"

    let kind = "notify_third_fasteregister"

    let xml =
        $"<xml><AppId>{cdata state.Options.ComponentAppId}</AppId><CreateTime>{now}</CreateTime><InfoType>{cdata kind}</InfoType>{result}<msg>{cdata msg}</msg>{infoXml}</xml>"

    pushComponentEvent state kind xml

/// unauthorized carries only the appid (facts §1.2).
let pushUnauthorized (state: SimState) (appid: string) =
    let kind = "unauthorized"
    let now = state.Now().ToUnixTimeSeconds()

    let xml =
        $"<xml><AppId>{cdata state.Options.ComponentAppId}</AppId><CreateTime>{now}</CreateTime><InfoType>{cdata kind}</InfoType><AuthorizerAppid>{cdata appid}</AuthorizerAppid></xml>"

    pushComponentEvent state kind xml

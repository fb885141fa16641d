/// The outside probe's tools, shared by the hardening tests: pushes built with the platform's keys
/// (as WeChat would sign them, or damaged on purpose), and an authorization driven over HTTP against
/// any gateway, in this process or in its own.
module WeChatFs.Tests.Probe

open System
open System.Net
open System.Net.Http
open System.Net.Http.Headers
open System.Text
open System.Threading.Tasks
open Microsoft.AspNetCore.WebUtilities
open Expecto
open WeChatFs
open WeChatFs.Tests.Harness

let aesKey =
    match Crypto.AesKey.create encodingAesKey with
    | Ok k -> k
    | Error e -> failwith $"{e}"

let shop = "wxsimoa00000000001"
let mini = "wxsimmp00000000001"

/// The query WeChat adds to a push whose encrypted part is `encrypted`.
let signedQuery (encrypted: string) =
    let timestamp, nonce = "1700000000", "12345"
    let signature = Crypto.msgSignature token timestamp nonce encrypted
    $"timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}"

/// A correctly signed, encrypted push of `plainXml` (whatever it holds): the URL's query and the body.
let sealedPush (plainXml: string) =
    let encrypted = Crypto.encrypt aesKey componentAppId (Array.zeroCreate 16) plainXml

    signedQuery encrypted,
    $"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"

let textMessageXml (appid: string) (msgId: string) (content: string) =
    $"<xml><ToUserName><![CDATA[gh_{appid}]]></ToUserName><FromUserName><![CDATA[oUSER1]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msgId}</MsgId></xml>"

let ticketXml (ticket: string) (createTime: int64) =
    $"<xml><AppId><![CDATA[{componentAppId}]]></AppId><CreateTime>{createTime}</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>"

/// POSTs a sealed push to `baseUrl + path`.
let postSealed (http: HttpClient) (url: string) (plainXml: string) =
    let query, body = sealedPush plainXml
    http.PostAsync($"{url}?{query}", new StringContent(body, Encoding.UTF8, "text/xml"))

/// An admin client for a gateway at `baseUrl`.
let adminClient (baseUrl: string) =
    let c = new HttpClient(BaseAddress = Uri baseUrl)
    c.DefaultRequestHeaders.Authorization <- AuthenticationHeaderValue("Bearer", adminKey)
    c

/// The ticket is pushed and the component token is there.
let readyAt (sim: HttpClient) (simUrl: string) (api: HttpClient) =
    task {
        let! pushed = sim.PostAsync(simUrl + "/sim/push-ticket", null)
        pushed.EnsureSuccessStatusCode() |> ignore

        let! ok =
            eventually (TimeSpan.FromSeconds 10.) (fun () ->
                task {
                    let! r = api.GetAsync "/api/component/access-token"
                    return r.IsSuccessStatusCode
                })

        Expect.isTrue ok "no component token after a ticket push"
    }

/// What a merchant does, through the simulator's confirm call: a link from the business system,
/// WeChat's confirmation for `appid`, and the browser back at the gateway. Answers the page's
/// status, the state and the pc_url's redirect.
let authorizeAt (http: HttpClient) (simUrl: string) (api: HttpClient) (tenant: string) (appid: string) =
    task {
        let! answer, redirectUri = confirmOnSimulator http simUrl api tenant appid
        let! back = http.GetAsync(str answer "redirect")
        let state = string (QueryHelpers.ParseQuery(Uri(redirectUri).Query)["state"])
        return back.StatusCode, state, redirectUri
    }

/// A gateway process's settings: its own data folder, WeChat at `simUrl`, quick background loops.
let processSettings (dataFolder: string) (simUrl: string) (extra: (string * string) list) =
    [
        "WeChatFs:Component:AppId", componentAppId
        "WeChatFs:Component:AppSecret", appSecret
        "WeChatFs:Component:Token", token
        "WeChatFs:Component:EncodingAesKey", encodingAesKey
        "WeChatFs:Component:CheckInterval", "00:00:00.200"
        "WeChatFs:WeChat:ApiBaseUrl", simUrl
        "WeChatFs:WeChat:MpBaseUrl", simUrl
        "WeChatFs:Storage:ConnectionString", "Data Source=" + IO.Path.Combine(dataFolder, "wechatfs.db")
        "WeChatFs:Storage:RefreshLease", "00:00:02"
        "WeChatFs:Admin:ApiKey", adminKey
    ]
    @ extra

/// A gateway's SQLite store, opened read-only as it is (while the gateway runs, or after).
let openStoreFile (dataFolder: string) =
    let conn =
        new Microsoft.Data.Sqlite.SqliteConnection(
            "Data Source="
            + IO.Path.Combine(dataFolder, "wechatfs.db")
            + ";Mode=ReadOnly;Pooling=False"
        )

    conn.Open()
    conn

/// Rows of one table of a gateway's SQLite store.
let countRows (dataFolder: string) (table: string) =
    use conn = openStoreFile dataFolder
    use cmd = conn.CreateCommand()
    cmd.CommandText <- $"SELECT count(*) FROM {table}"
    Convert.ToInt32(cmd.ExecuteScalar())

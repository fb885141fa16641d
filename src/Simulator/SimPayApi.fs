/// The simulated WeChat Pay as a server: an HTTPS listener of its own (Kestrel asks every client for
/// a certificate, and the handler answers CA_ERROR unless it was issued by the test CA to the calling
/// mch_id), sendredpack and gethbinfo, and the control API under /sim/pay/ on the simulator's own URL.
module WeChatFs.Simulator.SimPayApi

open System
open System.IO
open System.Net
open System.Security.Cryptography
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Hosting.Server
open Microsoft.AspNetCore.Hosting.Server.Features
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Microsoft.AspNetCore.Server.Kestrel.Core
open Microsoft.AspNetCore.Server.Kestrel.Https
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open WeChatFs.Simulator.SimApi
open WeChatFs.Simulator.SimPay

/// Red packets go to official accounts only (facts §11.1: mobile-app appids are refused); the
/// simulator binds every merchant to every simulated official account.
let private catalogHasOfficialAccount (appid: string) =
    SimModel.catalog
    |> List.exists (fun a -> a.AppId = appid && a.Kind = SimModel.OfficialAccount)

let private writeXml (ctx: HttpContext) (xml: string) =
    ctx.Response.StatusCode <- 200
    ctx.Response.ContentType <- "text/xml; charset=utf-8"
    ctx.Response.WriteAsync xml

let private digits (n: int) =
    String(Array.init n (fun _ -> char (int '0' + RandomNumberGenerator.GetInt32 10)))

let private isAlnum (s: string) =
    s |> Seq.forall Char.IsAsciiLetterOrDigit

/// Field limits of facts §11.1: (name, required, max length).
let private sendLimits =
    [
        "nonce_str", true, 32
        "sign", true, 32
        "mch_billno", true, 28
        "mch_id", true, 32
        "wxappid", true, 32
        "send_name", true, 32
        "re_openid", true, 32
        "total_amount", true, 10
        "total_num", true, 10
        "wishing", true, 128
        "client_ip", true, 15
        "act_name", true, 32
        "remark", true, 256
        "scene_id", false, 32
        "risk_info", false, 128
    ]

/// The checks every call shares: XML, the client certificate, the signature. Ok with the fields and
/// the merchant; Error with the answer to give.
let private authenticate (pay: SimPay) (ctx: HttpContext) =
    task {
        use reader = new StreamReader(ctx.Request.Body)
        let! body = reader.ReadToEndAsync()

        match parseXml body with
        | None -> return Error(failXml "XML_ERROR" "输入xml参数格式错误")
        | Some fields ->
            let get name =
                fields
                |> List.tryFind (fun (k, _) -> k = name)
                |> Option.map snd
                |> Option.defaultValue ""

            let mchId = get "mch_id"
            let cert = ctx.Connection.ClientCertificate

            match pay.TryMerchant mchId with
            | _ when isNull cert -> return Error(failXml "CA_ERROR" "请求未携带证书")
            | _ when not (pay.Authority.Issued cert) -> return Error(failXml "CA_ERROR" "证书不是微信支付签发的证书")
            | None -> return Error(failXml "PARAM_ERROR" "mch_id 不存在")
            | Some m when
                cert.GetNameInfo(Security.Cryptography.X509Certificates.X509NameType.SimpleName, false)
                <> mchId
                ->
                ignore m
                return Error(failXml "CA_ERROR" "证书与商户号不匹配")
            | Some m when get "sign" <> md5Sign m.ApiKey fields -> return Error(failXml "SIGN_ERROR" "签名错误")
            | Some m -> return Ok(fields, get, m)
    }

/// Applies a queued fault: answers (or drops) instead of the normal answer; `pay` runs first when the
/// rule says the simulator pays before failing.
let private withFault (pay: SimPay) (ctx: HttpContext) (api: string) (payFirst: unit -> unit) (normal: unit -> Task) =
    task {
        match pay.NextFault api with
        | None -> do! normal ()
        | Some rule ->
            if rule.PayFirst then
                payFirst ()

            match rule.Fault with
            | SystemError -> do! writeXml ctx (failXml "SYSTEMERROR" "系统繁忙,请稍后再试.")
            | Processing -> do! writeXml ctx (failXml "PROCESSING" "请求已受理，请稍后使用原单号查询发放结果")
            | Drop -> ctx.Abort()
    }

let private sendRedPack (pay: SimPay) =
    handler (fun ctx ->
        task {
            pay.Count "sendredpack"

            match! authenticate pay ctx with
            | Error answer -> do! writeXml ctx answer
            | Ok(_, get, m) ->
                let bad =
                    sendLimits
                    |> List.tryPick (fun (name, required, max) ->
                        let v = get name

                        if required && v = "" then Some $"{name} 必填"
                        elif v.Length > max then Some $"{name} 超长"
                        else None)

                let amount =
                    match Int64.TryParse(get "total_amount") with
                    | true, n -> n
                    | _ -> -1L

                match bad with
                | Some des -> do! writeXml ctx (failXml "PARAM_ERROR" des)
                | None when not (isAlnum (get "mch_billno")) ->
                    do! writeXml ctx (failXml "PARAM_ERROR" "mch_billno 只能是数字和字母")
                | None when get "total_num" <> "1" -> do! writeXml ctx (failXml "PARAM_ERROR" "total_num 必须为1")
                | None when get "scene_id" = "" && (amount < 100L || amount > 20000L) ->
                    do! writeXml ctx (failXml "MONEY_LIMIT" "每个红包的平均金额必须在1.00元到200.00元之间")
                | None when amount < 1L -> do! writeXml ctx (failXml "PARAM_ERROR" "total_amount 无效")
                | None when not (catalogHasOfficialAccount (get "wxappid")) ->
                    do! writeXml ctx (failXml "MSGAPPID_ERROR" "wxappid 与商户号未绑定")
                | None ->
                    let now = pay.Now()

                    let packet =
                        {
                            BillNo = get "mch_billno"
                            MchId = m.MchId
                            WxAppId = get "wxappid"
                            OpenId = get "re_openid"
                            Amount = amount
                            Wishing = get "wishing"
                            ActName = get "act_name"
                            Remark = get "remark"
                            SendListId = "1000041701" + now.ToString("yyyyMMdd") + digits 12
                            SentAt = now
                            Sends = 1
                        }

                    let payNow () = pay.Pay packet |> ignore

                    do!
                        withFault pay ctx "sendredpack" payNow (fun () ->
                            task {
                                match pay.Pay packet with
                                | Error des -> do! writeXml ctx (failXml "PARAM_ERROR" des)
                                | Ok paid ->
                                    do! pay.WaitIfHeld()

                                    do!
                                        writeXml
                                            ctx
                                            (xmlOf
                                                [
                                                    "return_code", "SUCCESS"
                                                    "return_msg", "发放成功"
                                                    "result_code", "SUCCESS"
                                                    "err_code", "SUCCESS"
                                                    "err_code_des", "发放成功"
                                                    "mch_billno", paid.BillNo
                                                    "mch_id", paid.MchId
                                                    "wxappid", paid.WxAppId
                                                    "re_openid", paid.OpenId
                                                    "total_amount", string paid.Amount
                                                    "send_listid", paid.SendListId
                                                ])
                            })
        })

let private time (t: DateTimeOffset) =
    t.ToOffset(TimeSpan.FromHours 8.).ToString("yyyy-MM-dd HH:mm:ss")

let private getHbInfo (pay: SimPay) =
    handler (fun ctx ->
        task {
            pay.Count "gethbinfo"

            match! authenticate pay ctx with
            | Error answer -> do! writeXml ctx answer
            | Ok(_, get, m) ->
                do!
                    withFault pay ctx "gethbinfo" ignore (fun () ->
                        task {
                            match pay.Find(get "mch_billno") with
                            | None -> do! writeXml ctx (failXml "NOT_FOUND" "指定单号数据不存在")
                            | Some p when p.MchId <> m.MchId -> do! writeXml ctx (failXml "NOT_FOUND" "指定单号数据不存在")
                            | Some p ->
                                let status, changedAt = pay.StatusOf(p, pay.Now())

                                let claim =
                                    match status, changedAt with
                                    | "RECEIVED", Some at ->
                                        [
                                            "hblist",
                                            $"<hbinfo><openid>{p.OpenId}</openid><amount>{p.Amount}</amount><rcv_time>{time at}</rcv_time></hbinfo>"
                                        ]
                                    | "REFUND", Some at ->
                                        [ "refund_time", time at; "refund_amount", string p.Amount ]
                                    | _ -> []

                                let fields =
                                    [
                                        "return_code", "SUCCESS"
                                        "return_msg", "OK"
                                        "result_code", "SUCCESS"
                                        "err_code", "SUCCESS"
                                        "mch_billno", p.BillNo
                                        "mch_id", p.MchId
                                        "detail_id", p.SendListId
                                        "status", status
                                        "send_type", "API"
                                        "hb_type", "NORMAL"
                                        "total_num", "1"
                                        "total_amount", string p.Amount
                                        "send_time", time p.SentAt
                                        "wishing", p.Wishing
                                        "act_name", p.ActName
                                        "remark", p.Remark
                                    ]

                                let plain = claim |> List.filter (fun (k, _) -> k <> "hblist")

                                let hblist =
                                    claim
                                    |> List.tryFind (fun (k, _) -> k = "hblist")
                                    |> Option.map (fun (_, v) -> "<hblist>" + v + "</hblist>")
                                    |> Option.defaultValue ""

                                let xml = xmlOf (fields @ plain)
                                do! writeXml ctx (xml.Substring(0, xml.Length - 6) + hblist + "</xml>")
                        })
        })

/// The pay listener on `https://127.0.0.1:<free port>`; answers with its base URL.
let start (pay: SimPay) =
    task {
        let builder =
            WebApplication.CreateBuilder [| "--hostBuilder:reloadConfigOnChange=false" |]

        builder.Logging.ClearProviders() |> ignore

        builder.WebHost.ConfigureKestrel(fun (o: KestrelServerOptions) ->
            o.Listen(
                IPAddress.Loopback,
                0,
                fun lo ->
                    lo.Protocols <- HttpProtocols.Http1

                    lo.UseHttps(fun (h: HttpsConnectionAdapterOptions) ->
                        h.ServerCertificate <- pay.Authority.ServerCertificate
                        // Asked of every client; checked by the handler, which answers CA_ERROR as WeChat Pay does.
                        h.ClientCertificateMode <- ClientCertificateMode.AllowCertificate
                        h.ClientCertificateValidation <- fun _ _ _ -> true)
                    |> ignore
            ))
        |> ignore

        let app = builder.Build()
        app.MapPost("/mmpaymkttransfers/sendredpack", sendRedPack pay) |> ignore
        app.MapPost("/mmpaymkttransfers/gethbinfo", getHbInfo pay) |> ignore
        do! app.StartAsync()

        let url =
            app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>().Addresses
            |> Seq.head

        return app, url.Replace("[::1]", "127.0.0.1")
    }

/// The simulated WeChat Pay's control API under /sim/pay/ on the simulator's own (plain HTTP) URL,
/// for tests and the demo: merchants' credentials as the console hands them out, faults, a held
/// answer, what happens to sent packets, and what was paid.
module WeChatFs.Simulator.SimPayControl

open System
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open WeChatFs.Simulator.SimApi
open WeChatFs.Simulator.SimPay

/// The control API under /sim/pay/ on the simulator's own (plain HTTP) URL, for tests and the demo.
let mapControl (app: IEndpointRouteBuilder) (pay: SimPay) (payUrl: unit -> string) (caFile: unit -> string) =
    app.MapGet(
        "/sim/pay",
        handler (fun ctx ->
            writeJson
                ctx
                200
                {|
                    pay_base_url = payUrl ()
                    ca_certificate_file = caFile ()
                |})
    )
    |> ignore

    // A merchant as WeChat Pay's console hands it out: API key, apiclient certificate and key (PEM).
    app.MapGet(
        "/sim/pay/merchants/{mch_id}",
        handler (fun ctx ->
            let mch = string ctx.Request.RouteValues["mch_id"]

            if mch = "" || mch.Length > 10 || not (mch |> Seq.forall Char.IsAsciiDigit) then
                writeJson ctx 400 {| error = "mch_id: up to 10 digits" |}
            else
                let m = pay.Merchant mch

                writeJson
                    ctx
                    200
                    {|
                        mch_id = m.MchId
                        api_key = m.ApiKey
                        certificate_pem = m.CertificatePem
                        private_key_pem = m.PrivateKeyPem
                        ca_certificate_pem = pay.CaPem
                    |})
    )
    |> ignore

    // {api: sendredpack|gethbinfo, fault: SYSTEMERROR|PROCESSING|drop, pay_first?: bool, times?: n}
    app.MapPost(
        "/sim/pay/faults",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some body ->
                    let fault =
                        match prop "fault" body with
                        | "SYSTEMERROR" -> Some SystemError
                        | "PROCESSING" -> Some Processing
                        | "drop" -> Some Drop
                        | _ -> None

                    let payFirst =
                        match body.TryGetProperty "pay_first" with
                        | true, v when v.ValueKind = JsonValueKind.False -> false
                        | _ -> true

                    match fault with
                    | None ->
                        do!
                            writeJson
                                ctx
                                400
                                {|
                                    error = "fault: SYSTEMERROR, PROCESSING or drop"
                                |}
                    | Some f ->
                        pay.InjectFault(prop "api" body, { Fault = f; PayFirst = payFirst }, intProp "times" 1 body)
                        do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    // {hold: true|false}: sendredpack pays, then keeps its answer until hold is turned off.
    app.MapPost(
        "/sim/pay/hold",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some body ->
                    pay.SetHold(
                        match body.TryGetProperty "hold" with
                        | true, v -> v.ValueKind = JsonValueKind.True
                        | _ -> false
                    )

                    do! writeJson ctx 200 {| held = pay.Held |}
            })
    )
    |> ignore

    app.MapGet("/sim/pay/held", handler (fun ctx -> writeJson ctx 200 {| held = pay.Held |}))
    |> ignore

    // {outcome: receive|refund|none, after_seconds}: what happens to sent packets, and when.
    app.MapPost(
        "/sim/pay/outcome",
        handler (fun ctx ->
            task {
                match! readJson ctx with
                | None -> do! writeJson ctx 400 {| error = "JSON body required" |}
                | Some body ->
                    let after = TimeSpan.FromSeconds(float (intProp "after_seconds" 0 body))

                    pay.SetOutcome(
                        match prop "outcome" body with
                        | "refund" -> RefundAfter after
                        | "none" -> StaySent
                        | _ -> ReceiveAfter after
                    )

                    do! writeJson ctx 200 {| ok = true |}
            })
    )
    |> ignore

    app.MapGet(
        "/sim/pay/redpacks",
        handler (fun ctx ->
            let now = pay.Now()

            writeJson
                ctx
                200
                (pay.Packets()
                 |> List.map (fun p ->
                     {|
                         mch_billno = p.BillNo
                         mch_id = p.MchId
                         wxappid = p.WxAppId
                         re_openid = p.OpenId
                         total_amount = p.Amount
                         send_listid = p.SendListId
                         status = fst (pay.StatusOf(p, now))
                         sends = p.Sends
                     |})))
    )
    |> ignore

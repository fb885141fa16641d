/// How a red packet looks from outside: in API answers and in redpack.* webhook messages, with the
/// err_code explained.
module WeChatFs.RedPackView

open System.Text.Json.Nodes
open WeChatFs.RedPacks
open WeChatFs.RedPackState
open WeChatFs.RedPackStore

/// The JSON view of a packet: in API answers and in webhook messages.
let view (r: RedPackRecord) =
    let o = JsonObject()
    let set (name: string) (v: JsonNode) = o[name] <- v
    let str (v: string) = JsonValue.Create v :> JsonNode
    let opt (v: string option) = v |> Option.map str |> Option.toObj
    let status = r.Packet.Status
    set "id" (str (Domain.Ids.redPackId r.Id))
    set "mch_id" (str (PayIds.mchId r.MchId))
    set "mch_billno" (str (PayIds.billNo r.BillNo))
    set "authorizer_appid" (str (Domain.Ids.authorizerAppId r.AuthorizerAppId))
    set "tenant" (opt (r.Tenant |> Option.map Domain.Ids.tenant))
    set "openid" (str r.OpenId)
    set "wx_tk_id" (opt r.Request.WxTkId)
    set "amount_fen" (JsonValue.Create r.AmountFen)
    set "send_name" (str r.Request.SendName)
    set "wishing" (str r.Request.Wishing)
    set "act_name" (str r.Request.ActName)
    set "remark" (str r.Request.Remark)
    set "scene_id" (opt r.Request.SceneId)
    set "status" (str (Status.name status))

    let listId, code, des =
        match status with
        | Sent id
        | Received id
        | Refunded id -> Some id, None, None
        | Failed(c, d) -> None, Some c, Some d
        | Undecided reason -> None, None, Some reason
        | Created
        | Sending -> None, None, None

    set "send_listid" (opt listId)
    set "err_code" (opt code)
    set "err_code_des" (opt des)

    match code with
    | Some c ->
        let meaning, action = explainErrCode c
        set "err_meaning" (str meaning)
        set "err_action" (str action)
    | None -> ()

    set "hb_status" (opt r.Packet.HbStatus)
    set "attempts" (JsonValue.Create r.Packet.Attempts)

    set
        "next_check_at"
        (r.Packet.NextCheckAt
         |> Option.map (fun t -> JsonValue.Create t :> JsonNode)
         |> Option.toObj)

    set "created_at" (JsonValue.Create r.CreatedAt)
    set "updated_at" (JsonValue.Create r.UpdatedAt)
    o

/// Console page `/console/redpacks`: cash red packets, newest first, paged and filterable by status
/// and merchant, with WeChat Pay's err_code explained. Read-only; no merchant secret is shown.
module WeChatFs.ConsoleRedPacks

open System
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.RedPacks
open WeChatFs.RedPackState
open WeChatFs.RedPackStore
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Red packets"
        Path = "/console/redpacks"
    }

let pageSize = 50

let statuses =
    [ "created"; "sending"; "sent"; "received"; "refunded"; "failed"; "undecided" ]

/// Fen as yuan: 888 → "8.88".
let yuan (fen: int64) =
    let sign = if fen < 0L then "-" else ""
    let fen = abs fen
    $"{sign}{fen / 100L}.{fen % 100L:D2}"

let private packetBadge (status: string) =
    match status with
    | "received" -> badge "good" status
    | "failed"
    | "refunded" -> badge "bad" status
    | other -> badge "warn" other

let private errCell (status: Status) =
    match status with
    | Failed(errCode, des) ->
        let meaning, action = explainErrCode errCode

        span
            []
            [
                code [] [ str errCode ]
                str (if String.IsNullOrEmpty des then "" else $" ({des})")
                str $": {meaning}. Action: {action}."
            ]
    | Undecided reason -> str reason
    | _ -> str "—"

let private list (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let statusText = (string ctx.Request.Query["status"]).Trim()

            let status =
                if List.contains statusText statuses then
                    Some statusText
                else
                    None

            let mch = (string ctx.Request.Query["mch_id"]).Trim()
            let mch = if mch = "" then None else Some mch

            let offset = Paging.offset (string ctx.Request.Query["offset"])

            let! page =
                c.RedPacks.Store.ListRedPacks
                    {
                        Status = status
                        MchId = mch
                        Offset = offset
                        Limit = pageSize
                    }

            let back =
                let e (s: string) = Uri.EscapeDataString s
                $"""{nav.Path}?status={e (defaultArg status "")}&mch_id={e (defaultArg mch "")}"""

            let content =
                [
                    form
                        [ _method "get"; _action nav.Path; _class "inline"; _id "filter" ]
                        [
                            div
                                []
                                [
                                    label [ _for "status" ] [ str "Status" ]
                                    select
                                        [ _id "status"; _name "status" ]
                                        [
                                            yield
                                                option
                                                    [
                                                        _value ""
                                                        if status.IsNone then
                                                            _selected
                                                    ]
                                                    [ str "any" ]
                                            for s in statuses ->
                                                option
                                                    [
                                                        _value s
                                                        if status = Some s then
                                                            _selected
                                                    ]
                                                    [ str s ]
                                        ]
                                ]
                            div
                                []
                                [
                                    label [ _for "mch_id" ] [ str "Merchant (mch_id)" ]
                                    input
                                        [
                                            _id "mch_id"
                                            _name "mch_id"
                                            _value (defaultArg mch "")
                                            attr "inputmode" "numeric"
                                            attr "placeholder" "e.g. 1900000109"
                                        ]
                                ]
                            div [] [ button [ _type "submit" ] [ str "Filter" ] ]
                        ]
                    dataTable
                        $"{page.Total} red packets"
                        [
                            "Id"
                            "mch_id"
                            "Account"
                            "Amount (yuan)"
                            "Status"
                            "err_code"
                            "Created"
                            "Updated"
                        ]
                        (page.Items
                         |> List.map (fun r ->
                             let (MchId m) = r.MchId

                             [
                                 code [] [ str (Domain.Ids.redPackId r.Id) ]
                                 str m
                                 a
                                     [
                                         _href
                                             $"/console/authorizers/{Uri.EscapeDataString(Domain.Ids.authorizerAppId r.AuthorizerAppId)}"
                                     ]
                                     [ str (Domain.Ids.authorizerAppId r.AuthorizerAppId) ]
                                 str (yuan r.AmountFen)
                                 packetBadge (Status.name r.Packet.Status)
                                 errCell r.Packet.Status
                                 time' r.CreatedAt
                                 time' r.UpdatedAt
                             ]))
                    p
                        [ _class "inline" ]
                        [
                            if offset > 0 then
                                a [ _href $"{back}&offset={max 0 (offset - pageSize)}" ] [ str "← Previous" ]
                            if offset + pageSize < page.Total then
                                a [ _href $"{back}&offset={offset + pageSize}" ] [ str "Next →" ]
                        ]
                ]

            return "Red packets", content
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/redpacks", list c) |> ignore

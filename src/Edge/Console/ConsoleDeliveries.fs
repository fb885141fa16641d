/// Console pages `/console/deliveries` (by status, dead letters first, with their last error and a
/// retry button) and `/console/deliveries/{id}` (one delivery: attempts, last error, next attempt).
module WeChatFs.ConsoleDeliveries

open System
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Http
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.Store
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Deliveries"
        Path = "/console/deliveries"
    }

let pageSize = 50

let private retryForm (token: string) (id: string) (back: string) =
    postForm
        token
        $"/console/deliveries/{Uri.EscapeDataString id}/retry"
        []
        [
            input [ _type "hidden"; _name "back"; _value back ]
            button [ _type "submit"; attr "aria-label" $"Retry delivery {id}"; _class "retry" ] [ str "Retry" ]
        ]

let private list (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let statusText =
                match string ctx.Request.Query["status"] with
                | "" -> "dead"
                | s -> s

            let status = DeliveryStatus.ofText statusText |> Option.defaultValue Dead

            let offset = Paging.offset (string ctx.Request.Query["offset"])
            // "Next" hands on the cursor of the page's last row, "Previous" its first row's: a page
            // deep in a large inbox costs what the first does (an offset is still read, for links
            // made before).
            let before = Paging.Cursor.ofText (string ctx.Request.Query["before"])
            let after = Paging.Cursor.ofText (string ctx.Request.Query["after"])

            // A page by offset keeps "Previous" by offset, as links made before the cursors do.
            let byOffset () =
                task {
                    let! r = deliveriesAt c.Services.Store (Some status) offset pageSize
                    return { r with Previous = None }
                }

            let! r =
                match before, after with
                | Some cursor, _ -> deliveriesBefore c.Services.Store (Some status) cursor pageSize
                | None, Some cursor -> deliveriesAfter c.Services.Store (Some status) cursor pageSize
                | None, None -> byOffset ()

            let page = r.Page

            let token = formToken c ctx
            let back = $"{nav.Path}?status={DeliveryStatus.toText status}"

            let content =
                [
                    match string ctx.Request.Query["notice"] with
                    | "" -> ()
                    | n -> p [ attr "role" "status"; _id "notice" ] [ badge "good" "done"; str (" " + n) ]
                    tag
                        "nav"
                        [ attr "aria-label" "Delivery status"; _class "inline" ]
                        [
                            for s in [ Dead; Pending; Delivered ] ->
                                a
                                    [
                                        _href $"{nav.Path}?status={DeliveryStatus.toText s}"
                                        if s = status then
                                            attr "aria-current" "true"
                                    ]
                                    [ str (DeliveryStatus.toText s) ]
                        ]
                    dataTable
                        $"{page.Total} {DeliveryStatus.toText status} deliveries"
                        [ "Received"; "Kind"; "Account"; "Tenant"; "Attempts"; "Last error"; "" ]
                        (page.Items
                         |> List.map (fun d ->
                             [
                                 a [ _href $"{nav.Path}/{Uri.EscapeDataString d.Id}" ] [ time' d.ReceivedAt ]
                                 str d.Kind
                                 str (Domain.Ids.authorizerAppId d.AuthorizerAppId)
                                 str (d.Tenant |> Option.map Domain.Ids.tenant |> Option.defaultValue "—")
                                 str (string d.Attempts)
                                 str (d.LastError |> Option.defaultValue "—")
                                 (if d.Status = Delivered then
                                      str ""
                                  else
                                      retryForm token d.Id back)
                             ]))
                    p
                        [ _class "inline" ]
                        [
                            match r.Previous with
                            | Some cursor ->
                                a [ _href back ] [ str "← Newest" ]
                                str " "
                                let text = Paging.Cursor.toText cursor
                                a [ _href $"{back}&after={Uri.EscapeDataString text}" ] [ str "← Previous" ]
                            | None when offset > 0 ->
                                a [ _href $"{back}&offset={max 0 (offset - pageSize)}" ] [ str "← Previous" ]
                            | None -> ()
                            match r.Next with
                            | Some cursor ->
                                let text = Paging.Cursor.toText cursor
                                a [ _href $"{back}&before={Uri.EscapeDataString text}" ] [ str "Next →" ]
                            | None -> ()
                        ]
                ]

            return "Deliveries", content
        })

let private detail (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let id = string ctx.Request.RouteValues["id"]

            match! c.Services.Store.GetDelivery id with
            | None -> return "Unknown delivery", [ p [] [ str "No delivery has this id." ] ]
            | Some d ->
                let content =
                    [
                        facts
                            [
                                "Id", code [] [ str d.Id ]
                                "Status",
                                span [ _id "delivery-status" ] [ statusBadge (DeliveryStatus.toText d.Status) ]
                                "Kind", str d.Kind
                                "Account",
                                a
                                    [
                                        _href
                                            $"/console/authorizers/{Uri.EscapeDataString(Domain.Ids.authorizerAppId d.AuthorizerAppId)}"
                                    ]
                                    [ str (Domain.Ids.authorizerAppId d.AuthorizerAppId) ]
                                "Tenant", str (d.Tenant |> Option.map Domain.Ids.tenant |> Option.defaultValue "—")
                                "Received", time' d.ReceivedAt
                                "Attempts", str (string d.Attempts)
                                "Last error", str (d.LastError |> Option.defaultValue "—")
                                "Next attempt", timeOpt d.NextAttemptAt
                                "Delivered", timeOpt d.DeliveredAt
                            ]
                        if d.Status <> Delivered then
                            retryForm (formToken c ctx) d.Id $"{nav.Path}/{Uri.EscapeDataString d.Id}"
                        h2 [] [ str "Payload sent to the webhook" ]
                        pre [ _class "scroll" ] [ code [] [ str d.Payload ] ]
                    ]

                return "Delivery", content
        })

let private retry (c: ConsoleContext) =
    action c (fun ctx form ->
        task {
            let id = string ctx.Request.RouteValues["id"]
            let back = safeReturn (string form["back"])
            let sep = if back.Contains '?' then "&" else "?"
            let! retried = c.Services.Store.RetryDelivery(id, c.Services.Clock.GetUtcNow())

            let notice =
                if retried then
                    "Delivery put back in line; it is attempted within a poll interval."
                else
                    "Nothing to retry: the delivery is unknown or already delivered."

            return back + sep + "notice=" + Uri.EscapeDataString notice
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/deliveries", list c) |> ignore
    app.MapGet("/console/deliveries/{id}", detail c) |> ignore
    app.MapPost("/console/deliveries/{id}/retry", retry c) |> ignore

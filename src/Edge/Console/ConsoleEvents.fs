/// Console page `/console/events`: the event log (pushes for unknown accounts, fast-registration
/// results and the like), newest first, filterable by kind.
module WeChatFs.ConsoleEvents

open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Events"
        Path = "/console/events"
    }

let limit = 200

let private events (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let kind = (string ctx.Request.Query["kind"]).Trim()

            let! records =
                c.Services.Store.RecentEvents((if kind = "" then None else Some kind), limit)

            let content =
                [
                    form
                        [ _method "get"; _action nav.Path; _class "inline"; _id "filter" ]
                        [
                            div
                                []
                                [
                                    label [ _for "kind" ] [ str "Kind" ]
                                    input
                                        [
                                            _id "kind"
                                            _name "kind"
                                            _value kind
                                            attr "placeholder" "e.g. unknown_authorizer_message"
                                        ]
                                ]
                            div [] [ button [ _type "submit" ] [ str "Filter" ] ]
                        ]
                    dataTable
                        $"The latest {records.Length} events (at most {limit})"
                        [ "When"; "Kind"; "Subject"; "Detail" ]
                        (records
                         |> List.map (fun e ->
                             [
                                 time' e.At
                                 a [ _href $"{nav.Path}?kind={System.Uri.EscapeDataString e.Kind}" ] [ str e.Kind ]
                                 str e.Subject
                                 str e.Detail
                             ]))
                ]

            return "Events", content
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/events", events c) |> ignore

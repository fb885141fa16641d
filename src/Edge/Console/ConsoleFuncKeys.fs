/// Console page `/console/func-keys`: the OAuth funcKey routes (where a follower lands after
/// consenting, with which scope, for which tenant), read-only; they are changed through the API or
/// the configuration.
module WeChatFs.ConsoleFuncKeys

open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.OAuth
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "FuncKeys"
        Path = "/console/func-keys"
    }

let private list (c: ConsoleContext) =
    page c nav.Path (fun _ ->
        task {
            let! routes = c.OAuth.Store.ListFuncKeys()
            let routes = routes |> List.sortBy (fun r -> r.Route.FuncKey)

            let content =
                [
                    p
                        [ _class "muted" ]
                        [
                            str "Routes are added and removed with "
                            code [] [ str "/api/oauth/func-keys" ]
                            str "."
                        ]
                    dataTable
                        $"{routes.Length} funcKey routes"
                        [
                            "FuncKey"
                            "Target URL"
                            "Scope"
                            "Tenant"
                            "Description"
                            "Source"
                            "Updated"
                        ]
                        (routes
                         |> List.map (fun r ->
                             [
                                 code [] [ str r.Route.FuncKey ]
                                 str (string r.Route.TargetUrl)
                                 str (OAuthScope.toText r.Route.Scope)
                                 str (
                                     r.Route.Tenant
                                     |> Option.map Domain.Ids.tenant
                                     |> Option.defaultValue "every account"
                                 )
                                 str (r.Route.Description |> Option.defaultValue "—")
                                 str r.Source
                                 time' r.UpdatedAt
                             ]))
                ]

            return "FuncKey routes", content
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/func-keys", list c) |> ignore

/// Console page `/console`: the platform at a glance. The ticket's age, the component token's expiry,
/// the last WeChat error with its meaning and action, authorizers by status, deliveries pending and
/// dead, and pushes per minute over the last hours.
module WeChatFs.ConsoleOverview

open System
open Microsoft.AspNetCore.Routing
open Microsoft.AspNetCore.Builder
open Giraffe.ViewEngine
open WeChatFs.Domain
open WeChatFs.Store
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Overview"
        Path = "/console"
    }

let private countAuthorizers (store: IStore) status =
    task {
        let! page =
            store.ListAuthorizers
                {
                    Tenant = None
                    Status = Some status
                    Offset = 0
                    Limit = 1
                }

        return page.Total
    }

let private overview (c: ConsoleContext) =
    page c nav.Path (fun _ ->
        task {
            let s = c.Services
            let now = s.Clock.GetUtcNow()
            let policy = s.Options.TokenPolicy
            let! ticket = s.Store.LatestTicket s.Options.ComponentAppId
            let! token = s.Store.ComponentToken s.Options.ComponentAppId
            let! lastError = s.Components.LastError()
            let! authorized = countAuthorizers s.Store Authorized
            let! needs = countAuthorizers s.Store NeedsReauthorization
            let! revoked = countAuthorizers s.Store Revoked
            let! pending = s.Store.ListDeliveries(Some Pending, 0, 1)
            let! dead = s.Store.ListDeliveries(Some Dead, 0, 1)
            let hours = 3
            let series = c.Metrics.PushesPerMinute(hours * 60)

            let ticketView =
                match ticket with
                | None -> [ "Ticket", badge "bad" "none yet (WeChat pushes one every 10 minutes)" ]
                | Some t ->
                    let age = now - t.ReceivedAt
                    let fresh = age < policy.TicketLifetime

                    [
                        "Ticket received", time' t.ReceivedAt
                        "Ticket age",
                        span
                            [ _id "ticket-age" ]
                            [
                                str (duration age + " ")
                                (if fresh then
                                     badge "good" "fresh"
                                 else
                                     badge "bad" "older than 12 h: stale")
                            ]
                    ]

            let tokenView =
                match token with
                | None -> [ "Component token", span [ _id "token-state" ] [ badge "bad" "none yet" ] ]
                | Some t ->
                    let usable = Expiring.isUsable now t

                    [
                        "Component token",
                        span
                            [ _id "token-state" ]
                            [
                                (if usable then
                                     badge "good" "valid"
                                 else
                                     badge "bad" "expired")
                                str (" " + duration (t.ExpiresAt - now) + " left")
                            ]
                        "Token expires", time' t.ExpiresAt
                        "Refresh due",
                        str (
                            if Expiring.isDue policy.RefreshMargin now t then
                                "yes"
                            else
                                "no"
                        )
                    ]

            let errorView =
                match lastError with
                | None -> p [ _id "last-error" ] [ str "No WeChat error recorded." ]
                | Some e ->
                    let guide = e.Errcode |> Option.bind ErrorGuide.tryFind

                    div
                        [ _id "last-error" ]
                        [
                            facts
                                [
                                    "When", time' e.At
                                    "Errcode",
                                    (match e.Errcode with
                                     | Some code -> a [ _href $"/console/errors?code={code}" ] [ str (string code) ]
                                     | None -> str "—")
                                    "Message", str e.Message
                                    "Meaning",
                                    str (
                                        guide
                                        |> Option.map (fun g -> g.Meaning)
                                        |> Option.orElse (e.Errcode |> Option.map ErrorGuide.explain)
                                        |> Option.defaultValue "—"
                                    )
                                    "What to do",
                                    str (guide |> Option.map (fun g -> g.Action) |> Option.defaultValue "—")
                                ]
                        ]

            let content =
                [
                    div
                        [ _class "cards" ]
                        [
                            section
                                [ _class "card"; attr "aria-labelledby" "h-component" ]
                                [
                                    h2 [ _id "h-component" ] [ str "Component" ]
                                    facts (
                                        [
                                            "AppID", code [] [ str (Ids.componentAppId s.Options.ComponentAppId) ]
                                            "Store", str s.Store.Provider
                                        ]
                                        @ ticketView
                                        @ tokenView
                                    )
                                ]
                            section
                                [ _class "card"; attr "aria-labelledby" "h-authorizers" ]
                                [
                                    h2 [ _id "h-authorizers" ] [ str "Authorizers" ]
                                    facts
                                        [
                                            "Authorized",
                                            a
                                                [ _href "/console/authorizers?status=authorized" ]
                                                [ str (string authorized) ]
                                            "Need re-authorization",
                                            a
                                                [ _href "/console/authorizers?status=needs_reauthorization" ]
                                                [ str (string needs) ]
                                            "Revoked",
                                            a [ _href "/console/authorizers?status=revoked" ] [ str (string revoked) ]
                                        ]
                                ]
                            section
                                [ _class "card"; attr "aria-labelledby" "h-deliveries" ]
                                [
                                    h2 [ _id "h-deliveries" ] [ str "Deliveries" ]
                                    facts
                                        [
                                            "Pending",
                                            a
                                                [ _href "/console/deliveries?status=pending" ]
                                                [ str (string pending.Total) ]
                                            "Dead",
                                            a
                                                [ _id "dead-count"; _href "/console/deliveries?status=dead" ]
                                                [ str (string dead.Total) ]
                                        ]
                                ]
                        ]
                    section
                        [ attr "aria-labelledby" "h-error" ]
                        [ h2 [ _id "h-error" ] [ str "Last WeChat error" ]; errorView ]
                    section
                        [ attr "aria-labelledby" "h-pushes" ]
                        [
                            h2 [ _id "h-pushes" ] [ str $"Pushes per minute, last {hours} hours (this instance)" ]
                            pushChart series
                        ]
                ]

            return "Overview", content
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console", overview c) |> ignore

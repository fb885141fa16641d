/// Console pages `/console/deployments` (every mini-program deployment with a progress bar) and
/// `/console/deployments/{id}` (counts per state and each target's state, step, attempts and last
/// errcode), read-only; deployments are run through `/api/mini-programs/deployments`.
module WeChatFs.ConsoleDeployments

open System
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.MiniPrograms
open WeChatFs.DeploymentRecords
open WeChatFs.DeploymentStore
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Deployments"
        Path = "/console/deployments"
    }

let pageSize = 50
let targetLimit = 500

/// The states a target ends in: what the progress bar counts as done.
let finishedStates =
    [ "released"; "failed"; "skipped"; "audit_rejected"; "cancelled" ]

let private finished (counts: (string * int) list) =
    counts
    |> List.sumBy (fun (s, n) -> if List.contains s finishedStates then n else 0)

/// A labelled progress bar: finished targets over all targets.
let progressBar (id: string) (counts: (string * int) list) =
    let total = counts |> List.sumBy snd
    let done' = finished counts

    let text = $"{done'} of {total} targets finished"

    span
        []
        [
            tag
                "progress"
                [
                    attr "max" (string (max 1 total))
                    attr "value" (string done')
                    attr "aria-label" $"Deployment {id}: {text}"
                ]
                [ str text ]
            str $" {done'}/{total}"
        ]

let private stateBadge (state: string) =
    match state with
    | "released" -> badge "good" state
    | "failed"
    | "audit_rejected"
    | "cancelled" -> badge "bad" state
    | other -> badge "warn" other

let private errcodeCell (code: int option) =
    match code with
    | None -> str "—"
    | Some code -> a [ _href $"/console/errors?code={code}" ] [ str (ErrorGuide.explain code) ]

let private list (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let offset = Paging.offset (string ctx.Request.Query["offset"])

            match c.Deployments with
            | None -> return "Deployments", [ p [] [ str "Deployments need the SQL store." ] ]
            | Some service ->
                let! page = service.Store.List(offset, pageSize)

                let! rows =
                    page.Items
                    |> List.map (fun d ->
                        task {
                            let! counts = service.Store.Counts d.Id
                            return d, counts
                        })
                    |> Threading.Tasks.Task.WhenAll

                let content =
                    [
                        dataTable
                            $"{page.Total} deployments"
                            [ "Id"; "Template"; "Version"; "Status"; "Progress"; "Created"; "Updated" ]
                            (rows
                             |> List.ofArray
                             |> List.map (fun (d, counts) ->
                                 let id = DeploymentId.value d.Id

                                 [
                                     a [ _href $"{nav.Path}/{Uri.EscapeDataString id}" ] [ code [] [ str id ] ]
                                     str (string d.TemplateId)
                                     str d.UserVersion
                                     statusBadge (DeploymentStatus.toText d.Status)
                                     progressBar id counts
                                     time' d.CreatedAt
                                     time' d.UpdatedAt
                                 ]))
                        p
                            [ _class "inline" ]
                            [
                                if offset > 0 then
                                    a [ _href $"{nav.Path}?offset={max 0 (offset - pageSize)}" ] [ str "← Previous" ]
                                if offset + pageSize < page.Total then
                                    a [ _href $"{nav.Path}?offset={offset + pageSize}" ] [ str "Next →" ]
                            ]
                    ]

                return "Deployments", content
        })

let private detail (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let id = string ctx.Request.RouteValues["id"]

            let! found =
                match c.Deployments with
                | None -> Threading.Tasks.Task.FromResult None
                | Some service -> service.Store.Get(DeploymentId id)

            match found, c.Deployments with
            | Some d, Some service ->
                let! counts = service.Store.Counts d.Id
                let! targets = service.Store.Targets(d.Id, None, 0, targetLimit)
                let total = counts |> List.sumBy snd

                let content =
                    [
                        facts
                            [
                                "Id", code [] [ str id ]
                                "Status",
                                span [ _id "deployment-status" ] [ statusBadge (DeploymentStatus.toText d.Status) ]
                                "Template", str (string d.TemplateId)
                                "Version", str d.UserVersion
                                "Description", str d.UserDesc
                                "Release", str (ReleaseMode.toText d.Release)
                                "Progress", progressBar id counts
                                "Note", str (d.Note |> Option.defaultValue "—")
                                "Created", time' d.CreatedAt
                                "Updated", time' d.UpdatedAt
                            ]
                        dataTable
                            $"Targets per state ({total} in all)"
                            [ "State"; "Targets" ]
                            (counts
                             |> List.filter (fun (_, n) -> n > 0)
                             |> List.sortBy (fun (s, _) -> List.tryFindIndex ((=) s) TargetState.all)
                             |> List.map (fun (s, n) -> [ stateBadge s; str (string n) ]))
                        dataTable
                            $"{targets.Length} targets (at most {targetLimit})"
                            [ "AppID"; "State"; "Step"; "Attempts"; "Last errcode"; "Audit id"; "Updated" ]
                            (targets
                             |> List.map (fun t ->
                                 let target = t.Target

                                 let step =
                                     match target.State with
                                     | Failed(step, _, _) -> Step.toText step
                                     | _ -> "—"

                                 [
                                     a
                                         [
                                             _href
                                                 $"/console/authorizers/{Uri.EscapeDataString(Domain.Ids.authorizerAppId target.AppId)}"
                                         ]
                                         [ str (Domain.Ids.authorizerAppId target.AppId) ]
                                     stateBadge (TargetState.name target.State)
                                     str step
                                     str (string target.Attempts)
                                     errcodeCell target.LastErrcode
                                     str (target.AuditId |> Option.map string |> Option.defaultValue "—")
                                     time' target.UpdatedAt
                                 ]))
                    ]

                return "Deployment", content
            | _ -> return "Unknown deployment", [ p [] [ str "No deployment has this id." ] ]
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/deployments", list c) |> ignore
    app.MapGet("/console/deployments/{id}", detail c) |> ignore

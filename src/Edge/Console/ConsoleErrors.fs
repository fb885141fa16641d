/// Console page `/console/errors`: what a WeChat errcode means and what to do (the error guide).
module WeChatFs.ConsoleErrors

open System
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Errors"
        Path = "/console/errors"
    }

let private errors (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let codeText = (string ctx.Request.Query["code"]).Trim()

            let content =
                [
                    form
                        [ _method "get"; _action nav.Path; _class "inline"; _id "lookup" ]
                        [
                            div
                                []
                                [
                                    label [ _for "code" ] [ str "Errcode" ]
                                    input
                                        [
                                            _id "code"
                                            _name "code"
                                            _value codeText
                                            attr "inputmode" "numeric"
                                            attr "placeholder" "e.g. 61023"
                                        ]
                                ]
                            div [] [ button [ _type "submit" ] [ str "Explain" ] ]
                        ]
                    match Int32.TryParse codeText with
                    | true, code ->
                        match ErrorGuide.tryFind code with
                        | Some e ->
                            section
                                [ _id "explanation"; attr "aria-labelledby" "h-code" ]
                                [
                                    h2 [ _id "h-code" ] [ str $"errcode {code}" ]
                                    facts
                                        [
                                            "Meaning", str e.Meaning
                                            "What to do", str e.Action
                                            "Retrying helps", str (if e.Retry then "yes, after the action" else "no")
                                        ]
                                ]
                        | None -> p [ _id "explanation" ] [ str (ErrorGuide.explain code) ]
                    | _ when codeText <> "" ->
                        p [ _class "error"; attr "role" "alert" ] [ str "An errcode is a whole number, e.g. 40001." ]
                    | _ -> ()
                    dataTable
                        "Every errcode the guide knows"
                        [ "Errcode"; "Meaning"; "What to do" ]
                        (ErrorGuide.all
                         |> List.map (fun e ->
                             [
                                 a [ _href $"{nav.Path}?code={e.Code}" ] [ str (string e.Code) ]
                                 str e.Meaning
                                 str e.Action
                             ]))
                ]

            return "WeChat errors", content
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/errors", errors c) |> ignore

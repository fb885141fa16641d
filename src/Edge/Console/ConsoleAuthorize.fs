/// Console page `/console/authorize`: a link and its QR code for a tenant, to send to a merchant. The
/// link opens the authorization page on this gateway's own domain (WeChat checks the Referer), signed
/// for the tenant like the links of POST /api/authorization-links, and asks WeChat for a fresh
/// pre_auth_code each time it is opened.
module WeChatFs.ConsoleAuthorize

open System
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Routing
open Giraffe.ViewEngine
open QRCoder
open WeChatFs.Domain
open WeChatFs.ConsoleViews
open WeChatFs.ConsoleSession

let nav =
    {
        Title = "Authorize"
        Path = "/console/authorize"
    }

let private qrSvg (text: string) =
    use generator = new QRCodeGenerator()
    use data = generator.CreateQrCode(text, QRCodeGenerator.ECCLevel.M)
    use svg = new SvgQRCode(data)
    svg.GetGraphic(4)

let private authorize (c: ConsoleContext) =
    page c nav.Path (fun ctx ->
        task {
            let q = ctx.Request.Query
            let tenant = string q["tenant"]
            let authType = string q["auth_type"]

            let result =
                if String.IsNullOrWhiteSpace tenant then
                    None
                else
                    Some(AuthorizationPages.validateLinkRequest tenant authType (string q["biz_appid"]))

            let content =
                [
                    form
                        [ _method "get"; _action nav.Path; _class "inline"; _id "make-link" ]
                        [
                            div
                                []
                                [
                                    label [ _for "tenant" ] [ str "Tenant" ]
                                    input
                                        [
                                            _id "tenant"
                                            _name "tenant"
                                            _value tenant
                                            attr "required" ""
                                            attr "maxlength" "128"
                                        ]
                                ]
                            div
                                []
                                [
                                    label [ _for "auth_type" ] [ str "Accounts offered" ]
                                    select
                                        [ _id "auth_type"; _name "auth_type" ]
                                        [
                                            for value, text in
                                                [
                                                    "", "both (default)"
                                                    "1", "official accounts"
                                                    "2", "mini programs"
                                                    "3", "both"
                                                ] ->
                                                option
                                                    [
                                                        _value value
                                                        if value = authType then
                                                            _selected
                                                    ]
                                                    [ str text ]
                                        ]
                                ]
                            div [] [ button [ _type "submit" ] [ str "Make a link" ] ]
                        ]
                    match result with
                    | None ->
                        p
                            [ _class "muted" ]
                            [
                                str "The merchant opens the link (or scans the code with WeChat) and confirms."
                            ]
                    | Some(Error e) -> p [ _class "error"; attr "role" "alert" ] [ str e ]
                    | Some(Ok r) ->
                        let url = AuthorizationPages.authorizePageUrl c.Services c.Authorizers r

                        section
                            [ attr "aria-labelledby" "h-link" ]
                            [
                                h2 [ _id "h-link" ] [ str $"Link for {Ids.tenant r.Tenant}" ]
                                p [] [ a [ _id "authorize-link"; _href url ] [ str url ] ]
                                div
                                    [ _class "qr"; attr "role" "img"; attr "aria-label" "QR code of the link" ]
                                    [ rawText (qrSvg url) ]
                                p
                                    [ _class "muted" ]
                                    [
                                        str "The link is signed for this tenant and works for "
                                        str (duration c.Services.Options.AuthorizationStateLifetime)
                                        str "; each opening asks WeChat for a fresh code."
                                    ]
                            ]
                ]

            return "Authorize an account", content
        })

let map (c: ConsoleContext) (app: IEndpointRouteBuilder) =
    app.MapGet("/console/authorize", authorize c) |> ignore

/// Domain verification files (seed §3.1.2.1): WeChat asks the owner of a web domain to serve a file
/// it names (`MP_verify_<code>.txt` and the like) at the domain's root. Stored with the admin key,
/// served at `/{name}` as text.
module WeChatFs.VerificationFileApi

open System.Text
open Microsoft.AspNetCore.Http
open WeChatFs.OAuth
open WeChatFs.OAuthFlow
open WeChatFs.Http
open WeChatFs.Problems

let private route (ctx: HttpContext) (name: string) = string ctx.Request.RouteValues[name]

/// PUT /api/verification-files/{name}: the body is the file's content (at most 1 KiB).
let putVerificationFile (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            let name = route ctx "name"

            if not (isVerificationFileName name) then
                do! problem ctx (BadField("name", "name must be 1 to 64 letters, digits, '_' or '-', then .txt"))
            else
                match! readLimited ctx maxVerificationFileBytes with
                | TooLarge -> do! problem ctx (Oversized(Oversize.VerificationFile maxVerificationFileBytes))
                | Body bytes ->
                    do! oauth.Store.PutVerificationFile(name, Encoding.UTF8.GetString bytes, s.Clock.GetUtcNow())

                    do!
                        writeJson
                            ctx
                            200
                            {|
                                name = name
                                url = $"{s.Options.PublicBaseUrl.ToString().TrimEnd '/'}/{name}"
                                bytes = bytes.Length
                            |}
        })

let deleteVerificationFile (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            match! oauth.Store.DeleteVerificationFile(route ctx "name") with
            | true -> ctx.Response.StatusCode <- 204
            | false -> do! problem ctx (NotFound Missing.VerificationFile)
        })

let listVerificationFiles (s: Services) (oauth: OAuthService) =
    admin s (fun ctx ->
        task {
            let! files = oauth.Store.ListVerificationFiles()

            do!
                writeJson
                    ctx
                    200
                    {|
                        items =
                            files
                            |> List.map (fun f ->
                                {|
                                    name = f.Name
                                    content = f.Content
                                    updated_at = f.UpdatedAt
                                |})
                    |}
        })

/// GET /{name}.txt at the root, as WeChat fetches it to verify the domain.
let serveVerificationFile (oauth: OAuthService) =
    handler (fun ctx ->
        task {
            match! oauth.Store.GetVerificationFile(route ctx "name") with
            | Some content -> do! writeText ctx 200 content
            | None -> do! writeText ctx 404 "not found"
        })

/// The HTTP side of the integration tests: reading answers, polling for what a background task
/// does (eventually / holdsFor), and a business system's webhook receiver. Opened with the
/// namespace, so the tests that open Harness (the gateway and simulator fixture) find them too.
[<AutoOpen>]
module WeChatFs.Tests.HarnessHttp

open System
open System.Collections.Concurrent
open System.IO
open System.Net.Http
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Hosting.Server
open Microsoft.AspNetCore.Hosting.Server.Features
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging

/// The address a started app listens on.
let addressOf (app: WebApplication) =
    let server = app.Services.GetRequiredService<IServer>()
    let addresses = server.Features.Get<IServerAddressesFeature>()
    addresses.Addresses |> Seq.head

let json (response: HttpResponseMessage) =
    task {
        let! body = response.Content.ReadAsStringAsync()

        try
            return JsonDocument.Parse(body).RootElement.Clone()
        with :? JsonException ->
            return failwith $"not JSON ({int response.StatusCode}): {body}"
    }

let postJson (client: HttpClient) (url: string) (body: obj) =
    client.PostAsync(url, new StringContent(JsonSerializer.Serialize body, Encoding.UTF8, "application/json"))

let str (e: JsonElement) (name: string) =
    match e.TryGetProperty name with
    | true, v when v.ValueKind = JsonValueKind.String -> v.GetString()
    | true, v -> v.GetRawText()
    | _ -> null

/// Polls until `check` holds or the time is up; integration steps that cross a background task.
let eventually (timeout: TimeSpan) (check: unit -> Task<bool>) =
    task {
        let deadline = DateTime.UtcNow + timeout
        let mutable ok = false

        while not ok && DateTime.UtcNow < deadline do
            let! r = check ()
            ok <- r

            if not ok then
                do! Task.Delay 50

        return ok
    }

/// Checks that `check` keeps holding for all of `period`, polling; false as soon as it does not.
/// Tests that something does not happen (a second delivery, a second refresh) watch for it over a
/// window this way instead of sleeping and counting once.
let holdsFor (period: TimeSpan) (check: unit -> Task<bool>) =
    task {
        let deadline = DateTime.UtcNow + period
        let! first = check ()
        let mutable ok = first

        while ok && DateTime.UtcNow < deadline do
            do! Task.Delay 50
            let! r = check ()
            ok <- r

        return ok
    }

// ---- a webhook receiver --------------------------------------------------------------------------

type Received =
    {
        Body: string
        Signature: string
        Delivery: string
        ContentType: string
    }

/// A business system's webhook: records what arrives and answers as `Respond` says.
type WebhookListener(app: WebApplication, received: ConcurrentQueue<Received>) =
    member val Respond: Received -> int * string = (fun _ -> 200, "") with get, set
    member _.Received = received |> List.ofSeq
    member _.Url = addressOf app + "/hook"

    member this.Payloads =
        this.Received
        |> List.map (fun r -> JsonDocument.Parse(r.Body).RootElement.Clone())

    interface IAsyncDisposable with
        member _.DisposeAsync() =
            ValueTask(
                task {
                    do! app.StopAsync()
                    do! app.DisposeAsync()
                }
                :> Task
            )

let startWebhook () =
    task {
        let builder = WebApplication.CreateBuilder()
        builder.WebHost.UseUrls($"http://127.0.0.1:{Helpers.freePort ()}") |> ignore
        builder.Logging.ClearProviders() |> ignore
        let app = builder.Build()
        let received = ConcurrentQueue<Received>()
        let listener = new WebhookListener(app, received)

        app.MapPost(
            "/hook",
            Microsoft.AspNetCore.Http.RequestDelegate(fun ctx ->
                task {
                    use reader = new StreamReader(ctx.Request.Body)
                    let! body = reader.ReadToEndAsync()

                    let r =
                        {
                            Body = body
                            Signature = string ctx.Request.Headers["X-WeChatFs-Signature"]
                            Delivery = string ctx.Request.Headers["X-WeChatFs-Delivery"]
                            ContentType = string ctx.Request.ContentType
                        }

                    let status, answer = listener.Respond r

                    if status < 300 then
                        received.Enqueue r

                    ctx.Response.StatusCode <- status
                    ctx.Response.ContentType <- "application/json"
                    do! Microsoft.AspNetCore.Http.HttpResponseWritingExtensions.WriteAsync(ctx.Response, answer)
                })
        )
        |> ignore

        do! app.StartAsync()
        return listener
    }

let webhookSettings (hook: WebhookListener) =
    [
        "WeChatFs:Webhooks:Url", hook.Url
        "WeChatFs:Webhooks:Secret", "hook-secret"
        "WeChatFs:Webhooks:RetryBase", "00:00:00.100"
        "WeChatFs:Webhooks:PollInterval", "00:00:00.100"
    ]

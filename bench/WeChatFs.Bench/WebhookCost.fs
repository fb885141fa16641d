/// What one webhook delivery costs the machine, apart from the rest of a push: the gateway's own POST
/// (`Inbox.postWebhook`, its client, signed, realistic bodies) from N loops to the receiver that the
/// kit's webhook runs use (`wechatfs-demo receiver`, answering 204 at once), beside the BCL's plain
/// `HttpClient.PostAsync` of the same bodies, in alternating rounds. The receiver is a process of its
/// own, so its processor time is counted apart from the sender's: on a machine whose cores the
/// gateway, its receiver and the load share, both are part of what a push with a webhook costs.
module WeChatFs.Bench.WebhookCost

open System
open System.Diagnostics
open System.IO
open System.Net.Http
open System.Text
open System.Threading.Tasks
open WeChatFs

/// The demo's receiver, built with the solution.
let private receiverDll () =
    let dll =
        Path.Combine(BenchHttp.repositoryRoot.Value, "src", "Demo", "bin", "Release", "net10.0", "wechatfs-demo.dll")

    if not (File.Exists dll) then
        failwith $"{dll} is missing: build the solution in Release (dotnet fsi build.fsx bench does)"

    dll

/// Starts the receiver and waits until it answers.
let private startReceiver () =
    task {
        let url = $"http://127.0.0.1:{WeChatFs.Tests.PostgresCluster.freePort ()}"

        let start =
            ProcessStartInfo("dotnet", RedirectStandardOutput = true, RedirectStandardError = true)

        for a in [ receiverDll (); "receiver"; "--urls"; url ] do
            start.ArgumentList.Add a

        let receiver = Process.Start start
        receiver.OutputDataReceived.Add ignore
        receiver.ErrorDataReceived.Add ignore
        receiver.BeginOutputReadLine()
        receiver.BeginErrorReadLine()
        use probe = new HttpClient()
        let deadline = DateTime.UtcNow.AddSeconds 30.
        let mutable ready = false

        while not ready do
            if receiver.HasExited || DateTime.UtcNow > deadline then
                failwith "the webhook receiver did not start"

            try
                let! answer = probe.GetStringAsync(url + "/")
                ready <- answer = "receiver"
            with _ ->
                do! Task.Delay 100

        return receiver, Uri(url + "/wechatfs")
    }

/// Webhook bodies of realistic messages, as a first attempt writes them.
let private bodies (count: int) =
    let generator = Pushes.Generator(7, "gh_benchaccount")
    let received = DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero)

    Array.init count (fun i ->
        let plain = generator.Next()

        match Messages.parse plain with
        | Error e -> failwith $"{e}"
        | Ok m ->
            use body =
                Messages.webhookBodyOf
                    $"0193a1b2c3d47e8f9a0b1c2d{i:x8}"
                    (Messages.kind m)
                    (Domain.AuthorizerAppId "wxbenchaccount0001")
                    None
                    received
                    m
                    plain

            body.Memory.ToArray())

let run (connections: int) (warmup: TimeSpan) (duration: TimeSpan) (rounds: int) =
    task {
        let! receiver, url = startReceiver ()

        try
            let bodies = bodies 2000
            use signer = new Messages.BodySigner(Encoding.UTF8.GetBytes "bench-webhook-secret")
            use gatewayClient = Inbox.webhookClient ()

            // The receiver's processor time, in microseconds, as the load generator's counter.
            let receiverMicros () =
                receiver.Refresh()
                int64 receiver.TotalProcessorTime.TotalMicroseconds, 0L

            let gatewayPost (_: HttpClient) (i: int) =
                task {
                    let! r =
                        Inbox.postWebhook
                            gatewayClient
                            (Some signer)
                            url
                            $"{i:x32}"
                            (ReadOnlyMemory bodies[i % bodies.Length])

                    return Result.isOk r
                }

            let plainPost (client: HttpClient) (i: int) =
                task {
                    use content = new ByteArrayContent(bodies[i % bodies.Length])
                    content.Headers.ContentType <- Headers.MediaTypeHeaderValue("application/json", "utf-8")
                    use! r = client.PostAsync(url, content)
                    let! _ = r.Content.ReadAsStringAsync()
                    return r.IsSuccessStatusCode
                }

            let ways =
                [
                    "webhook POST, plain PostAsync", plainPost
                    "webhook POST, the gateway's", gatewayPost
                ]

            let lines = Collections.Generic.List<Load.Result * float>()

            for round in 1..rounds do
                for name, send in ways do
                    let! result, (received, _) =
                        Load.runCounting $"{name}, round {round}" connections warmup duration id send receiverMicros

                    lines.Add(result, float received / float (max 1 result.Requests))

            for result, receiverCpu in lines do
                Load.print result $"receiver {receiverCpu:F1} µs of processor per POST"
        finally
            receiver.Kill true
            receiver.WaitForExit()
    }

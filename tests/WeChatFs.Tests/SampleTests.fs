/// The C# sample app (samples/WeChatFs.Sample), built with the suite and run as its own process
/// against the simulator: it hosts the gateway through AddWeChatFs(options) and MapWeChatFs(), and
/// calls WeChat with tokens from IWeChatFsTokens, so a break in the C# surface fails here.
module WeChatFs.Tests.SampleTests

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Http
open System.Threading.Tasks
open Expecto
open WeChatFs.Simulator
open WeChatFs.Tests.Harness

/// The sample's build next to this test build (same configuration).
let private sampleDll () =
    let gatewayDll = FileInfo(hostDll ())
    // src/Host.CSharp/bin/<configuration>/net10.0/wechatfs.dll -> the repository root
    let root = gatewayDll.Directory.Parent.Parent.Parent.Parent.Parent
    let configuration = gatewayDll.Directory.Parent.Name

    Path.Combine(root.FullName, "samples", "WeChatFs.Sample", "bin", configuration, "net10.0", "WeChatFs.Sample.dll")

type private SampleProcess =
    {
        Process: Process
        Output: ConcurrentQueue<string>
    }

    member this.Text = String.Join("\n", this.Output)

    interface IDisposable with
        member this.Dispose() =
            try
                if not this.Process.HasExited then
                    this.Process.Kill true
                    this.Process.WaitForExit 5000 |> ignore
            with _ ->
                ()

            this.Process.Dispose()

let private startSample (url: string) (settings: (string * string) list) =
    let psi = ProcessStartInfo("dotnet", [ sampleDll (); "--urls"; url ])
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    psi.UseShellExecute <- false

    for k, v in settings do
        psi.Environment[k.Replace(":", "__")] <- v

    let p = Process.Start psi
    let output = ConcurrentQueue<string>()

    p.OutputDataReceived.Add(fun e ->
        if not (isNull e.Data) then
            output.Enqueue e.Data)

    p.ErrorDataReceived.Add(fun e ->
        if not (isNull e.Data) then
            output.Enqueue e.Data)

    p.BeginOutputReadLine()
    p.BeginErrorReadLine()
    { Process = p; Output = output }

let tests =
    testSequencedGroup "Sample"
    <| testList
        "Sample"
        [
            testCaseTask "the C# sample hosts the gateway with options and gets tokens through IWeChatFsTokens"
            <| fun () ->
                task {
                    Expect.isTrue (File.Exists(sampleDll ())) $"the sample is built ({sampleDll ()})"
                    let! sim = SimulatorHost.start (simulatorOptions ()) "http://127.0.0.1:0"

                    use _ =
                        { new IDisposable with
                            member _.Dispose() =
                                (sim :> IAsyncDisposable).DisposeAsync().AsTask().Wait()
                        }

                    let url = $"http://127.0.0.1:{Helpers.freePort ()}"
                    let data = newDataFolder ()

                    use sample =
                        startSample
                            url
                            [
                                "Sample:ComponentAppId", componentAppId
                                "Sample:ComponentAppSecret", appSecret
                                "Sample:Token", token
                                "Sample:EncodingAesKey", encodingAesKey
                                "Sample:WeChatBaseUrl", sim.BaseUrl.TrimEnd '/'
                                "Sample:PublicBaseUrl", url
                                "Sample:DataFolder", data
                                "Sample:AdminApiKey", adminKey
                            ]

                    use http = new HttpClient(BaseAddress = Uri url)

                    let! up =
                        eventually (TimeSpan.FromSeconds 30.) (fun () ->
                            task {
                                try
                                    let! r = http.GetAsync "/healthz"
                                    return r.IsSuccessStatusCode
                                with _ ->
                                    return sample.Process.HasExited
                            })

                    Expect.isTrue (up && not sample.Process.HasExited) $"the sample started: {sample.Text}"

                    // The gateway's endpoints carry the convention the sample attached to the group.
                    let! alive = http.GetAsync "/healthz"
                    let! aliveText = alive.Content.ReadAsStringAsync()
                    Expect.equal aliveText "ok" "/healthz answers as before"
                    Expect.isTrue (alive.Headers.Contains "X-Sample-Group") "the group's convention applies"

                    // No ticket yet: the token service says so, with the documented failure.
                    let! early = http.GetAsync "/sample/authorizers/wxunknown0000000/token"
                    Expect.equal early.StatusCode HttpStatusCode.NotFound "unknown authorizer"
                    let! earlyBody = json early
                    Expect.equal (str earlyBody "failure") "UnknownAuthorizer" "failure kind"

                    sim.SetEventUrl(Some(url + "/wechat/component/events"))
                    let! pushed = http.PostAsync(sim.BaseUrl.TrimEnd('/') + "/sim/push-ticket", null)
                    pushed.EnsureSuccessStatusCode() |> ignore

                    let! tokenReady =
                        eventually (TimeSpan.FromSeconds 15.) (fun () ->
                            task {
                                let! r = http.GetAsync "/sample/component-token"
                                return r.IsSuccessStatusCode
                            })

                    Expect.isTrue tokenReady $"the component token through IWeChatFsTokens: {sample.Text}"
                    let! tokenResponse = http.GetAsync "/sample/component-token"
                    let! tokenBody = json tokenResponse

                    Expect.isGreaterThan
                        (tokenBody.GetProperty("expires_at").GetDateTimeOffset())
                        DateTimeOffset.UtcNow
                        "expires in the future"

                    // The same token the gateway's own API serves: one store, one refresh.
                    use admin = new HttpClient(BaseAddress = Uri url)
                    admin.DefaultRequestHeaders.Authorization <- Headers.AuthenticationHeaderValue("Bearer", adminKey)
                    let! apiToken = admin.GetAsync "/api/component/access-token"
                    let! apiBody = json apiToken

                    Expect.equal
                        (apiBody.GetProperty("expires_at").GetDateTimeOffset())
                        (tokenBody.GetProperty("expires_at").GetDateTimeOffset())
                        "the same token"

                    let! count = http.GetAsync "/sample/authorizer-count"
                    let! countBody = json count
                    Expect.equal count.StatusCode HttpStatusCode.OK $"WeChat called with the token: {countBody}"
                    Expect.equal (countBody.GetProperty("total_count").GetInt32()) 0 "no account authorized yet"

                    try
                        Directory.Delete(data, true)
                    with _ ->
                        ()
                }

            testCaseTask "the C# sample stops at start with check-config's message when the options are wrong"
            <| fun () ->
                task {
                    let url = $"http://127.0.0.1:{Helpers.freePort ()}"

                    use sample =
                        startSample url [ "Sample:ComponentAppSecret", appSecret; "Sample:EncodingAesKey", "short" ]

                    let exited = sample.Process.WaitForExit 60000
                    Expect.isTrue exited "the sample stops"
                    sample.Process.WaitForExit()
                    Expect.equal sample.Process.ExitCode 3 $"exit code: {sample.Text}"
                    Expect.stringContains sample.Text "WeChatFs:Component:AppId: is not set" "names the key"
                    Expect.stringContains sample.Text "WeChatFs:Component:EncodingAesKey" "every problem at once"
                }
        ]

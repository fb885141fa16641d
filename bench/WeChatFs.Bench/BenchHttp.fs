/// What every benchmark shares: JSON answers, JSON posts, a simulator that pushes tickets only when
/// told (a benchmark controls when the gateway gets its token), and the realistic pushes as a
/// request builder and a sender that checks WeChat's `success`.
module WeChatFs.Bench.BenchHttp

open System
open System.IO
open System.Net.Http
open System.Text
open System.Text.Json
open System.Threading.Tasks
open WeChatFs
open WeChatFs.Simulator
open WeChatFs.Simulator.SimState

/// The repository's root: the benchmark runs from its build output, and starts programs built
/// beside it.
let repositoryRoot =
    lazy
        (let rec up (dir: DirectoryInfo) =
            if isNull dir then
                failwith "WeChatFs.sln not found above the benchmark"
            elif File.Exists(Path.Combine(dir.FullName, "WeChatFs.sln")) then
                dir.FullName
            else
                up dir.Parent

         up (DirectoryInfo AppContext.BaseDirectory))

let json (r: HttpResponseMessage) =
    task {
        let! text = r.Content.ReadAsStringAsync()
        return JsonDocument.Parse(text).RootElement.Clone()
    }

let post (client: HttpClient) (path: string) (body: obj) =
    client.PostAsync(path, new StringContent(JsonSerializer.Serialize body, Encoding.UTF8, "application/json"))

let startSimulator () =
    SimulatorHost.start
        { SimulatorOptions.defaults with
            TicketInterval = TimeSpan.FromHours 1.
            AutoPushTickets = false
        }
        "http://127.0.0.1:0"

/// The account the benchmarks' pushes go to, as WeChat names it in ToUserName.
let originalId = "gh_5a1c0ffee0001"

/// Builds distinct realistic pushes for the simulator's component (seeded), encrypted and signed.
let pushesFor (o: SimulatorOptions) (seed: int) =
    let key =
        match Crypto.AesKey.create o.EncodingAesKey with
        | Ok k -> k
        | Error e -> failwith $"{e}"

    let pushes = Pushes.Generator(seed, originalId)
    fun (_: int) -> Pushes.encrypt o.Token key o.ComponentAppId originalId (pushes.Next())

/// Posts one push to `target`; true when WeChat would have heard `success`.
let sendPush (target: string) (client: HttpClient) (query: string, body: string) =
    task {
        use content = new StringContent(body, Encoding.UTF8, "text/xml")
        use! r = client.PostAsync(target + query, content)
        let! answer = r.Content.ReadAsStringAsync()
        return r.IsSuccessStatusCode && answer = "success"
    }

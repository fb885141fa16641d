/// What the deployment tests share: mini programs and a template prepared on the simulator, the
/// gateway's deployment calls, polling a deployment, and the check that each WeChat call happened once.
module WeChatFs.Tests.DeploymentsFixture

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness

let fast =
    [
        "WeChatFs:MiniProgram:WorkerInterval", "00:00:00.050"
        "WeChatFs:MiniProgram:RetryDelay", "00:00:00.050"
        "WeChatFs:MiniProgram:QuotaCheckInterval", "00:00:00.200"
        "WeChatFs:MiniProgram:QuotaRetryDelay", "00:00:00.300"
    ]

let storeSettings (provider: string) =
    if provider = "postgres" then
        [
            "WeChatFs:Storage:Provider", "postgres"
            "WeChatFs:Storage:ConnectionString", postgres.Force().NewDatabase()
        ]
    else
        []

let simPost (pair: Pair) (path: string) (body: obj) =
    task {
        let! r = postJson pair.Http (pair.SimUrl path) body
        r.EnsureSuccessStatusCode() |> ignore
        return! json r
    }

/// `count` new mini programs on the simulator, known to the gateway with their profiles, and a
/// template made from draft 1 through the gateway's template library.
let prepare (pair: Pair) (count: int) =
    task {
        let! added = simPost pair "/sim/miniprograms" {| count = count |}

        let appids =
            [ for a in added.GetProperty("appids").EnumerateArray() -> a.GetString() ]

        let! _ = pushTicket pair

        let! ready =
            eventually (TimeSpan.FromSeconds 10.) (fun () ->
                task {
                    let! status, _ = componentToken pair
                    return status = HttpStatusCode.OK
                })

        Expect.isTrue ready "ready"
        let! synced = pair.Gateway.Api.PostAsync("/api/authorizers/sync", null)
        Expect.isTrue synced.IsSuccessStatusCode "synced.IsSuccessStatusCode"

        // The profiles (kind, permission sets) come with the import; "all" needs them.
        let! profiled =
            eventually (TimeSpan.FromSeconds 20.) (fun () ->
                task {
                    let! r = pair.Gateway.Api.GetAsync "/api/authorizers?limit=500"
                    let! root = json r

                    let minis =
                        root.GetProperty("items").EnumerateArray()
                        |> Seq.filter (fun a -> str a "kind" = "mini_program")
                        |> Seq.length

                    return minis >= count
                })

        Expect.isTrue profiled "profiled"

        let! addedTemplate =
            postJson pair.Gateway.Api "/api/miniprogram/templates" {| draft_id = 1 |}

        Expect.equal addedTemplate.StatusCode HttpStatusCode.OK "addedTemplate.StatusCode"
        let! list = pair.Gateway.Api.GetAsync "/api/miniprogram/templates"
        let! templates = json list
        let template = templates.GetProperty("template_list").EnumerateArray() |> Seq.last
        return appids, template.GetProperty("template_id").GetInt64()
    }

let audit =
    {|
        item_list =
            [|
                {|
                    address = "pages/index/index"
                    tag = "shop"
                    first_class = "工具"
                    second_class = "效率"
                    first_id = 287
                    second_id = 612
                    title = "Home"
                |}
            |]
    |}

let deploy (pair: Pair) (body: obj) =
    task {
        let! r = postJson pair.Gateway.Api "/api/miniprogram/deployments" body
        let! root = json r
        let id = str root "id"
        Expect.equal r.StatusCode HttpStatusCode.Accepted "r.StatusCode"
        Expect.equal (string r.Headers.Location) ($"/api/miniprogram/deployments/{id}") "string r.Headers.Location"
        return id
    }

let getDeployment (api: HttpClient) (id: string) =
    task {
        let! r = api.GetAsync $"/api/miniprogram/deployments/{id}"
        return! json r
    }

let count (d: JsonElement) (state: string) =
    d.GetProperty("counts").GetProperty(state).GetInt32()

/// Polls the deployment until `check` holds.
let until (api: HttpClient) (id: string) (seconds: float) (check: JsonElement -> bool) =
    eventually (TimeSpan.FromSeconds seconds) (fun () ->
        task {
            let! d = getDeployment api id
            return check d
        })

let simPrograms (pair: Pair) =
    task {
        let! r = pair.Http.GetAsync(pair.SimUrl "/sim/miniprograms")
        let! root = json r
        return [ for p in root.EnumerateArray() -> str p "appid", p ] |> Map.ofList
    }

let callsOf (p: JsonElement) (api: string) =
    match p.GetProperty("calls").TryGetProperty api with
    | true, v -> v.GetInt32()
    | _ -> 0

/// Every target's WeChat calls happened once each: no commit, submission or release repeated.
let assertEachOnce (pair: Pair) (appids: string list) =
    task {
        let! programs = simPrograms pair

        for a in appids do
            for api in [ "commit"; "submit_audit"; "release" ] do
                Expect.isTrue (callsOf programs[a] api = 1) ($"{a}: {callsOf programs[a] api} calls of {api}")
    }

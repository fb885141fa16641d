/// The mini-program API over HTTP: the template library's answers and problems, the per-account
/// code-management routes, the event stream, and targets that cannot be deployed to.
module WeChatFs.Tests.MiniProgramApiTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Xunit
open WeChatFs.Tests.Harness
open WeChatFs.Tests.DeploymentsTests

let private fast =
    [
        "WeChatFs:MiniProgram:WorkerInterval", "00:00:00.050"
        "WeChatFs:MiniProgram:RetryDelay", "00:00:00.050"
    ]

[<Fact>]
let ``the template library answers in our JSON and explains WeChat's errcodes`` () =
    task {
        let! pair = startPairWith (simulatorOptions ()) fast
        use _ = pair
        let! _, templateId = prepare pair 1
        let! drafts = pair.Gateway.Api.GetAsync "/api/miniprogram/drafts"
        let! d = json drafts
        Assert.Equal(HttpStatusCode.OK, drafts.StatusCode)
        Assert.Equal(3, d.GetProperty("draft_list").GetArrayLength())
        let mutable errcode = Unchecked.defaultof<JsonElement>
        Assert.False(d.TryGetProperty("errcode", &errcode))

        let! missing =
            postJson pair.Gateway.Api "/api/miniprogram/templates" {| draft_id = 999 |}

        let! problem = json missing
        Assert.Equal(HttpStatusCode.BadGateway, missing.StatusCode)
        Assert.Equal(85064, problem.GetProperty("errcode").GetInt32())
        Assert.Contains("not found", str problem "meaning")

        let! deleted =
            pair.Gateway.Api.DeleteAsync $"/api/miniprogram/templates/{templateId}"

        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode)
        let! list = pair.Gateway.Api.GetAsync "/api/miniprogram/templates"
        let! l = json list
        Assert.Equal(0, l.GetProperty("template_list").GetArrayLength())
        use anonymous = new HttpClient(BaseAddress = Uri pair.Gateway.BaseUrl)
        let! refused = anonymous.GetAsync "/api/miniprogram/templates"
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode)
    }

[<Fact>]
let ``one account's code is committed, audited, released and listed through its own routes`` () =
    task {
        let! pair = startPairWith (simulatorOptions ()) fast
        use _ = pair
        let! appids, templateId = prepare pair 1
        let appid = appids.Head

        let route (path: string) =
            $"/api/authorizers/{appid}/miniprogram/{path}"

        let! commit =
            postJson
                pair.Gateway.Api
                (route "commit")
                {|
                    template_id = templateId
                    ext_json = {| extAppid = "{{appid}}" |}
                    user_version = "1.0.0"
                    user_desc = "by hand"
                |}

        Assert.Equal(HttpStatusCode.OK, commit.StatusCode)
        let! programs = simPrograms pair
        Assert.Contains(appid, str programs[appid] "ext_json")
        let! submitted = postJson pair.Gateway.Api (route "submit-audit") audit
        let! s = json submitted
        Assert.Equal(HttpStatusCode.OK, submitted.StatusCode)
        let auditId = s.GetProperty("auditid").GetInt64()

        let! approved =
            eventually (TimeSpan.FromSeconds 10.) (fun () ->
                task {
                    let! r = pair.Gateway.Api.GetAsync(route $"audit-status?auditid={auditId}")
                    let! a = json r
                    return a.GetProperty("status").GetInt32() = 0
                })

        Assert.True approved
        let! latest = pair.Gateway.Api.GetAsync(route "audit-status")
        let! l = json latest
        Assert.Equal(auditId, l.GetProperty("auditid").GetInt64())
        let! released = postJson pair.Gateway.Api (route "release") {| |}
        Assert.Equal(HttpStatusCode.OK, released.StatusCode)
        let! versions = pair.Gateway.Api.GetAsync(route "versions")
        let! v = json versions
        Assert.Equal(1, v.GetProperty("version_list").GetArrayLength())
        // One release only: nothing to roll back to (87012), as a problem with its explanation.
        let! revert = postJson pair.Gateway.Api (route "revert") {| |}
        let! p = json revert
        Assert.Equal(HttpStatusCode.BadGateway, revert.StatusCode)
        Assert.Equal(87012, p.GetProperty("errcode").GetInt32())

        let! domains =
            postJson
                pair.Gateway.Api
                (route "domains")
                {|
                    action = "add"
                    requestdomain = [| "https://api.example.com" |]
                |}

        let! dm = json domains
        Assert.Equal("https://api.example.com", (dm.GetProperty("requestdomain")[0]).GetString())
        // A non-string ext_json reaches the simulator only through the proxy; it answers 85048.
        let! raw =
            postJson
                pair.Gateway.Api
                $"/api/authorizers/{appid}/wechat/wxa/commit"
                {|
                    template_id = templateId
                    ext_json = {| a = 1 |}
                |}

        let! rawBody = json raw
        Assert.Equal(85048, rawBody.GetProperty("errcode").GetInt32())
    }

[<Fact>]
let ``the event stream reports progress and ends, and unknown or revoked accounts are skipped`` () =
    task {
        let! pair = startPairWith (simulatorOptions ()) fast
        use _ = pair
        let! appids, templateId = prepare pair 3
        let revoked = appids.Head
        let! r = pair.Http.PostAsync(pair.SimUrl $"/sim/authorizers/{revoked}/revoke", null)
        r.EnsureSuccessStatusCode() |> ignore

        let! gone =
            eventually (TimeSpan.FromSeconds 10.) (fun () ->
                task {
                    let! a = pair.Gateway.Api.GetAsync $"/api/authorizers/{revoked}"
                    let! root = json a
                    return str root "status" = "revoked"
                })

        Assert.True gone

        let! id =
            deploy
                pair
                {|
                    template_id = templateId
                    user_version = "1.0.0"
                    user_desc = "stream"
                    targets = appids @ [ "wxunknown000000001" ]
                    audit = audit
                    release = "auto"
                |}

        use request =
            new HttpRequestMessage(HttpMethod.Get, $"/api/miniprogram/deployments/{id}/events")

        let! response =
            pair.Gateway.Api.SendAsync(request, HttpCompletionOption.ResponseHeadersRead)

        Assert.Equal("text/event-stream", string response.Content.Headers.ContentType)
        use! stream = response.Content.ReadAsStreamAsync()
        use reader = new StreamReader(stream)
        let lines = Collections.Generic.List<string>()
        let deadline = DateTime.UtcNow.AddSeconds 30.
        let mutable ended = false

        while not ended && DateTime.UtcNow < deadline do
            let! line = reader.ReadLineAsync()

            match line with
            | null -> ended <- true
            | l ->
                lines.Add l

                if l = "event: end" then
                    ended <- true

        Assert.True(ended, String.Join("\n", lines))
        Assert.Contains("event: progress", lines)
        Assert.Contains("event: target", lines)
        let! d = getDeployment pair.Gateway.Api id
        Assert.Equal(2, count d "released")
        Assert.Equal(2, count d "skipped")

        let skipped =
            d.GetProperty("target_list").EnumerateArray()
            |> Seq.filter (fun t -> str t "state" = "skipped")
            |> Seq.map (fun t -> str t "reason")
            |> List.ofSeq

        Assert.Equal<string list>([ "unauthorized"; "unauthorized" ], skipped)

        let! bad =
            postJson
                pair.Gateway.Api
                "/api/miniprogram/deployments"
                {|
                    template_id = templateId
                    targets = 5
                |}

        let! problem = json bad
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode)
        Assert.Contains("user_version", str problem "detail")
    }

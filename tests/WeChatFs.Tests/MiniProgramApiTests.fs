/// The mini-program API over HTTP: the template library's answers and problems, the per-account
/// code-management routes, the event stream, and targets that cannot be deployed to.
module WeChatFs.Tests.MiniProgramApiTests

open System
open System.IO
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness
open WeChatFs.Tests.DeploymentsFixture

let private fast =
    [
        "WeChatFs:MiniProgram:WorkerInterval", "00:00:00.050"
        "WeChatFs:MiniProgram:RetryDelay", "00:00:00.050"
    ]


let tests =
    testSequencedGroup "MiniProgramApi"
    <| testList
        "MiniProgramApi"
        [
            testCaseTask "the template library answers in our JSON and explains WeChat's errcodes"
            <| fun () ->
                task {
                    let! pair = startPairWith (simulatorOptions ()) fast
                    use _ = pair
                    let! _, templateId = prepare pair 1
                    let! drafts = pair.Gateway.Api.GetAsync "/api/miniprogram/drafts"
                    let! d = json drafts
                    Expect.equal drafts.StatusCode HttpStatusCode.OK "drafts.StatusCode"

                    Expect.equal
                        (d.GetProperty("draft_list").GetArrayLength())
                        3
                        "d.GetProperty('draft_list').GetArrayLength()"

                    let mutable errcode = Unchecked.defaultof<JsonElement>
                    Expect.isFalse (d.TryGetProperty("errcode", &errcode)) "d.TryGetProperty('errcode', &errcode)"

                    let! missing =
                        postJson pair.Gateway.Api "/api/miniprogram/templates" {| draft_id = 999 |}

                    let! problem = json missing
                    Expect.equal missing.StatusCode HttpStatusCode.BadGateway "missing.StatusCode"

                    Expect.equal
                        (problem.GetProperty("errcode").GetInt32())
                        85064
                        "problem.GetProperty('errcode').GetInt32()"

                    Expect.stringContains (str problem "meaning") "not found" "str problem 'meaning'"

                    let! deleted =
                        pair.Gateway.Api.DeleteAsync $"/api/miniprogram/templates/{templateId}"

                    Expect.equal deleted.StatusCode HttpStatusCode.OK "deleted.StatusCode"
                    let! list = pair.Gateway.Api.GetAsync "/api/miniprogram/templates"
                    let! l = json list

                    Expect.equal
                        (l.GetProperty("template_list").GetArrayLength())
                        0
                        "l.GetProperty('template_list').GetArrayLength()"

                    use anonymous = new HttpClient(BaseAddress = Uri pair.Gateway.BaseUrl)
                    let! refused = anonymous.GetAsync "/api/miniprogram/templates"
                    Expect.equal refused.StatusCode HttpStatusCode.Unauthorized "refused.StatusCode"
                }

            testCaseTask "one account's code is committed, audited, released and listed through its own routes"
            <| fun () ->
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

                    Expect.equal commit.StatusCode HttpStatusCode.OK "commit.StatusCode"
                    let! programs = simPrograms pair
                    Expect.stringContains (str programs[appid] "ext_json") appid "the ext_json sent carries the appid"
                    let! submitted = postJson pair.Gateway.Api (route "submit-audit") audit
                    let! s = json submitted
                    Expect.equal submitted.StatusCode HttpStatusCode.OK "submitted.StatusCode"
                    let auditId = s.GetProperty("auditid").GetInt64()

                    let! approved =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync(route $"audit-status?auditid={auditId}")
                                let! a = json r
                                return a.GetProperty("status").GetInt32() = 0
                            })

                    Expect.isTrue approved "approved"
                    let! latest = pair.Gateway.Api.GetAsync(route "audit-status")
                    let! l = json latest
                    Expect.equal (l.GetProperty("auditid").GetInt64()) auditId "l.GetProperty('auditid').GetInt64()"
                    let! released = postJson pair.Gateway.Api (route "release") {| |}
                    Expect.equal released.StatusCode HttpStatusCode.OK "released.StatusCode"
                    let! versions = pair.Gateway.Api.GetAsync(route "versions")
                    let! v = json versions

                    Expect.equal
                        (v.GetProperty("version_list").GetArrayLength())
                        1
                        "v.GetProperty('version_list').GetArrayLength()"
                    // One release only: nothing to roll back to (87012), as a problem with its explanation.
                    let! revert = postJson pair.Gateway.Api (route "revert") {| |}
                    let! p = json revert
                    Expect.equal revert.StatusCode HttpStatusCode.BadGateway "revert.StatusCode"
                    Expect.equal (p.GetProperty("errcode").GetInt32()) 87012 "p.GetProperty('errcode').GetInt32()"

                    let! domains =
                        postJson
                            pair.Gateway.Api
                            (route "domains")
                            {|
                                action = "add"
                                requestdomain = [| "https://api.example.com" |]
                            |}

                    let! dm = json domains

                    Expect.equal
                        ((dm.GetProperty("requestdomain")[0]).GetString())
                        "https://api.example.com"
                        "(dm.GetProperty('requestdomain')[0]).GetString()"
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

                    Expect.equal
                        (rawBody.GetProperty("errcode").GetInt32())
                        85048
                        "rawBody.GetProperty('errcode').GetInt32()"
                }

            testCaseTask "the event stream reports progress and ends, and unknown or revoked accounts are skipped"
            <| fun () ->
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

                    Expect.isTrue gone "gone"

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

                    Expect.equal
                        (string response.Content.Headers.ContentType)
                        "text/event-stream"
                        "string response.Content.Headers.ContentType"

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

                    Expect.isTrue ended (String.Join("\n", lines))
                    Expect.contains lines "event: progress" "a progress event"
                    Expect.contains lines "event: target" "a target event"
                    let! d = getDeployment pair.Gateway.Api id
                    Expect.equal (count d "released") 2 "count d 'released'"
                    Expect.equal (count d "skipped") 2 "count d 'skipped'"

                    let skipped =
                        d.GetProperty("target_list").EnumerateArray()
                        |> Seq.filter (fun t -> str t "state" = "skipped")
                        |> Seq.map (fun t -> str t "reason")
                        |> List.ofSeq

                    Expect.equal skipped ([ "unauthorized"; "unauthorized" ]) "skipped"

                    let! bad =
                        postJson
                            pair.Gateway.Api
                            "/api/miniprogram/deployments"
                            {|
                                template_id = templateId
                                targets = 5
                            |}

                    let! problem = json bad
                    Expect.equal bad.StatusCode HttpStatusCode.BadRequest "bad.StatusCode"
                    Expect.stringContains (str problem "detail") "user_version" "str problem 'detail'"
                }

        ]

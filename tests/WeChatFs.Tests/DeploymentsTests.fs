/// Deployments end to end: a gateway and the simulator over HTTP, the template library, a
/// deployment to many mini programs through audit (events and polling) to release, the controls,
/// the submit quota, restarts and two instances on one PostgreSQL database.
module WeChatFs.Tests.DeploymentsTests

open System
open System.Net
open System.Net.Http
open System.Text.Json
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness
open WeChatFs.Tests.DeploymentsFixture

let tests =
    testSequencedGroup "Deployments"
    <| testList
        "Deployments"
        [
            testTheoryTask "a deployment to 30 mini programs ends with each one's verdict" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! pair = startPairWith (simulatorOptions ()) (fast @ storeSettings provider)
                    use _ = pair
                    let! appids, templateId = prepare pair 30
                    let rejected = appids |> List.take 5
                    let delayed = appids |> List.skip 5 |> List.take 5

                    for a in rejected do
                        let! _ =
                            simPost
                                pair
                                "/sim/miniprograms/verdict"
                                {|
                                    appid = a
                                    verdict = "reject"
                                    reason = "missing privacy policy"
                                |}

                        ()

                    for a in delayed do
                        let! _ =
                            simPost
                                pair
                                "/sim/miniprograms/verdict"
                                {|
                                    appid = a
                                    verdict = "delay_then_approve"
                                    reason = "more review needed"
                                |}

                        ()

                    let! id =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "1.0.0"
                                user_desc = "first release"
                                ext_json =
                                    {|
                                        extAppid = "{{appid}}"
                                        ext = {| shop = "{{appid}}" |}
                                    |}
                                targets = "all"
                                audit = audit
                                release = "auto"
                            |}

                    let! settled = until pair.Gateway.Api id 60. (fun d -> str d "status" = "completed")

                    let! d = getDeployment pair.Gateway.Api id
                    Expect.isTrue settled (d.GetRawText())
                    Expect.equal (count d "released") 25 "count d 'released'"
                    Expect.equal (count d "audit_rejected") 5 "count d 'audit_rejected'"
                    Expect.equal (d.GetProperty("total").GetInt32()) 30 "d.GetProperty('total').GetInt32()"

                    let targets =
                        [ for t in d.GetProperty("target_list").EnumerateArray() -> str t "appid", t ]
                        |> Map.ofList

                    for a in rejected do
                        Expect.equal (str targets[a] "state") "audit_rejected" "str targets[a] 'state'"
                        Expect.equal (str targets[a] "reason") "missing privacy policy" "str targets[a] 'reason'"

                        Expect.equal
                            (str targets[a] "screenshots")
                            "sim_media_1|sim_media_2"
                            "str targets[a] 'screenshots'"

                    for a in delayed do
                        Expect.equal (str targets[a] "state") "released" "str targets[a] 'state'"

                    // ext_json reached WeChat as a JSON-encoded string, placeholders replaced per account.
                    let! programs = simPrograms pair

                    for a in appids do
                        let ext = JsonDocument.Parse(str programs[a] "ext_json").RootElement
                        Expect.equal (str ext "extAppid") a "str ext 'extAppid'"

                        Expect.equal
                            (ext.GetProperty("ext").GetProperty("shop").GetString())
                            a
                            "ext.GetProperty('ext').GetProperty('shop').GetString()"

                        Expect.equal (callsOf programs[a] "commit") 1 "callsOf programs[a] 'commit'"
                        Expect.equal (callsOf programs[a] "submit_audit") 1 "callsOf programs[a] 'submit_audit'"

                        Expect.equal
                            (callsOf programs[a] "release")
                            ((if List.contains a rejected then 0 else 1))
                            "callsOf programs[a] 'release'"
                }

            testCaseTask "an audit with no event is settled by polling get_auditstatus"
            <| fun () ->
                task {
                    let! pair =
                        startPairWith
                            (simulatorOptions ())
                            (fast @ [ "WeChatFs:MiniProgram:AuditPollInterval", "00:00:01" ])

                    use _ = pair
                    let! appids, templateId = prepare pair 2

                    let! _ =
                        simPost pair "/sim/miniprograms/verdict" {| verdict = "approve"; push = false |}

                    let! id =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "1.0.1"
                                user_desc = "polled"
                                targets = appids
                                audit = audit
                                release = "auto"
                            |}

                    let! released = until pair.Gateway.Api id 30. (fun d -> count d "released" = 2)
                    Expect.isTrue released "released"
                    let! programs = simPrograms pair

                    for a in appids do
                        Expect.isTrue
                            (callsOf programs[a] "get_auditstatus" >= 1)
                            "callsOf programs[a] 'get_auditstatus' >= 1"
                }

            testCaseTask "manual release waits for the release call, audit null stops after commit"
            <| fun () ->
                task {
                    let! pair = startPairWith (simulatorOptions ()) fast
                    use _ = pair
                    let! appids, templateId = prepare pair 3

                    let! manual =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "1.1.0"
                                user_desc = "manual"
                                targets = appids
                                audit = audit
                                release = "manual"
                            |}

                    let! passed = until pair.Gateway.Api manual 30. (fun d -> count d "audit_passed" = 3)
                    Expect.isTrue passed "passed"
                    do! Task.Delay 300
                    let! still = getDeployment pair.Gateway.Api manual
                    Expect.equal (count still "released") 0 "count still 'released'"

                    let! r =
                        pair.Gateway.Api.PostAsync($"/api/miniprogram/deployments/{manual}/release", null)

                    Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"

                    let! released =
                        until pair.Gateway.Api manual 30. (fun d -> str d "status" = "completed")

                    Expect.isTrue released "released"
                    let! d = getDeployment pair.Gateway.Api manual
                    Expect.equal (count d "released") 3 "count d 'released'"

                    let! commitOnly =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "1.2.0"
                                user_desc = "commit only"
                                targets = appids
                                audit = null
                            |}

                    let! done' =
                        until pair.Gateway.Api commitOnly 30. (fun d -> str d "status" = "completed")

                    Expect.isTrue done' "done'"
                    let! c = getDeployment pair.Gateway.Api commitOnly
                    Expect.equal (count c "committed") 3 "count c 'committed'"
                }

            testCaseTask "pause stops new calls, resume finishes, cancel ends what is left"
            <| fun () ->
                task {
                    let! pair = startPairWith (simulatorOptions ()) fast
                    use _ = pair
                    let! appids, templateId = prepare pair 12
                    // Slow commits, so the deployment is caught half way.
                    do!
                        inject
                            pair
                            {|
                                api = "commit"
                                latency_ms = 150
                                times = 100
                            |}

                    let body =
                        {|
                            template_id = templateId
                            user_version = "2.0.0"
                            user_desc = "paused"
                            targets = appids
                            audit = audit
                            release = "auto"
                            max_concurrency = 2
                        |}

                    let! id = deploy pair body
                    let! started = until pair.Gateway.Api id 10. (fun d -> count d "pending" < 12)
                    Expect.isTrue started "started"
                    let! r = pair.Gateway.Api.PostAsync($"/api/miniprogram/deployments/{id}/pause", null)
                    let! paused = json r
                    Expect.equal (str paused "status") "paused" "str paused 'status'"
                    do! Task.Delay 600
                    let! c1 = calls pair "commit"
                    do! Task.Delay 600
                    let! c2 = calls pair "commit"
                    Expect.equal c2 c1 "c2"
                    Expect.isTrue (c1 < 12) ($"{c1} commits before the pause took effect")

                    let! _ =
                        pair.Gateway.Api.PostAsync($"/api/miniprogram/deployments/{id}/resume", null)

                    let! finished = until pair.Gateway.Api id 60. (fun d -> str d "status" = "completed")
                    Expect.isTrue finished "finished"
                    let! d = getDeployment pair.Gateway.Api id
                    Expect.equal (count d "released") 12 "count d 'released'"

                    let! second = deploy pair {| body with user_version = "2.0.1" |}
                    let! _ = until pair.Gateway.Api second 10. (fun d -> count d "pending" < 12)

                    let! r =
                        pair.Gateway.Api.PostAsync($"/api/miniprogram/deployments/{second}/cancel", null)

                    let! cancelled = json r
                    Expect.equal (str cancelled "status") "cancelled" "str cancelled 'status'"
                    let! c3 = calls pair "commit"
                    do! Task.Delay 800
                    let! c4 = calls pair "commit"
                    Expect.isTrue (c4 - c3 <= 2) "at most the calls in flight finish after cancel"
                    let! after = getDeployment pair.Gateway.Api second
                    Expect.isTrue (count after "cancelled" > 0) "count after 'cancelled' > 0"
                    Expect.equal (count after "pending") 0 "count after 'pending'"
                }
        ]

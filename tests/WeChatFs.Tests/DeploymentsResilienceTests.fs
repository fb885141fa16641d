/// Deployments end to end, continued: an exhausted submit quota, transient and permanent errors,
/// a restart mid-deployment, and two instances sharing one deployment.
module WeChatFs.Tests.DeploymentsResilienceTests

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
        "DeploymentsResilience"
        [
            testCaseTask "an exhausted submit quota stops submitting and says so"
            <| fun () ->
                task {
                    let! pair = startPairWith (simulatorOptions ()) fast
                    use _ = pair
                    let! appids, templateId = prepare pair 5
                    let! _ = simPost pair "/sim/miniprograms/quota" {| rest = 2; limit = 20 |}

                    let! id =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "3.0.0"
                                user_desc = "quota"
                                targets = appids
                                audit = audit
                                release = "auto"
                            |}

                    let! stuck =
                        until pair.Gateway.Api id 30. (fun d -> count d "released" = 2 && count d "committed" = 3)

                    let! d = getDeployment pair.Gateway.Api id
                    Expect.isTrue stuck (d.GetRawText())
                    Expect.stringContains (str d "note") "quota" "str d 'note'"
                    // No third submission while the quota is used up.
                    let! twoOnly =
                        holdsFor (TimeSpan.FromMilliseconds 800.) (fun () ->
                            task {
                                let! submits = calls pair "submit_audit"
                                return submits = 2
                            })

                    Expect.isTrue twoOnly "two submissions, as many as the quota"
                    // More quota: submitting resumes by itself.
                    let! _ = simPost pair "/sim/miniprograms/quota" {| rest = 10; limit = 20 |}
                    let! all = until pair.Gateway.Api id 30. (fun d -> count d "released" = 5)
                    Expect.isTrue all "all"
                }

            testCaseTask "transient errors are retried, permanent ones fail and retry-failed runs them again"
            <| fun () ->
                task {
                    let! pair = startPairWith (simulatorOptions ()) fast
                    use _ = pair
                    let! appids, templateId = prepare pair 3

                    do!
                        inject
                            pair
                            {|
                                api = "commit"
                                errcode = -1
                                times = 2
                            |}

                    do!
                        inject
                            pair
                            {|
                                api = "submit_audit"
                                errcode = 86002
                                times = 1
                            |}

                    let! id =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "4.0.0"
                                user_desc = "errors"
                                targets = appids
                                audit = audit
                                release = "auto"
                            |}

                    let! settled = until pair.Gateway.Api id 30. (fun d -> str d "status" = "completed")
                    Expect.isTrue settled "settled"
                    let! d = getDeployment pair.Gateway.Api id
                    Expect.equal (count d "released") 2 "count d 'released'"
                    Expect.equal (count d "failed") 1 "count d 'failed'"

                    let failed =
                        d.GetProperty("target_list").EnumerateArray()
                        |> Seq.find (fun t -> str t "state" = "failed")

                    Expect.equal (str failed "step") "submit_audit" "str failed 'step'"

                    Expect.equal
                        (failed.GetProperty("last_errcode").GetInt32())
                        86002
                        "failed.GetProperty('last_errcode').GetInt32()"

                    Expect.stringContains (str failed "last_error") "profile" "str failed 'last_error'"

                    let! r =
                        pair.Gateway.Api.PostAsync($"/api/miniprogram/deployments/{id}/retry-failed", null)

                    Expect.equal r.StatusCode HttpStatusCode.OK "r.StatusCode"
                    let! all = until pair.Gateway.Api id 30. (fun d -> count d "released" = 3)
                    Expect.isTrue all "all"
                }

            testCaseTask "a restart in the middle repeats no call that had succeeded"
            <| fun () ->
                task {
                    let! pair =
                        startPairWith
                            (simulatorOptions ())
                            (fast @ [ "WeChatFs:MiniProgram:AuditPollInterval", "00:00:01" ])

                    use _ = pair
                    let! appids, templateId = prepare pair 16
                    let! _ = simPost pair "/sim/miniprograms/latency" {| ms = 60 |}

                    let! _ =
                        simPost
                            pair
                            "/sim/miniprograms/verdict"
                            {|
                                verdict = "approve"
                                delay_ms = 300
                            |}

                    let! id =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "5.0.0"
                                user_desc = "restart"
                                targets = appids
                                audit = audit
                                release = "auto"
                                max_concurrency = 4
                            |}

                    let! midway =
                        until pair.Gateway.Api id 30. (fun d -> count d "pending" < 10 && count d "released" < 16)

                    Expect.isTrue midway "midway"
                    let! g = pair.RestartGateway fast
                    pair.Sim.SetMessageUrlTemplate(Some(g.Url "/wechat/authorizers/$APPID$/callback"))
                    let! before = getDeployment g.Api id
                    Expect.isTrue (count before "released" < 16) "the restart came too late to matter"
                    let! finished = until g.Api id 60. (fun d -> count d "released" = 16)
                    Expect.isTrue finished "finished"
                    do! assertEachOnce pair appids
                }

            testCaseTask "two instances share a deployment, never call twice and keep max_concurrency between them"
            <| fun () ->
                task {
                    let masterKey = Convert.ToBase64String(Array.init 32 byte)

                    let settings =
                        fast @ storeSettings "postgres" @ [ "WeChatFs:Secrets:MasterKey", masterKey ]

                    let! pair = startPairWith (simulatorOptions ()) settings
                    use _ = pair
                    let! appids, templateId = prepare pair 24

                    let! second =
                        startGatewayWith pair.Sim.BaseUrl (newDataFolder ()) (OffsetClock()) settings

                    use _ = second
                    let! _ = simPost pair "/sim/miniprograms/latency" {| ms = 40 |}
                    let! _ = simPost pair "/sim/miniprograms/concurrency" {| |}

                    let! id =
                        deploy
                            pair
                            {|
                                template_id = templateId
                                user_version = "6.0.0"
                                user_desc = "two instances"
                                targets = "all"
                                audit = audit
                                release = "auto"
                                max_concurrency = 3
                            |}

                    let! finished = until second.Api id 60. (fun d -> count d "released" = 24)
                    Expect.isTrue finished "finished"
                    do! assertEachOnce pair appids
                    let! r = pair.Http.GetAsync(pair.SimUrl "/sim/miniprograms/concurrency")
                    let! most = json r
                    Expect.isTrue (most.GetProperty("max").GetInt32() <= 3) (most.GetRawText())
                    Expect.isTrue (most.GetProperty("max").GetInt32() >= 2) (most.GetRawText())
                }

        ]

/// Binding an account to a tenant needs a link the business issued, and a state completes one
/// authorization; the signed link itself, property-tested.
module WeChatFs.Tests.AuthorizationLinksTests

open System
open System.Net
open System.Net.Http
open System.Security.Cryptography
open FsCheck
open FsCheck.FSharp
open Microsoft.AspNetCore.WebUtilities
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe


let tests =
    testSequencedGroup "AuthorizationLinks"
    <| testList
        "AuthorizationLinks"
        [
            testCase "a signed link carries its content, and any change to it is refused"
            <| fun () ->
                let key = RandomNumberGenerator.GetBytes 32
                let now = DateTimeOffset.UtcNow

                let content =
                    Gen.map3
                        (fun t a b ->
                            ({
                                Tenant = t
                                AuthType = a
                                BizAppId = b
                            }
                            : AuthorizationLinks.LinkContent))
                        (Helpers.xmlSafeString |> Gen.map (fun s -> s.Replace("\n", "")))
                        (Gen.elements [ ""; "1"; "2"; "3" ])
                        (Gen.elements [ ""; "wx1234" ])

                let input = Gen.zip content (Gen.choose (0, 200)) |> Arb.fromGen

                Prop.forAll input (fun (c, position) ->
                    let token = AuthorizationLinks.sign key (now.AddHours 1.) c
                    let i = position % token.Length
                    let flipped = if token[i] = 'A' then 'B' else 'A'
                    let tampered = token.Substring(0, i) + string flipped + token.Substring(i + 1)

                    AuthorizationLinks.verify key now token = Ok c
                    && Result.isError (AuthorizationLinks.verify key now tampered)
                    && AuthorizationLinks.verify key (now.AddHours 2.) token = Error Secrets.AuthState.Expired
                    && Result.isError (AuthorizationLinks.verify (RandomNumberGenerator.GetBytes 32) now token))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), p)

            testCaseTask "the start page needs the business's link unless unsigned tenants are allowed"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

                    let! bare =
                        pair.Http.GetAsync(pair.Gateway.Url "/wechat/component/authorize?tenant=shop-1")

                    Expect.equal bare.StatusCode HttpStatusCode.Forbidden "bare.StatusCode"
                    let! before = calls pair "api_create_preauthcode"

                    let! links =
                        postJson pair.Gateway.Api "/api/authorization-links" {| tenant = "shop-1"; auth_type = "1" |}

                    let! root = json links
                    let pageUrl = str root "authorize_page_url"
                    Expect.stringContains pageUrl "/wechat/component/authorize?link=" "pageUrl"
                    Expect.isFalse (pageUrl.Contains("tenant=")) "pageUrl has no 'tenant='"
                    let! page = pair.Http.GetAsync pageUrl
                    let! html = page.Content.ReadAsStringAsync()
                    Expect.equal page.StatusCode HttpStatusCode.OK "page.StatusCode"
                    Expect.stringContains html "<b>shop-1</b>" "html"
                    Expect.stringContains html "auth_type=1" "html"

                    // Pointing the link at another tenant breaks its signature.
                    let link = string (QueryHelpers.ParseQuery(Uri(pageUrl).Query)["link"])
                    let parts = link.Split '.'

                    let other =
                        Convert
                            .ToBase64String(Text.Encoding.UTF8.GetBytes "shop-2\n1\n")
                            .TrimEnd('=')
                            .Replace('+', '-')
                            .Replace('/', '_')

                    let forged = String.Join(".", Array.append [| other |] parts[1..])

                    let! refused =
                        pair.Http.GetAsync(
                            pair.Gateway.Url $"/wechat/component/authorize?link={Uri.EscapeDataString forged}"
                        )

                    Expect.equal refused.StatusCode HttpStatusCode.BadRequest "refused.StatusCode"
                    let! after = calls pair "api_create_preauthcode"
                    // Two codes: the link's and the page's; none for the refused requests.
                    Expect.equal after (before + 2) "after"

                    use! open' =
                        startPairWith (simulatorOptions ()) [ "WeChatFs:Authorization:AllowUnsignedTenant", "true" ]

                    do! readyAt open'.Http (open'.SimUrl "") open'.Gateway.Api

                    let! allowed =
                        open'.Http.GetAsync(open'.Gateway.Url "/wechat/component/authorize?tenant=demo-shop")

                    Expect.equal allowed.StatusCode HttpStatusCode.OK "allowed.StatusCode"
                }

            testTheoryTask
                "two instances given two codes for one state at once: exactly one binds, and a reload of it still does"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    // Two stores over one database stand for two instances.
                    let! first, connectionString, _ = StoreFixture.openFresh provider
                    use first = first
                    use second = SqlStore.openStore provider connectionString (StoreFixture.sealer ())
                    let now = DateTimeOffset.UtcNow
                    let lifetime = TimeSpan.FromHours 1.

                    let! outcomes =
                        [ 1..20 ]
                        |> List.map (fun i ->
                            let store = if i % 2 = 0 then first else second
                            AuthorizationLinks.claim store now lifetime "state-1" $"code-{i}")
                        |> Threading.Tasks.Task.WhenAll

                    let winners =
                        outcomes
                        |> Array.filter (fun o -> o = AuthorizationLinks.FirstUse)
                        |> Array.length

                    Expect.equal winners 1 "one code completes the authorization"
                    let winner = outcomes |> Array.findIndex (fun o -> o = AuthorizationLinks.FirstUse)

                    let! reload =
                        AuthorizationLinks.claim second (now.AddSeconds 5.) lifetime "state-1" $"code-{winner + 1}"

                    Expect.equal reload AuthorizationLinks.FirstUse "the winning code's reload is still its own"

                    let! other =
                        AuthorizationLinks.claim first (now.AddMinutes 30.) lifetime "state-1" "code-late"

                    Expect.equal other AuthorizationLinks.UsedByAnotherCode "a later code is refused"
                }

            testTheoryTask
                "a state's mark is a lease under the hashed state, so marks taken before ClaimStateUse still hold"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = StoreFixture.openFresh provider
                    use store = store
                    let now = DateTimeOffset.UtcNow
                    let until = now.AddHours 2.

                    let mark (prefix: string) (value: string) =
                        prefix
                        + (SHA256.HashData(Text.Encoding.UTF8.GetBytes value)[..15]
                           |> Convert.ToHexStringLower)

                    // The mark as the generic lease wrote it.
                    let! taken =
                        store.TryAcquireLease(mark "state-used:" "state-old", mark "" "code-a", now, until)

                    Expect.isTrue taken "the old-style mark is taken"

                    let! other =
                        store.ClaimStateUse("state-old", Domain.AuthorizationCode "code-b", now, until)

                    Expect.isFalse other "another code finds the old mark"

                    let! same =
                        store.ClaimStateUse("state-old", Domain.AuthorizationCode "code-a", now, until)

                    Expect.isTrue same "the same code (a reload) finds its own mark"

                    let! fresh =
                        store.ClaimStateUse("state-new", Domain.AuthorizationCode "code-c", now, until)

                    Expect.isTrue fresh "a new state is taken"

                    let! generic =
                        store.TryAcquireLease(mark "state-used:" "state-new", mark "" "code-d", now, until)

                    Expect.isFalse generic "the new mark is the same lease row"

                    let! afterExpiry =
                        store.ClaimStateUse(
                            "state-new",
                            Domain.AuthorizationCode "code-d",
                            until.AddSeconds 1.,
                            until.AddHours 1.
                        )

                    Expect.isTrue afterExpiry "a mark past its time no longer holds"
                }

            testCaseTask "a state completes one authorization; a second code with it is refused and binds nothing"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

                    let! status, state1, redirect1 =
                        authorizeAt pair.Http (pair.SimUrl "") pair.Gateway.Api "shop-1" shop

                    Expect.equal status HttpStatusCode.OK "status"
                    // The attacker's own authorization, for tenant shop-2, gives a second code.
                    do!
                        (postJson pair.Http (pair.SimUrl "/sim/push-order") {| order = "none" |})
                        :> Threading.Tasks.Task

                    let! answer, _ =
                        confirmOnSimulator pair.Http (pair.SimUrl "") pair.Gateway.Api "shop-2" mini

                    let code2 = str answer "auth_code"
                    Expect.isFalse (String.IsNullOrEmpty code2) "String.IsNullOrEmpty code2"

                    let! reused =
                        pair.Http.GetAsync(
                            pair.Gateway.Url
                                $"/wechat/component/authorized?auth_code={Uri.EscapeDataString code2}&expires_in=3600&state={Uri.EscapeDataString state1}"
                        )

                    let! html = reused.Content.ReadAsStringAsync()
                    Expect.equal reused.StatusCode HttpStatusCode.BadRequest "reused.StatusCode"
                    Expect.stringContains html "already been used" "html"
                    let! unknown = pair.Gateway.Api.GetAsync $"/api/authorizers/{mini}"
                    Expect.equal unknown.StatusCode HttpStatusCode.NotFound "unknown.StatusCode"
                    // The first code again with its own state (a reload) still shows the result.
                    Expect.isNotNull redirect1 "redirect1"
                    let! first = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}"
                    let! a = json first
                    Expect.equal (str a "tenant") "shop-1" "str a 'tenant'"
                }

        ]

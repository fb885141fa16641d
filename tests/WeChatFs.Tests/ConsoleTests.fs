/// The operator console over HTTP: sign-in, the session cookie, anti-forgery tokens, and the pure
/// pieces (tokens, the push chart, the settings).
module WeChatFs.Tests.ConsoleTests

open System
open System.Collections.Generic
open System.Net
open System.Net.Http
open System.Text.RegularExpressions
open System.Threading.Tasks
open FsCheck
open FsCheck.FSharp
open Microsoft.Extensions.Configuration
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.Tests.Harness

/// A browser-like client: keeps cookies, does not follow redirects.
let browser () =
    let cookies = CookieContainer()
    new HttpClient(new HttpClientHandler(CookieContainer = cookies, AllowAutoRedirect = false)), cookies

let csrfOf (html: string) =
    let m = Regex.Match(html, "name=\"__csrf\" value=\"([^\"]+)\"")
    Expect.isTrue m.Success "no anti-forgery field in the page"
    m.Groups[1].Value

let form (pairs: (string * string) list) =
    new FormUrlEncodedContent(pairs |> List.map (fun (k, v) -> KeyValuePair(k, v)))

/// Signs in with `key`; answers the sign-in POST's response.
let signIn (client: HttpClient) (gateway: Gateway) (key: string) =
    task {
        let! page = client.GetStringAsync(gateway.Url "/console/sign-in")

        return!
            client.PostAsync(
                gateway.Url "/console/sign-in",
                form [ "__csrf", csrfOf page; "key", key; "return", "/console" ]
            )
    }

let storeSettings (provider: string) =
    if provider = "postgres" then
        [
            "WeChatFs:Storage:Provider", "postgres"
            "WeChatFs:Storage:ConnectionString", Helpers.postgres.Force().NewDatabase()
        ]
    else
        []


let tests =
    testSequencedGroup "Console"
    <| testList
        "Console"
        [
            testCase "an anti-forgery token holds only for the session it was made for"
            <| fun () ->
                let key = Array.init 32 byte

                Prop.forAll (Arb.fromGen (Gen.zip Helpers.xmlSafeString Helpers.xmlSafeString)) (fun (a, b) ->
                    let token = ConsoleSession.csrfToken key a

                    (a = "" || ConsoleSession.csrfValid key a token)
                    && (a = b || not (ConsoleSession.csrfValid key b token))
                    && not (ConsoleSession.csrfValid key a "")
                    && not (ConsoleSession.csrfValid (Array.create 32 7uy) a token))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

            testCase "a session lasts until it expires and ends when the admin key changes"
            <| fun () ->
                let key = Array.init 32 byte
                let now = DateTimeOffset(2026, 11, 30, 10, 0, 0, TimeSpan.Zero)

                let cookie =
                    ConsoleSession.issue key "admin-1" (now.AddHours 8.) (Array.zeroCreate 16)

                Expect.isTrue
                    (ConsoleSession.valid key (Some "admin-1") (now.AddHours 7.) cookie)
                    "ConsoleSession.valid key (Some 'admin-1') (now.AddHours 7.) cookie"

                Expect.isFalse
                    (ConsoleSession.valid key (Some "admin-1") (now.AddHours 9.) cookie)
                    "ConsoleSession.valid key (Some 'admin-1') (now.AddHours 9.) cookie"

                Expect.isFalse
                    (ConsoleSession.valid key (Some "admin-2") now cookie)
                    "ConsoleSession.valid key (Some 'admin-2') now cookie"

                Expect.isFalse (ConsoleSession.valid key None now cookie) "ConsoleSession.valid key None now cookie"

                Expect.isFalse
                    (ConsoleSession.valid key (Some "admin-1") now (cookie.Replace('.', '-')))
                    "ConsoleSession.valid key (Some 'admin-1') now (cookie.Replace('.', ..."

                Expect.isFalse
                    (ConsoleSession.valid (Array.create 32 1uy) (Some "admin-1") now cookie)
                    "ConsoleSession.valid (Array.create 32 1uy) (Some 'admin-1') now cookie"

            testCase "the push chart draws one bar per busy minute, none taller than the chart"
            <| fun () ->
                let points =
                    Gen.listOfLength 60 (Gen.frequency [ 2, Gen.constant 0L; 3, Gen.choose (1, 5000) |> Gen.map int64 ])
                    |> Arb.fromGen

                Prop.forAll points (fun counts ->
                    let series = counts |> List.mapi (fun i n -> int64 (1000 + i), n)

                    let svg =
                        ConsoleViews.pushChart series |> Giraffe.ViewEngine.RenderView.AsString.xmlNode

                    let bars = Regex.Matches(svg, "<rect [^>]*height=\"([0-9.]+)\"")
                    let heights = bars |> Seq.map (fun m -> float m.Groups[1].Value) |> List.ofSeq

                    bars.Count = (counts |> List.filter (fun n -> n > 0L) |> List.length)
                    && heights |> List.forall (fun h -> h > 0. && h <= 160.0001)
                    && (counts |> List.exists (fun n -> n > 0L) |> not
                        || heights |> List.exists (fun h -> abs (h - 160.) < 0.01)))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(100), p)

            testCase "console and metrics settings are validated with the key named"
            <| fun () ->
                let load (pairs: (string * string) list) =
                    ConfigurationBuilder()
                        .AddInMemoryCollection(pairs |> List.map (fun (k, v) -> KeyValuePair(k, v)))
                        .Build()
                    |> WeChatFs.Config.loadOperator

                match load [] with
                | Ok o ->
                    Expect.isTrue o.ConsoleEnabled "o.ConsoleEnabled"
                    Expect.equal o.SessionLifetime (TimeSpan.FromHours 8.) "o.SessionLifetime"
                    Expect.isFalse o.MetricsAnonymous "o.MetricsAnonymous"
                | Error e -> Expect.isTrue false ($"%A{e}")

                match
                    load
                        [
                            "WeChatFs:Console:SessionLifetime", "00:00:10"
                            "WeChatFs:Metrics:Anonymous", "yes"
                        ]
                with
                | Ok _ -> Expect.isTrue false "accepted a 10 s session and 'yes'"
                | Error errors ->
                    let keys = errors |> List.map (fun e -> e.Key)
                    Expect.contains keys "WeChatFs:Console:SessionLifetime" "keys"
                    Expect.contains keys "WeChatFs:Metrics:Anonymous" "keys"

            testCaseTask "the console asks for the admin key and then keeps a strict, HttpOnly, expiring session"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let client, _ = browser ()
                    use _ = client
                    let! first = client.GetAsync(pair.Gateway.Url "/console/authorizers?tenant=a")
                    Expect.equal first.StatusCode HttpStatusCode.Redirect "first.StatusCode"

                    Expect.stringStarts
                        (string first.Headers.Location)
                        "/console/sign-in?return="
                        "string first.Headers.Location"

                    let! wrong = signIn client pair.Gateway "not-the-key"
                    Expect.equal wrong.StatusCode HttpStatusCode.Unauthorized "wrong.StatusCode"

                    Expect.isFalse
                        (wrong.Headers.Contains "Set-Cookie"
                         && (wrong.Headers.GetValues "Set-Cookie"
                             |> Seq.exists (fun c -> c.StartsWith "wechatfs_console=")))
                        "wrong.Headers.Contains 'Set-Cookie' && (wrong.Headers.GetValues 'Se..."

                    let! right = signIn client pair.Gateway adminKey
                    Expect.equal right.StatusCode HttpStatusCode.Redirect "right.StatusCode"
                    Expect.equal (string right.Headers.Location) "/console" "string right.Headers.Location"

                    let cookie =
                        right.Headers.GetValues "Set-Cookie"
                        |> Seq.find (fun c -> c.StartsWith "wechatfs_console=")

                    let lower = cookie.ToLowerInvariant()
                    Expect.stringContains lower "httponly" "lower"
                    Expect.stringContains lower "samesite=strict" "lower"
                    Expect.stringContains lower "path=/console" "lower"
                    Expect.stringContains lower "expires=" "lower"
                    Expect.isFalse (cookie.Contains(adminKey: string)) "cookie must not contain adminKey"

                    let! overview = client.GetAsync(pair.Gateway.Url "/console")
                    let! html = overview.Content.ReadAsStringAsync()
                    Expect.equal overview.StatusCode HttpStatusCode.OK "overview.StatusCode"
                    Expect.stringContains html "Component" "html"
                    Expect.stringContains html "Sign out" "html"

                    // Signed out, the same browser is asked for the key again.
                    let! out =
                        client.PostAsync(pair.Gateway.Url "/console/sign-out", form [ "__csrf", csrfOf html ])

                    Expect.equal out.StatusCode HttpStatusCode.Redirect "out.StatusCode"
                    let! after = client.GetAsync(pair.Gateway.Url "/console")
                    Expect.equal after.StatusCode HttpStatusCode.Redirect "after.StatusCode"
                }

            testCaseTask "a form without its anti-forgery token is refused and changes nothing"
            <| fun () ->
                task {
                    use! pair = startPair ()
                    let! _ = pushTicket pair

                    let! _ =
                        eventually (TimeSpan.FromSeconds 5.) (fun () ->
                            task {
                                let! s, _ = componentToken pair
                                return s = HttpStatusCode.OK
                            })

                    let! _ = AuthorizerApiTests.authorizeVia pair "shop-csrf" "wxsimoa00000000001"
                    let client, _ = browser ()
                    use _ = client
                    let! signedIn = signIn client pair.Gateway adminKey
                    Expect.equal signedIn.StatusCode HttpStatusCode.Redirect "signedIn.StatusCode"
                    let! before = calls pair "api_authorizer_token"
                    let url = pair.Gateway.Url "/console/authorizers/wxsimoa00000000001/refresh"

                    let! missing = client.PostAsync(url, form [])
                    Expect.equal missing.StatusCode HttpStatusCode.BadRequest "missing.StatusCode"
                    let! forged = client.PostAsync(url, form [ "__csrf", String('0', 64) ])
                    Expect.equal forged.StatusCode HttpStatusCode.BadRequest "forged.StatusCode"
                    let! notAForm = client.PostAsync(url, null)
                    Expect.equal notAForm.StatusCode HttpStatusCode.BadRequest "notAForm.StatusCode"
                    // A sign-in form without its token is refused too, even with the right key.
                    let other, _ = browser ()
                    use _ = other

                    let! blind =
                        other.PostAsync(pair.Gateway.Url "/console/sign-in", form [ "key", adminKey ])

                    Expect.equal blind.StatusCode HttpStatusCode.BadRequest "blind.StatusCode"
                    let! after = calls pair "api_authorizer_token"
                    Expect.equal after before "after"

                    // With its token the same form works.
                    let! page =
                        client.GetStringAsync(pair.Gateway.Url "/console/authorizers/wxsimoa00000000001")

                    let! ok = client.PostAsync(url, form [ "__csrf", csrfOf page ])
                    Expect.equal ok.StatusCode HttpStatusCode.Redirect "ok.StatusCode"
                    Expect.stringContains (string ok.Headers.Location) "notice=" "string ok.Headers.Location"
                    let! refreshed = calls pair "api_authorizer_token"
                    Expect.equal refreshed (before + 1) "refreshed"
                }
        ]

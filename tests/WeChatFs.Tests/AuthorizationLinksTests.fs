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
open Xunit
open WeChatFs
open WeChatFs.Tests.Harness
open WeChatFs.Tests.Probe

[<Fact>]
let ``a signed link carries its content, and any change to it is refused`` () =
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

[<Fact>]
let ``the start page needs the business's link unless unsigned tenants are allowed`` () =
    task {
        use! pair = startPair ()
        do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

        let! bare =
            pair.Http.GetAsync(pair.Gateway.Url "/wechat/component/authorize?tenant=shop-1")

        Assert.Equal(HttpStatusCode.Forbidden, bare.StatusCode)
        let! before = calls pair "api_create_preauthcode"

        let! links =
            postJson pair.Gateway.Api "/api/authorization-links" {| tenant = "shop-1"; auth_type = "1" |}

        let! root = json links
        let pageUrl = str root "authorize_page_url"
        Assert.Contains("/wechat/component/authorize?link=", pageUrl)
        Assert.DoesNotContain("tenant=", pageUrl)
        let! page = pair.Http.GetAsync pageUrl
        let! html = page.Content.ReadAsStringAsync()
        Assert.Equal(HttpStatusCode.OK, page.StatusCode)
        Assert.Contains("<b>shop-1</b>", html)
        Assert.Contains("auth_type=1", html)

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
            pair.Http.GetAsync(pair.Gateway.Url $"/wechat/component/authorize?link={Uri.EscapeDataString forged}")

        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode)
        let! after = calls pair "api_create_preauthcode"
        // Two codes: the link's and the page's; none for the refused requests.
        Assert.Equal(before + 2, after)

        use! open' =
            startPairWith (simulatorOptions ()) [ "WeChatFs:Authorization:AllowUnsignedTenant", "true" ]

        do! readyAt open'.Http (open'.SimUrl "") open'.Gateway.Api

        let! allowed =
            open'.Http.GetAsync(open'.Gateway.Url "/wechat/component/authorize?tenant=demo-shop")

        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode)
    }

[<Fact>]
let ``a state completes one authorization; a second code with it is refused and binds nothing`` () =
    task {
        use! pair = startPair ()
        do! readyAt pair.Http (pair.SimUrl "") pair.Gateway.Api

        let! status, state1, redirect1 =
            authorizeAt pair.Http (pair.SimUrl "") pair.Gateway.Api "shop-1" shop

        Assert.Equal(HttpStatusCode.OK, status)
        // The attacker's own authorization, for tenant shop-2, gives a second code.
        let! links =
            postJson pair.Gateway.Api "/api/authorization-links" {| tenant = "shop-2" |}

        let! root = json links
        let query = QueryHelpers.ParseQuery(Uri(str root "pc_url").Query)
        do! (postJson pair.Http (pair.SimUrl "/sim/push-order") {| order = "none" |}) :> Threading.Tasks.Task

        let! confirmed =
            postJson
                pair.Http
                (pair.SimUrl "/sim/authorize")
                {|
                    pre_auth_code = string query["pre_auth_code"]
                    redirect_uri = string query["redirect_uri"]
                    appid = mini
                |}

        let! answer = json confirmed
        let code2 = str answer "auth_code"
        Assert.False(String.IsNullOrEmpty code2)

        let! reused =
            pair.Http.GetAsync(
                pair.Gateway.Url
                    $"/wechat/component/authorized?auth_code={Uri.EscapeDataString code2}&expires_in=3600&state={Uri.EscapeDataString state1}"
            )

        let! html = reused.Content.ReadAsStringAsync()
        Assert.Equal(HttpStatusCode.BadRequest, reused.StatusCode)
        Assert.Contains("already been used", html)
        let! unknown = pair.Gateway.Api.GetAsync $"/api/authorizers/{mini}"
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode)
        // The first code again with its own state (a reload) still shows the result.
        Assert.NotNull redirect1
        let! first = pair.Gateway.Api.GetAsync $"/api/authorizers/{shop}"
        let! a = json first
        Assert.Equal("shop-1", str a "tenant")
    }

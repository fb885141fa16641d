/// A follower's real browser (headless Chromium driven by Selenium): from the menu URL through the
/// simulated WeChat's consent page to a business page served by the test, with the wxTkId in the
/// query and the state in the fragment; the business system then resolves the wxTkId.
module WeChatFs.Tests.BrowserTests

open System
open System.IO
open System.Net
open System.Threading.Tasks
open Microsoft.AspNetCore.Builder
open Microsoft.AspNetCore.Hosting
open Microsoft.AspNetCore.Http
open Microsoft.Extensions.Logging
open OpenQA.Selenium
open OpenQA.Selenium.Chrome
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness
open WeChatFs.Tests.OAuthApiTests

/// The business page: reads what it got from its own URL, as a real page's script would.
let private startBusinessPage () =
    task {
        let builder = WebApplication.CreateBuilder()
        builder.WebHost.UseUrls($"http://127.0.0.1:{Helpers.freePort ()}") |> ignore
        builder.Logging.ClearProviders() |> ignore
        let app = builder.Build()

        app.MapGet(
            "/landing",
            RequestDelegate(fun ctx ->
                ctx.Response.ContentType <- "text/html; charset=utf-8"

                ctx.Response.WriteAsync
                    """<!doctype html><html><head><meta charset="utf-8"><title>Member page</title></head><body>
<p id="token"></p><p id="state"></p>
<script>
  document.getElementById('token').textContent = new URLSearchParams(location.search).get('wxTkId') || '';
  document.getElementById('state').textContent = decodeURIComponent(location.hash.slice(1));
</script></body></html>""")
        )
        |> ignore

        do! app.StartAsync()
        let url = $"""{Seq.head app.Urls}/landing"""
        return app, url
    }

/// Debian's chromium and chromium-driver, never a download: the driver's path is always given.
let private startChromium () =
    Expect.isTrue
        (File.Exists "/usr/bin/chromium" && File.Exists "/usr/bin/chromedriver")
        "the browser test needs Debian's packages chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); the test command installs them"

    // Selenium Manager must not go looking on the network.
    Environment.SetEnvironmentVariable("SE_OFFLINE", "true")
    let service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver")
    service.SuppressInitialDiagnosticInformation <- true
    service.HideCommandPromptWindow <- true
    let options = ChromeOptions()
    options.BinaryLocation <- "/usr/bin/chromium"

    options.AddArguments(
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        $"--user-data-dir={Helpers.tempFolder ()}"
    )

    new ChromeDriver(service, options, TimeSpan.FromSeconds 60.)


let tests =
    testSequencedGroup "Browser"
    <| testList
        "Browser"
        [
            testCaseTask
                "a follower in a real browser reaches the business page with a wxTkId that resolves to their openid"
            <| fun () ->
                task {
                    use! pair = startAuthorized "sqlite" "shop-1" shop []
                    let! business, landing = startBusinessPage ()

                    use _ =
                        { new IDisposable with
                            member _.Dispose() = business.StopAsync().Wait()
                        }

                    do! addRoute pair "member" landing "snsapi_userinfo" "shop-1"
                    let state = "menu 1/会员&x=y"
                    use driver = startChromium ()
                    driver.Navigate().GoToUrl(startUrl pair shop "member" state)

                    // WeChat's consent page (the simulator's), with one button per simulated follower.
                    let! consent =
                        eventually (TimeSpan.FromSeconds 20.) (fun () ->
                            Task.FromResult(driver.FindElements(By.Id "allow-f2").Count = 1))

                    Expect.isTrue consent ($"no consent page at {driver.Url}: {driver.PageSource}")
                    driver.FindElement(By.Id "allow-f2").Click()

                    let! landed =
                        eventually (TimeSpan.FromSeconds 20.) (fun () ->
                            Task.FromResult(
                                driver.Url.StartsWith(landing, StringComparison.Ordinal)
                                && driver.FindElement(By.Id "token").Text <> ""
                            ))

                    Expect.isTrue landed ($"the browser ended at {driver.Url}")
                    let url = Uri driver.Url
                    let token = wxTkIdOf url
                    Expect.equal (driver.FindElement(By.Id "token").Text) token "driver.FindElement(By.Id 'token').Text"

                    Expect.equal
                        (Uri.UnescapeDataString(url.Fragment.TrimStart '#'))
                        state
                        "Uri.UnescapeDataString(url.Fragment.TrimStart '#')"

                    Expect.equal (driver.FindElement(By.Id "state").Text) state "driver.FindElement(By.Id 'state').Text"
                    let! resolved = resolve pair token
                    Expect.equal resolved.StatusCode HttpStatusCode.OK "resolved.StatusCode"
                    let! v = json resolved
                    let! expected = simFollower pair shop "f2"
                    Expect.equal (str v "openid") (str expected "openid") "str v 'openid'"
                    Expect.equal (str v "authorizer_appid") shop "str v 'authorizer_appid'"
                    Expect.equal (str v "nickname") "Lily" "str v 'nickname'"
                    driver.Quit()
                }

        ]

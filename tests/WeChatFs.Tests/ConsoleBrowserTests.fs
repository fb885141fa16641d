/// The operator console in a real browser (headless Chromium driven by Selenium): an operator signs
/// in, sees the component token, authorizes an account through the console's link and the simulated
/// WeChat, finds it, retries a dead delivery and signs out. Each page passes an axe accessibility
/// check; screenshots go to the test output folder.
module WeChatFs.Tests.ConsoleBrowserTests

open System
open System.IO
open System.Net
open System.Threading.Tasks
open OpenQA.Selenium
open OpenQA.Selenium.Chrome
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Tests.Harness

let private shop = "wxsimoa00000000001"

/// Debian's chromium and chromedriver, named explicitly so nothing is ever downloaded.
let startBrowser () =
    let service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver")
    service.HideCommandPromptWindow <- true
    service.SuppressInitialDiagnosticInformation <- true
    let options = ChromeOptions(BinaryLocation = "/usr/bin/chromium")

    options.AddArguments(
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync"
    )

    new ChromeDriver(service, options, TimeSpan.FromSeconds 60.)

let screenshotFolder () =
    let dir = Path.Combine(AppContext.BaseDirectory, "screenshots")
    Directory.CreateDirectory dir |> ignore
    dir

let private shoot (driver: ChromeDriver) (name: string) =
    driver.GetScreenshot().SaveAsFile(Path.Combine(screenshotFolder (), name + ".png"))

/// axe-core as Selenium.Axe ships it (embedded in its assembly). Its AxeBuilder is compiled against
/// WebDriver 3.141, which the F# compiler refuses next to WebDriver 4, so the script is run directly.
let private axeSource =
    lazy
        (let assembly =
            Reflection.Assembly.LoadFrom(Path.Combine(AppContext.BaseDirectory, "Selenium.Axe.dll"))

         use stream = assembly.GetManifestResourceStream "Selenium.Axe.Resources.axe.min.js"
         use reader = new StreamReader(stream)
         reader.ReadToEnd())

/// No serious or critical violation on the page as it is now.
let private accessible (driver: ChromeDriver) (page: string) =
    driver.ExecuteScript(axeSource.Value) |> ignore

    let answer =
        driver.ExecuteAsyncScript
            """var done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(function (r) {
  done(JSON.stringify(r.violations.map(function (v) {
    return { id: v.id, impact: v.impact || '', help: v.help, nodes: v.nodes.length }; })));
}, function (e) { done(JSON.stringify([{ id: 'axe-failed', impact: 'critical', help: String(e), nodes: 0 }])); });"""
        |> string

    let violations = Text.Json.JsonDocument.Parse(answer).RootElement

    let bad =
        [
            for v in violations.EnumerateArray() do
                let impact = v.GetProperty("impact").GetString()

                if impact = "serious" || impact = "critical" then
                    $"""{page}: {v.GetProperty("id").GetString()} ({impact}) {v.GetProperty("help").GetString()}"""
        ]

    Expect.isTrue (List.isEmpty bad) (String.Join("\n", bad))

let private until (driver: ChromeDriver) (seconds: float) (check: unit -> bool) =
    let deadline = DateTime.UtcNow.AddSeconds seconds
    let mutable ok = false

    while not ok && DateTime.UtcNow < deadline do
        ok <-
            try
                check ()
            with :? WebDriverException ->
                false

        if not ok then
            Threading.Thread.Sleep 100

    ok

let private text (driver: ChromeDriver) (css: string) =
    driver.FindElement(By.CssSelector css).Text


let tests =
    testSequencedGroup "ConsoleBrowser"
    <| testList
        "ConsoleBrowser"
        [
            testCaseTask "an operator signs in, authorizes an account, finds it, retries a dead delivery and signs out"
            <| fun () ->
                task {
                    let! hook = startWebhook ()
                    use _ = hook

                    let! pair =
                        startPairWith
                            (simulatorOptions ())
                            (webhookSettings hook
                             @ [
                                 "WeChatFs:Webhooks:MaxAttempts", "1"
                                 "WeChatFs:Webhooks:ReplyTimeout", "00:00:00.500"
                             ])

                    use _ = pair
                    let! _ = pushTicket pair

                    let! ready =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! s, _ = componentToken pair
                                return s = HttpStatusCode.OK
                            })

                    Expect.isTrue ready "ready"
                    use driver = startBrowser ()
                    let url = pair.Gateway.Url

                    // Sign in: the console sends the browser to the sign-in page first.
                    driver.Navigate().GoToUrl(url "/console")
                    Expect.stringStarts driver.Url (url "/console/sign-in") "driver.Url"
                    accessible driver "sign-in"
                    shoot driver "01-sign-in"
                    driver.FindElement(By.Id "key").SendKeys adminKey
                    driver.FindElement(By.CssSelector "#sign-in button").Click()
                    Expect.isTrue (until driver 10. (fun () -> driver.Url = url "/console")) driver.Url

                    // The overview shows the component token the simulator issued.
                    Expect.stringContains (text driver "#token-state") "valid" "text driver '#token-state'"
                    Expect.stringContains (text driver "#token-state") "left" "text driver '#token-state'"
                    Expect.stringContains (text driver "#ticket-age") "fresh" "text driver '#ticket-age'"
                    accessible driver "overview"
                    shoot driver "02-overview"

                    // A link for a tenant, opened as the merchant would, confirmed on the simulated WeChat page.
                    driver.FindElement(By.LinkText "Authorize").Click()
                    driver.FindElement(By.Id "tenant").SendKeys "shop-browser"
                    driver.FindElement(By.CssSelector "#make-link button").Click()

                    Expect.isTrue
                        (until driver 10. (fun () -> driver.FindElements(By.Id "authorize-link").Count = 1))
                        "until driver 10. (fun () -> driver.FindElements(By.Id 'authorize-li..."

                    Expect.isNonEmpty
                        (driver.FindElements(By.CssSelector ".qr svg"))
                        "driver.FindElements(By.CssSelector '.qr svg')"

                    accessible driver "authorize"
                    shoot driver "03-authorize"
                    driver.FindElement(By.Id "authorize-link").Click()

                    Expect.isTrue
                        (until driver 10. (fun () -> driver.FindElements(By.Id "pc").Count = 1))
                        driver.PageSource

                    driver.FindElement(By.Id "pc").Click()

                    Expect.isTrue
                        (until driver 10. (fun () ->
                            driver.FindElements(By.CssSelector $"input[name=appid][value={shop}]").Count = 1))
                        driver.PageSource

                    driver.FindElement(By.CssSelector $"input[name=appid][value={shop}]").Click()
                    driver.FindElement(By.CssSelector "button[type=submit]").Click()

                    Expect.isTrue
                        (until driver 10. (fun () -> driver.FindElements(By.Id "appid").Count = 1))
                        driver.PageSource

                    Expect.equal (text driver "#appid") shop "text driver '#appid'"

                    // Found in the console by its tenant.
                    driver.Navigate().GoToUrl(url "/console/authorizers")
                    driver.FindElement(By.Id "tenant").SendKeys "shop-browser"
                    driver.FindElement(By.CssSelector "#search button").Click()

                    Expect.isTrue
                        (until driver 10. (fun () -> driver.FindElements(By.LinkText shop).Count = 1))
                        driver.PageSource

                    accessible driver "authorizers"
                    shoot driver "04-authorizers"
                    driver.FindElement(By.LinkText shop).Click()
                    Expect.equal (text driver "#appid") shop "text driver '#appid'"
                    Expect.stringContains (text driver "#status") "authorized" "text driver '#status'"
                    Expect.stringContains (text driver "#token-expiry") "valid" "text driver '#token-expiry'"
                    accessible driver "authorizer"
                    shoot driver "05-authorizer"

                    // The webhook is down for one message: with one attempt allowed it is dead-lettered.
                    hook.Respond <- fun _ -> 500, ""

                    let! _ =
                        sendMessage pair shop "text" [ "Content", "for the dead-letter queue"; "MsgId", "99001" ]

                    let! dead =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=dead"
                                let! root = json r
                                return root.GetProperty("total").GetInt32() = 1
                            })

                    Expect.isTrue dead "dead"
                    hook.Respond <- fun _ -> 200, ""
                    driver.FindElement(By.LinkText "Deliveries").Click()
                    Expect.stringContains driver.PageSource "1 dead deliveries" "driver.PageSource"
                    Expect.stringContains driver.PageSource "HTTP 500" "driver.PageSource"
                    accessible driver "deliveries"
                    shoot driver "06-dead-deliveries"
                    driver.FindElement(By.CssSelector "button.retry").Click()

                    Expect.isTrue
                        (until driver 10. (fun () -> driver.FindElements(By.Id "notice").Count = 1))
                        driver.PageSource

                    // Out of the dead letters at once; at the webhook once the retry's attempt has run.
                    let! delivered =
                        eventually (TimeSpan.FromSeconds 10.) (fun () ->
                            task {
                                let! r = pair.Gateway.Api.GetAsync "/api/deliveries?status=dead"
                                let! root = json r

                                return
                                    root.GetProperty("total").GetInt32() = 0
                                    && hook.Payloads
                                       |> List.exists (fun p -> (p.GetRawText()).Contains "for the dead-letter queue")
                            })

                    Expect.isTrue delivered "the retried message reached the webhook"

                    // The other pages pass the same check.
                    for path, name in [ "/console/events", "07-events"; "/console/errors?code=61023", "08-errors" ] do
                        driver.Navigate().GoToUrl(url path)
                        accessible driver name
                        shoot driver name

                    Expect.stringContains (text driver "#explanation") "61023" "text driver '#explanation'"

                    // The API reference renders the document, with nothing fetched from elsewhere.
                    driver.Navigate().GoToUrl(url "/docs/")

                    Expect.isTrue
                        (until driver 20. (fun () -> driver.PageSource.Contains "WeChatFs internal API"))
                        "the reference page did not render the document"

                    shoot driver "10-api-reference"

                    // On a phone's width the overview fits without sideways scrolling.
                    driver.Manage().Window.Size <- Drawing.Size(390, 844)
                    driver.Navigate().GoToUrl(url "/console")

                    let fits =
                        driver.ExecuteScript "return document.documentElement.scrollWidth <= window.innerWidth + 1;"
                        |> unbox<bool>

                    Expect.isTrue fits "the overview is wider than a phone's screen"
                    shoot driver "09-overview-phone"
                    driver.Manage().Window.Size <- Drawing.Size(1280, 1000)

                    // Signing out ends the session.
                    driver.FindElement(By.CssSelector "#sign-out button").Click()

                    Expect.isTrue
                        (until driver 10. (fun () -> driver.Url.StartsWith(url "/console/sign-in")))
                        driver.Url

                    driver.Navigate().GoToUrl(url "/console/deliveries")
                    Expect.stringStarts driver.Url (url "/console/sign-in") "driver.Url"
                    driver.Quit()
                }

        ]

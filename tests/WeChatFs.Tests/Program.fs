/// The test program: every module's tests in one Expecto run. Expecto's own flags work
/// (`--filter`, `--sequenced`, `--summary`, `--fscheck-max-tests`, `--list-tests`); the last line
/// printed is `tests: N passed, N failed, N skipped`, taken from Expecto's summary of the run.
module WeChatFs.Tests.Program

open System
open Expecto
open Expecto.Impl

let all =
    testList
        "WeChatFs"
        [
            DomainTests.tests
            DecisionsTests.tests
            PacingTests.tests
            ErrorGuideTests.tests
            CryptoTests.tests
            PushesTests.tests
            CallbackTests.tests
            SecretsTests.tests
            WireTests.tests
            QueryStringTests.tests
            MessagesTests.tests
            RedPacksTests.tests
            RedPackStateTests.tests
            MiniProgramsTests.tests
            PagingTests.tests
            ConfigTests.tests
            OAuthTests.tests
            OAuthConfigTests.tests
            GroupCommitTests.tests
            StoreTests.tests
            SqlStoreTests.tests
            SqlStoreSafetyTests.tests
            StoreConnectionsTests.tests
            WeChatClientTests.tests
            AuthorizersTests.tests
            FileSyncTests.tests
            IntakeLogTests.tests
            InboxTests.tests
            OAuthStoreTests.tests
            RedPackStoreTests.tests
            RecentPushesTests.tests
            IntakeTests.tests
            ComponentApiTests.tests
            AuthorizerApiTests.tests
            AuthorizerApiRecoveryTests.tests
            MultiInstanceTests.tests
            MessageApiTests.tests
            MessageDeliveryTests.tests
            MessageRepliesTests.tests
            DeploymentsTests.tests
            DeploymentsResilienceTests.tests
            MiniProgramApiTests.tests
            SimulatorTests.tests
            OAuthApiTests.tests
            OAuthApiRoutesTests.tests
            JsApiTicketsTests.tests
            SimOAuthTests.tests
            BrowserTests.tests
            MetricsTests.tests
            OpenApiDocTests.tests
            RedPackApiTests.tests
            RedPackApiRequestTests.tests
            ConsoleTests.tests
            ConsolePagesTests.tests
            ConsoleBrowserTests.tests
            RedPackServiceTests.tests
            ProxyPathTests.tests
            RefusalsTests.tests
            ProblemsTests.tests
            AuthorizationLinksTests.tests
            AuthorizerTokenApiTests.tests
            ComponentTokensTests.tests
            FuzzTests.tests
            CrashTests.tests
            HostingOptionsTests.tests
            SampleTests.tests
        ]

/// The line CI reads, from the run's own counts: errored tests count as failed, ignored as skipped.
/// It is printed after Expecto has finished printing, so that it stays the last line.
let private closingLine (summary: TestRunSummary) =
    let failed = summary.failed.Length + summary.errored.Length
    $"tests: {summary.passed.Length} passed, {failed} failed, {summary.ignored.Length} skipped"

[<EntryPoint>]
let main argv =
    let mutable last = None
    let keep = SummaryHandler(fun summary -> last <- Some(closingLine summary))

    let code =
        runTestsWithCLIArgs
            [
                CLIArguments.No_Spinner
                CLIArguments.Colours 0
                CLIArguments.Append_Summary_Handler keep
            ]
            argv
            all

    // Expecto's console writer decorates what goes through Console.Out; the closing line goes to the
    // raw standard output, on a line of its own. A listing (--list-tests) runs nothing and prints none.
    match last with
    | None -> code
    | Some line ->
        Console.Out.Flush()
        use stdout = Console.OpenStandardOutput()
        let bytes = Text.Encoding.UTF8.GetBytes("\n" + line + "\n")
        stdout.Write(bytes, 0, bytes.Length)
        stdout.Flush()
        // A filter that matches nothing is a mistake, not a green run.
        if line.StartsWith "tests: 0 passed, 0 failed" then
            1
        else
            code

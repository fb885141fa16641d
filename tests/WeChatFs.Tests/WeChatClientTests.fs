/// How WeChat's answers are classified for the token logic (the calls themselves are exercised over
/// HTTP against the simulator in the API tests).
module WeChatFs.Tests.WeChatClientTests

open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Domain
open WeChatFs.WeChatClient

let tests =
    testList
        "WeChatClient"
        [
            testProp "an errcode answer is classified by its code, as the domain says" (fun (code: int) ->
                failureKind (ApiError(code, "x")) = classifyErrcode code
                && errcodeOfError (ApiError(code, "x")) = Some code)

            testProp
                "5xx answers and broken connections are transient; other statuses are permanent"
                (fun (status: int) ->
                    let status = abs status % 600

                    failureKind (HttpStatus status) = (if status >= 500 then Transient else Permanent)
                    && failureKind (Transport "reset") = Transient
                    && errcodeOfError (HttpStatus status) = None)

            testCase "an unreadable answer is permanent, not retried"
            <| fun () -> Expect.equal (failureKind (InvalidResponse "not JSON")) Permanent "InvalidResponse"

            testCase "each error is described for operators, errcodes with their meaning"
            <| fun () ->
                let text = describeError (ApiError(61023, "invalid refresh token"))
                Expect.stringContains text "61023" "the code"
                Expect.stringContains text (WeChatFs.ErrorGuide.explain 61023) "the guide's explanation"
                Expect.stringContains (describeError (HttpStatus 502)) "502" "the status"
        ]

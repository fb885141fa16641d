module WeChatFs.Tests.ErrorGuideTests

open Expecto
open WeChatFs.Tests.Helpers
open FsCheck
open FsCheck.FSharp
open WeChatFs


let tests =
    testList
        "ErrorGuide"
        [
            testCase "every code of the facts' table is explained with a meaning and an action"
            <| fun () ->
                let codes =
                    [
                        -1
                        0
                        40001
                        40013
                        40014
                        40029
                        40090
                        40097
                        40125
                        41001
                        41004
                        42001
                        42002
                        42007
                        43004
                        44002
                        45009
                        45015
                        45047
                        47001
                        48001
                        48006
                        61003
                        61004
                        61005
                        61006
                        61007
                        61009
                        61010
                        61011
                        61016
                        61023
                        61024
                        61039
                        61040
                        85064
                        85065
                        85085
                        86000
                        86001
                        86002
                        87011
                        87012
                    ]
                    @ [ 85001..85004 ]
                    @ [ 85006..85023 ]
                    @ [ 85043..85048 ]
                    @ [ -40011 .. -40001 ]

                for code in codes do
                    match ErrorGuide.tryFind code with
                    | Some e ->
                        Expect.isFalse (System.String.IsNullOrWhiteSpace e.Meaning) ($"{code}")
                        Expect.isFalse (System.String.IsNullOrWhiteSpace e.Action) ($"{code}")
                    | None -> failwith $"{code} is missing"

            testCase "codes are unique"
            <| fun () ->
                let codes = ErrorGuide.all |> List.map (fun e -> e.Code)

                Expect.equal
                    (codes |> List.distinct |> List.length)
                    codes.Length
                    "codes |> List.distinct |> List.length"

            testProp
                "explain answers every integer without throwing"
                (Prop.forAll (ArbMap.defaults |> ArbMap.arbitrary<int>) (fun code ->
                    (ErrorGuide.explain code).StartsWith(string code)))

            testCase "the guide and the domain agree on which codes a token refresh fixes"
            <| fun () ->
                for e in ErrorGuide.all do
                    if Domain.classifyErrcode e.Code = Domain.TokenRejected then
                        Expect.isTrue e.Retry ($"{e.Code}")

        ]

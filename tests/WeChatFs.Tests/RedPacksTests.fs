module WeChatFs.Tests.RedPacksTests

open System
open Expecto
open WeChatFs.Tests.Helpers
open FsCheck
open FsCheck.FSharp
open WeChatFs.RedPacks

let private factsExample =
    [
        "appid", "wxd930ea5d5a258f4f"
        "mch_id", "10000100"
        "device_info", "1000"
        "body", "test"
        "nonce_str", "ibuaiVcKdpRxkhJA"
    ]

let private factsKey = "192006250b4c09247ec02edce69f6a2d"

let private fieldName =
    Gen.elements
        [
            "a"
            "B"
            "mch_id"
            "nonce_str"
            "re_openid"
            "total_amount"
            "wishing"
            "Z_z"
            "act_name"
        ]

let private fieldValue =
    Gen.elements [ ""; "1"; "test"; "红包"; "a b"; "x=y&z"; "100" ]

let private fieldsGen =
    Gen.zip fieldName fieldValue |> Gen.listOf |> Gen.map (List.distinctBy fst)

let private request =
    {
        MchId = MchId "1900000109"
        AuthorizerAppId = "wxsimoa00000000001"
        Recipient = OpenId "oUSER0001"
        AmountFen = 100L
        Wishing = "Happy new year"
        ActName = "New year"
        Remark = "Thanks"
        SendName = None
        SceneId = None
        RiskInfo = None
        ClientIp = None
    }


let tests =
    testList
        "RedPacks"
        [
            testCase "the MD5 signature matches the facts' worked example"
            <| fun () ->
                Expect.equal
                    (sign factsKey factsExample)
                    "9A0A8659F005D6984697E2CA0A9CF3B7"
                    "sign factsKey factsExample"

            testCase "the signature skips empty values and an existing sign, whatever the order"
            <| fun () ->
                let noisy = List.rev factsExample @ [ "sign", "ANYTHING"; "empty", "" ]

                Expect.equal (sign factsKey noisy) "9A0A8659F005D6984697E2CA0A9CF3B7" "sign factsKey noisy"

            testCase "the gateway's signer and the simulator's agree on any fields"
            <| fun () ->
                Prop.forAll (Arb.fromGen fieldsGen) (fun fields ->
                    sign factsKey fields = WeChatFs.Simulator.SimPay.md5Sign factsKey fields)
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

            testCase "a signed request verifies, and changing any signed value breaks it"
            <| fun () ->
                let gen =
                    fieldsGen |> Gen.filter (fun fs -> fs |> List.exists (fun (_, v) -> v <> ""))

                Prop.forAll (Arb.fromGen gen) (fun fields ->
                    let signed = fields @ [ "sign", sign factsKey fields ]
                    let name, value = fields |> List.find (fun (_, v) -> v <> "")

                    let tampered =
                        signed |> List.map (fun (k, v) -> if k = name then k, value + "x" else k, v)

                    verify factsKey signed
                    && not (verify factsKey tampered)
                    && not (verify "another-key" signed))
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(200), p)

            testCase "mch_billno is the mch_id, the Beijing date and ten digits: 28 characters"
            <| fun () ->
                let gen =
                    Gen.zip (Gen.choose (0, 99_999_999)) (Gen.choose (0, 100_000))
                    |> Gen.map (fun (mchTail, minutes) ->
                        $"19{mchTail:D8}", DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddMinutes(float minutes))

                Prop.forAll (Arb.fromGen gen) (fun (mch, now) ->
                    let (MchBillNo bill) = billNo (MchId mch) now "12345678901234567890"
                    let day = now.ToOffset(TimeSpan.FromHours 8.).ToString("yyyyMMdd")

                    bill.Length = 28
                    && bill = mch + day + "1234567890"
                    && bill |> Seq.forall Char.IsAsciiDigit)
                |> fun p -> Check.One(Config.QuickThrowOnFailure.WithMaxTest(100), p)

            testCase "the checks name the field: amount, lengths, scene_id"
            <| fun () ->
                Expect.isEmpty (check request "Demo Coffee") "check request 'Demo Coffee'"

                let fields r =
                    check r "Demo Coffee" |> List.map (fun e -> e.Field)

                Expect.equal
                    (fields { request with AmountFen = 99L })
                    ([ "amount_fen" ])
                    "fields { request with AmountFen = 99L }"

                Expect.equal
                    (fields { request with AmountFen = 20001L })
                    ([ "amount_fen" ])
                    "fields { request with AmountFen = 20001L }"

                Expect.isEmpty
                    (fields
                        { request with
                            AmountFen = 50L
                            SceneId = Some "PRODUCT_1"
                        })
                    "fields { request with AmountFen = 50L SceneId = Some 'PRODUCT_1' }"

                Expect.equal
                    (fields
                        { request with
                            SceneId = Some "PRODUCT_9"
                        })
                    ([ "scene_id" ])
                    "fields { request with SceneId = Some 'PRODUCT_9' }"

                Expect.equal
                    (fields
                        { request with
                            Wishing = String('w', 129)
                        })
                    ([ "wishing" ])
                    "fields { request with Wishing = String('w', 129) }"

                Expect.equal
                    (fields
                        { request with
                            ActName = String('a', 33)
                        })
                    ([ "act_name" ])
                    "fields { request with ActName = String('a', 33) }"

                Expect.equal (fields { request with Remark = "" }) ([ "remark" ]) "fields { request with Remark = '' }"

                Expect.equal
                    (fields
                        { request with
                            Recipient = OpenId(String('o', 33))
                        })
                    ([ "openid" ])
                    "fields { request with Recipient = OpenId(String('o', 33)) }"

                Expect.equal
                    (fields
                        { request with
                            ClientIp = Some "not-an-ip"
                        })
                    ([ "client_ip" ])
                    "fields { request with ClientIp = Some 'not-an-ip' }"

                Expect.equal
                    (check request (String('s', 33)) |> List.map (fun e -> e.Field))
                    ([ "send_name" ])
                    "check request (String('s', 33)) |> List.map (fun e -> e.Field)"

            testCase "sendredpack answers: SYSTEMERROR and unknown codes are undecided, known refusals are failures"
            <| fun () ->
                let answer code =
                    Map
                        [
                            "return_code", "SUCCESS"
                            "result_code", "FAIL"
                            "err_code", code
                            "err_code_des", "d"
                        ]

                Expect.equal
                    (sendOutcome (answer "SYSTEMERROR"))
                    (Unknown "err_code SYSTEMERROR: d")
                    "sendOutcome (answer 'SYSTEMERROR')"

                Expect.equal
                    (sendOutcome (answer "PROCESSING"))
                    (Unknown "err_code PROCESSING: d")
                    "sendOutcome (answer 'PROCESSING')"

                Expect.equal
                    (sendOutcome (answer "SOMETHING_NEW"))
                    (Unknown "err_code SOMETHING_NEW: d")
                    "sendOutcome (answer 'SOMETHING_NEW')"

                Expect.equal
                    (sendOutcome (answer "NOTENOUGH"))
                    (Refused("NOTENOUGH", "d"))
                    "sendOutcome (answer 'NOTENOUGH')"

                Expect.equal
                    (sendOutcome (
                        Map
                            [
                                "return_code", "SUCCESS"
                                "result_code", "SUCCESS"
                                "send_listid", "100000000020150520314766074200"
                            ]
                    ))
                    (Accepted "100000000020150520314766074200")
                    "sendOutcome ( Map [ 'return_code', 'SUCCESS' 'result_code', 'SUCCES..."

                Expect.equal
                    (queryOutcome
                        (set [ "NOT_FOUND" ])
                        (Map [ "return_code", "SUCCESS"; "result_code", "FAIL"; "err_code", "NOT_FOUND" ]))
                    NotFound
                    "queryOutcome (set [ 'NOT_FOUND' ]) (Map [ 'return_code', 'SUCCESS';..."

        ]

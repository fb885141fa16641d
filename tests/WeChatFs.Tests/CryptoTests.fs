/// WXBizMsgCrypt: known answers from the facts file and properties over generated keys and messages.
module WeChatFs.Tests.CryptoTests

open System
open System.Text
open Expecto
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Crypto
open WeChatFs.Tests.Helpers

let private keyOf text =
    match AesKey.create text with
    | Ok k -> k
    | Error e -> failwith $"{e}"

// Facts §2.6(a).
let private vectorKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
let private vectorAppId = "wx1111111111111111"

let private vectorPlain =
    "<xml><AppId><![CDATA[wx1111111111111111]]></AppId><CreateTime>1700000000</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@example]]></ComponentVerifyTicket></xml>"

let private vectorEncrypt =
    "4j/AuRx71kQlxVlzbpsMWA5nnlmiumZZZPhqjvBM/CRHcyyAVF6HuFedE7oF11AWqwIuCQVA0KlIisf1jzazGvc1xg2EAFGqTX0zn4vxdUVdIamaONuIaErCPhdMCKhHoBPEmxSqozlKf1b2+N4Ff9cHwbsy3ohCdGAus1B49oBPNIlo41PPJFurXJHvnxyw6e2BIQuX8fWiJEwIVuRYeaa/MN6KHmatJePzvv5kMtUyK30KCR3BeZ99SwbDmnRIu4tXkLBxuHN/6dZlqfRzqpSbEwxR+Ro3AFRzzo16JSVEFAZt7KTHsiJPFdUs+MHICm8S7PxJ3qMMkQPb74IzrRlshUYkKmsJk8GdWWB99Tq+fr8FbVo4zFfxyaTuzq95"

// Facts §2.6(b): an independent implementation's vector (wechatpy's test suite), same algorithm.
let private otherKey = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
let private otherId = "wx49f0ab532d5d035a"

let private alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/// Any 43-character key of letters and digits: the last character's two unused bits take every value.
let private keyText = Gen.arrayOfLength 43 (Gen.elements alnum) |> Gen.map String

let private message =
    ArbMap.defaults
    |> ArbMap.generate<NonNull<string>>
    |> Gen.map (fun (NonNull s) -> s)

let private sealedGen =
    gen {
        let! msg = message
        let! rnd = bytes 16
        let! ts = Gen.choose (1_600_000_000, 1_900_000_000) |> Gen.map string
        let! nonce = Gen.choose (1, 999_999_999) |> Gen.map string
        let key = keyOf vectorKey
        let encrypted = encrypt key "wxcomponent" rnd msg

        return
            msg,
            {
                Timestamp = ts
                Nonce = nonce
                MsgSignature = msgSignature "tok" ts nonce encrypted
                Encrypt = encrypted
            }
    }

let private opens (e: Envelope) =
    openEnvelope "tok" [ keyOf vectorKey ] "wxcomponent" e |> Result.map fst


let tests =
    testList
        "Crypto"
        [
            testCase "encrypting the facts' ticket push gives the known Encrypt and signatures"
            <| fun () ->
                let key = keyOf vectorKey

                let encrypted =
                    encrypt key vectorAppId (Encoding.ASCII.GetBytes "0123456789abcdef") vectorPlain

                Expect.equal encrypted vectorEncrypt "encrypted"

                Expect.equal
                    (msgSignature "sim_token" "1700000000" "123456789" encrypted)
                    "d06e952917cc88bf74f4bc628178a013fbc2cac2"
                    "msgSignature 'sim_token' '1700000000' '123456789' encrypted"

                Expect.equal
                    (plainSignature "sim_token" "1700000000" "123456789")
                    "0300d8244c57909159afd7c13aee435b3526b387"
                    "plainSignature 'sim_token' '1700000000' '123456789'"

            testCase "the facts' Encrypt opens to the known plaintext"
            <| fun () ->
                let envelope =
                    {
                        Timestamp = "1700000000"
                        Nonce = "123456789"
                        MsgSignature = "d06e952917cc88bf74f4bc628178a013fbc2cac2"
                        Encrypt = vectorEncrypt
                    }

                match openEnvelope "sim_token" [ keyOf vectorKey ] vectorAppId envelope with
                | Ok(plain, _) -> Expect.equal plain vectorPlain "plain"
                | Error e -> failwith $"{e}"

            testCase "sealing the other implementation's reply gives its known Encrypt and MsgSignature"
            <| fun () ->
                let reply =
                    String.concat
                        "\n"
                        [
                            "<xml>"
                            "<MsgType><![CDATA[text]]></MsgType>"
                            "<Content><![CDATA[test]]></Content>"
                            "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>"
                            "<ToUserName><![CDATA[messense]]></ToUserName>"
                            "<AgentID>1</AgentID>"
                            "<CreateTime>1411525903</CreateTime>"
                            "</xml>"
                        ]

                let sealedReply =
                    sealReply
                        "123456"
                        (keyOf otherKey)
                        otherId
                        (Encoding.ASCII.GetBytes "1234567890123456")
                        "1411525903"
                        "461056294"
                        reply

                Expect.equal
                    sealedReply.Encrypt
                    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
                    "sealedReply.Encrypt"

                Expect.equal
                    sealedReply.MsgSignature
                    "407518b7649e86ef23978113f92d27afa9296533"
                    "sealedReply.MsgSignature"

            testCase "the other implementation's encrypted message opens with its signature"
            <| fun () ->
                let envelope =
                    {
                        Timestamp = "1411525903"
                        Nonce = "461056294"
                        MsgSignature = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
                        Encrypt =
                            "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
                    }

                match openEnvelope "123456" [ keyOf otherKey ] otherId envelope with
                | Ok(plain, _) ->
                    Expect.stringContains plain "<Content><![CDATA[test]]></Content>" "plain"
                    Expect.stringContains plain "<FromUserName><![CDATA[messense]]></FromUserName>" "plain"
                | Error e -> failwith $"{e}"

                // One changed digit of the signature and nothing is opened.
                let forged =
                    { envelope with
                        MsgSignature = "74d92dfeb87ba7c714f89d98870ae5eb62dff26e"
                    }

                Expect.equal
                    (openEnvelope "123456" [ keyOf otherKey ] otherId forged |> Result.map ignore)
                    (Error SignatureMismatch)
                    "openEnvelope '123456' [ keyOf otherKey ] otherId forged |> Result.m..."

            testCase "the official plain-mode signature example holds"
            <| fun () ->
                Expect.equal
                    (plainSignature "AAAAA" "1714037059" "486452656")
                    "899cf89e464efb63f54ddac96b0a0a235f53aa78"
                    "plainSignature 'AAAAA' '1714037059' '486452656'"

            testProp
                "decrypt inverts encrypt for any key, random prefix and Unicode message"
                (Prop.forAll (Arb.fromGen (Gen.zip3 keyText (bytes 16) message)) (fun (k, rnd, msg) ->
                    let key = keyOf k
                    decrypt key "wxcomponent" (encrypt key "wxcomponent" rnd msg) = Ok msg))

            testCase "the empty message round-trips"
            <| fun () ->
                let key = keyOf vectorKey

                Expect.equal
                    (decrypt key "wx" (encrypt key "wx" (Array.zeroCreate 16) ""))
                    (Ok "")
                    "decrypt key 'wx' (encrypt key 'wx' (Array.zeroCreate 16) '')"

            testCase "keys whose last character has unused bits set are accepted"
            <| fun () ->
                // 'f' ends in bits 11111: its two unused bits are 1.
                let k = String('A', 42) + "f"
                let key = keyOf k
                Expect.equal ((AesKey.bytes key).Length) 32 "(AesKey.bytes key).Length"

                Expect.equal
                    (decrypt key "wx" (encrypt key "wx" (Array.zeroCreate 16) "hi"))
                    (Ok "hi")
                    "decrypt key 'wx' (encrypt key 'wx' (Array.zeroCreate 16) 'hi')"

            testCase "invalid keys are refused"
            <| fun () ->
                for bad in [ ""; String('A', 42); String('A', 44); String('A', 42) + "+"; null ] do
                    Expect.equal
                        (AesKey.create bad |> Result.map ignore)
                        (Error InvalidAesKey)
                        "AesKey.create bad |> Result.map ignore"

            testProp
                "any change to ciphertext, signature, timestamp or nonce is rejected"
                (let changes =
                    [
                        fun (e: Envelope) -> { e with Timestamp = e.Timestamp + "1" }
                        fun e -> { e with Nonce = e.Nonce + "1" }
                        fun e ->
                            { e with
                                MsgSignature =
                                    (if e.MsgSignature[0] = 'a' then "b" else "a") + e.MsgSignature.Substring 1
                            }
                        fun e ->
                            { e with
                                Encrypt = e.Encrypt.Substring 4
                            }
                        fun e -> { e with Encrypt = e.Encrypt + "AAAA" }
                        fun e ->
                            { e with
                                Encrypt = (if e.Encrypt[0] = 'A' then "B" else "A") + e.Encrypt.Substring 1
                            }
                    ]

                 Prop.forAll
                     (Arb.fromGen (Gen.zip sealedGen (Gen.choose (0, changes.Length - 1))))
                     (fun ((msg, e), i) -> opens e = Ok msg && (opens (changes[i] e) |> Result.isError)))

            testProp
                "a message for another appid is rejected"
                (Prop.forAll (Arb.fromGen sealedGen) (fun (_, e) ->
                    match openEnvelope "tok" [ keyOf vectorKey ] "wxother" e with
                    | Error(AppIdMismatch "wxcomponent") -> true
                    | _ -> false))

            testProp
                "any input is refused by decrypt and openEnvelope as an error, never an exception"
                (let anyText = ArbMap.defaults |> ArbMap.generate<string>

                 let blocks =
                     Gen.choose (1, 8)
                     |> Gen.bind (fun n -> bytes (16 * n))
                     |> Gen.map Convert.ToBase64String

                 let inputs = Gen.oneof [ anyText; blocks ]

                 Prop.forAll (Arb.fromGen (Gen.zip inputs anyText)) (fun (encrypted, signature) ->
                     let key = keyOf vectorKey
                     let decrypted = decrypt key "wx" encrypted

                     let forged =
                         openEnvelope
                             "tok"
                             [ key ]
                             "wx"
                             {
                                 Timestamp = signature
                                 Nonce = null
                                 MsgSignature = signature
                                 Encrypt = encrypted
                             }

                     let signed =
                         openEnvelope
                             "tok"
                             [ key ]
                             "wx"
                             {
                                 Timestamp = "1"
                                 Nonce = "2"
                                 MsgSignature = msgSignature "tok" "1" "2" encrypted
                                 Encrypt = encrypted
                             }

                     // Random bytes never decrypt to a well-formed message for appid "wx", and a random
                     // signature never matches.
                     Result.isError decrypted && Result.isError forged && Result.isError signed))

            testCase "after a key rotation messages under either key open, and report the key that worked"
            <| fun () ->
                let current = keyOf (String('B', 43))
                let previous = keyOf vectorKey

                for key in [ current; previous ] do
                    let encrypted = encrypt key "wx" (Array.zeroCreate 16) "rotated"

                    let e =
                        {
                            Timestamp = "1"
                            Nonce = "2"
                            MsgSignature = msgSignature "tok" "1" "2" encrypted
                            Encrypt = encrypted
                        }

                    match openEnvelope "tok" [ current; previous ] "wx" e with
                    | Ok(msg, used) ->
                        Expect.equal msg "rotated" "msg"
                        Expect.equal (AesKey.bytes used) (AesKey.bytes key) "AesKey.bytes used"
                    | Error err -> failwith $"{err}"

            testCase "a sealed reply carries a signature over its own fields"
            <| fun () ->
                let key = keyOf vectorKey

                let r =
                    sealReply "tok" key "wx" (Array.zeroCreate 16) "1700000000" "42" "<xml>reply</xml>"

                Expect.equal r.MsgSignature (msgSignature "tok" r.TimeStamp r.Nonce r.Encrypt) "r.MsgSignature"
                Expect.equal (decrypt key "wx" r.Encrypt) (Ok "<xml>reply</xml>") "decrypt key 'wx' r.Encrypt"

                Expect.stringContains
                    (replyXml r)
                    ("<MsgSignature><![CDATA[" + r.MsgSignature + "]]></MsgSignature>")
                    "replyXml r"

        ]

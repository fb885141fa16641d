/// Opening a push (Pushes.openPush), the first step of both push URLs' workflows: the status each
/// kind of bad push is refused with, a good push opened with whichever key sealed it, and the fast
/// way (the body's bytes read in place) answering what the reader's way answers.
module WeChatFs.Tests.PushesTests

open System.Text
open FsCheck
open FsCheck.FSharp
open Expecto
open WeChatFs
open WeChatFs.Tests.Helpers

let private keyOf text =
    match Crypto.AesKey.create text with
    | Ok k -> k
    | Error e -> failwith $"{e}"

let private current = keyOf "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
let private previous = keyOf "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

let private keys: Pushes.PushKeys =
    {
        Token = "tok"
        AesKeys = [ current; previous ]
        ComponentAppId = Domain.ComponentAppId "wxcomponent"
    }

/// A push as WeChat sends it: the sealed envelope's Encrypt in the body, its signature in the query.
let private pushOf (key: Crypto.AesKey) (appId: string) (plain: string) : Pushes.SignedPush =
    let sealedPush =
        Crypto.sealReply "tok" key appId (Array.zeroCreate 16) "1700000000" "42" plain

    {
        Timestamp = sealedPush.TimeStamp
        Nonce = sealedPush.Nonce
        MsgSignature = sealedPush.MsgSignature
        Body =
            Encoding.UTF8.GetBytes(
                $"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{sealedPush.Encrypt}]]></Encrypt></xml>"
            )
    }

/// Pushes as WeChat sends them and near misses: the Encrypt field in other shapes, broken or doubled,
/// other outer XML, other keys and appids, signatures over what was sent or forged.
let private nearPushes =
    gen {
        let! plain = Gen.oneof [ xmlSafeString; Gen.constant "<xml>hi</xml>" ]

        let! key =
            Gen.elements [ current; previous; keyOf "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJ" ]

        let! appId = Gen.elements [ "wxcomponent"; "wxcomponent"; "wxother" ]

        let e =
            (Crypto.sealReply "tok" key appId (Array.zeroCreate 16) "1700000000" "42" plain).Encrypt

        let spaced = e.Insert(8, "\n ")
        let cut = e.Substring 4
        let foreign = e.Replace('A', '-')

        let! encrypt =
            Gen.elements
                [
                    $"<Encrypt><![CDATA[{e}]]></Encrypt>"
                    $"<Encrypt><![CDATA[{e}]]></Encrypt>"
                    $"<Encrypt>{e}</Encrypt>"
                    $"<Encrypt><![CDATA[{spaced}]]></Encrypt>"
                    $"<Encrypt><![CDATA[{cut}]]></Encrypt>"
                    $"<Encrypt><![CDATA[{e}=]]></Encrypt>"
                    $"<Encrypt><![CDATA[{foreign}]]></Encrypt>"
                    "<Encrypt><![CDATA[ ]]></Encrypt>"
                    "<Encrypt/>"
                    $"<Encrypt><![CDATA[x]]></Encrypt><Encrypt><![CDATA[{e}]]></Encrypt>"
                    $"<Encrypt><![CDATA[{e}]]></Encrypt><Encrypt>  </Encrypt>"
                    $"<Encrypt>{e}&#x41;</Encrypt>"
                    ""
                ]

        let! before =
            Gen.elements
                [
                    "<ToUserName><![CDATA[gh_1]]></ToUserName>"
                    "<AppId><![CDATA[wxcomponent]]></AppId>"
                    ""
                    "<ToUserName><![CDATA[公众号]]></ToUserName>"
                    "<ToUserName><![CDATA[a\r\nb]]></ToUserName>"
                    "<ToUserName attr=\"1\">gh_1</ToUserName>"
                ]

        let! outer =
            Gen.elements
                [
                    fun s -> $"<xml>{s}</xml>"
                    fun s -> $"<xml>{s}</xml>"
                    fun s -> $"<?xml version=\"1.0\"?><xml>{s}</xml>"
                    fun s -> $" \n<xml>{s}</xml>\n"
                    fun s -> $"<xml>{s}<!-- c --></xml>"
                    fun s -> $"<xml>{s}"
                    id
                ]

        let text = outer (before + encrypt)
        let! broken = Gen.frequency [ 6, Gen.constant false; 1, Gen.constant true ]

        // Bytes that are not UTF-8, which both ways decode to U+FFFD.
        let body =
            let bytes = Encoding.UTF8.GetBytes text

            if broken then
                Array.concat
                    [
                        bytes[.. bytes.Length / 2]
                        [| 0xFFuy; 0xC3uy |]
                        bytes[bytes.Length / 2 + 1 ..]
                    ]
            else
                bytes

        // Signed over what the reader reads as Encrypt, so that the decryption's errors are reached too.
        let signed =
            match Wire.encryptedPart (Encoding.UTF8.GetString body) with
            | Ok read -> Crypto.msgSignature "tok" "1700000000" "42" read
            | Error _ -> Crypto.msgSignature "tok" "1700000000" "42" e

        let! signature =
            Gen.elements [ signed; signed; signed.ToUpperInvariant(); "0" + signed.Substring 1; "" ]

        return
            ({
                Timestamp = "1700000000"
                Nonce = "42"
                MsgSignature = signature
                Body = body
            }
            : Pushes.SignedPush)
    }

let tests =
    testList
        "Pushes"
        [
            testCase "a push sealed with the current or the previous key opens, with that key"
            <| fun () ->
                for key in [ current; previous ] do
                    match Pushes.openPush keys (pushOf key "wxcomponent" "<xml>hi</xml>") with
                    | Ok(plain, used) ->
                        Expect.equal plain "<xml>hi</xml>" "plain"
                        Expect.equal (Crypto.AesKey.bytes used) (Crypto.AesKey.bytes key) "the key it was opened with"
                    | Error e -> failwith $"{e}"

            testProp "a changed signature is refused with 401 before anything is decrypted"
            <| fun (NonEmptyString extra) ->
                let push = pushOf current "wxcomponent" "<xml>hi</xml>"

                match
                    Pushes.openPush
                        keys
                        { push with
                            MsgSignature = push.MsgSignature + extra
                        }
                with
                | Error(status, _) -> Expect.equal status 401 "status"
                | Ok _ -> failwith "a forged push opened"

            testCase "a body that is not the outer XML, or a push for another component, is refused with 400"
            <| fun () ->
                let push = pushOf current "wxcomponent" "<xml>hi</xml>"

                match
                    Pushes.openPush
                        keys
                        { push with
                            Body = Encoding.UTF8.GetBytes "not xml"
                        }
                with
                | Error(status, _) -> Expect.equal status 400 "not XML"
                | Ok _ -> failwith "opened"

                match Pushes.openPush keys (pushOf current "wxother" "<xml>hi</xml>") with
                | Error(status, _) -> Expect.equal status 400 "another appid"
                | Ok _ -> failwith "opened"

            testProp
                "the body read in place answers what the reader's way answers, for pushes and near misses"
                (Prop.forAll (Arb.fromGen nearPushes) (fun push ->
                    Pushes.openPush keys push = Pushes.openPushText keys push))

            testCase "a push opens the same either way, with or without a body the fast path reads"
            <| fun () ->
                let push = pushOf current "wxcomponent" "<xml>你好</xml>"

                let spaced =
                    { push with
                        Body = Encoding.UTF8.GetBytes("<!-- c -->" + Encoding.UTF8.GetString push.Body)
                    }

                for p in [ push; spaced ] do
                    match Pushes.openPush keys p, Pushes.openPushText keys p with
                    | Ok(plain, _), Ok(text, _) ->
                        Expect.equal plain "<xml>你好</xml>" "plain"
                        Expect.equal text plain "the reader's way"
                    | other -> failwith $"{other}"
        ]

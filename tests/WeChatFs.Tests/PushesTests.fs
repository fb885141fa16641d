/// Opening a push (Pushes.openPush), the first step of both push URLs' workflows: the status each
/// kind of bad push is refused with, and a good push opened with whichever key sealed it.
module WeChatFs.Tests.PushesTests

open System.Text
open FsCheck
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
        ]

/// Sealing at rest (AES-GCM) and the signed authorization state.
module WeChatFs.Tests.SecretsTests

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open WeChatFs
open WeChatFs.Secrets
open WeChatFs.Tests.Helpers

let private key n =
    match MasterKey.ofBytes (Array.create 32 (byte n)) with
    | Ok k -> k
    | Error e -> failwith $"{e}"

let private text =
    ArbMap.defaults
    |> ArbMap.generate<NonNull<string>>
    |> Gen.map (fun (NonNull s) -> s)

let private now = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)


let tests =
    testList
        "Secrets"
        [
            testProp
                "sealed values open again, and only with the same key"
                (Prop.forAll (Arb.fromGen (Gen.zip text (bytes 12))) (fun (plain, nonce) ->
                    let sealedText = seal (key 1) nonce plain

                    unseal (key 1) sealedText = Ok plain
                    && unseal (key 2) sealedText = Error Tampered))

            testProp
                "a sealed value never contains its plaintext"
                (let longText = text |> Gen.filter (fun s -> s.Length >= 8)

                 Prop.forAll (Arb.fromGen (Gen.zip longText (bytes 12))) (fun (plain, nonce) ->
                     not ((seal (key 1) nonce plain).Contains plain)))

            testProp
                "flipping any byte of a sealed value is detected"
                (Prop.forAll
                    (Arb.fromGen (Gen.zip3 text (bytes 12) (Gen.choose (0, 10_000))))
                    (fun (plain, nonce, at) ->
                        let sealedText = seal (key 1) nonce plain
                        let raw = Convert.FromBase64String(sealedText.Substring 3)
                        let i = at % raw.Length
                        raw[i] <- raw[i] ^^^ 0x01uy
                        unseal (key 1) ("v1:" + Convert.ToBase64String raw) = Error Tampered))

            testCase "values that were never sealed are told apart"
            <| fun () ->
                Expect.equal
                    (unseal (key 1) "refreshtoken@@@plain")
                    (Error NotSealed)
                    "unseal (key 1) 'refreshtoken@@@plain'"

                Expect.equal (unseal (key 1) "v1:not base64!") (Error Tampered) "unseal (key 1) 'v1:not base64!'"

            testCase "master keys must be base64 of 32 bytes"
            <| fun () ->
                Expect.isTrue
                    (MasterKey.ofBase64 (Convert.ToBase64String(Array.zeroCreate 32)) |> Result.isOk)
                    "MasterKey.ofBase64 (Convert.ToBase64String(Array.zeroCreate 32)) |>..."

                Expect.isTrue
                    (MasterKey.ofBase64 (Convert.ToBase64String(Array.zeroCreate 16))
                     |> Result.isError)
                    "MasterKey.ofBase64 (Convert.ToBase64String(Array.zeroCreate 16)) |>..."

                Expect.isTrue (MasterKey.ofBase64 "%%%" |> Result.isError) "MasterKey.ofBase64 '%%%' |> Result.isError"

            testProp
                "an authorization state carries its tenant until it expires"
                (Prop.forAll (Arb.fromGen (Gen.zip text (bytes 9))) (fun (tenant, nonce) ->
                    let k = deriveKey (key 1) "state"
                    let state = AuthState.sign k (now.AddHours 1.) nonce tenant

                    AuthState.verify k now state = Ok tenant
                    && AuthState.verify k (now.AddHours 2.) state = Error AuthState.Expired
                    && AuthState.verify (deriveKey (key 1) "other") now state = Error AuthState.BadSignature))

            testCase "a state whose tenant was swapped is refused"
            <| fun () ->
                let k = deriveKey (key 1) "state"
                let state = AuthState.sign k (now.AddHours 1.) (Array.zeroCreate 9) "shop-a"
                let other = AuthState.sign k (now.AddHours 1.) (Array.zeroCreate 9) "shop-b"
                let forged = other.Split('.')[0] + state.Substring(state.IndexOf '.')

                Expect.equal
                    (AuthState.verify k now forged)
                    (Error AuthState.BadSignature)
                    "AuthState.verify k now forged"

                Expect.equal
                    (AuthState.verify k now "garbage")
                    (Error AuthState.Malformed)
                    "AuthState.verify k now 'garbage'"

                Expect.equal (AuthState.verify k now null) (Error AuthState.Malformed) "AuthState.verify k now null"

            testCase "a state whose signature is spelled another way with the same bytes is refused"
            <| fun () ->
                let k = deriveKey (key 1) "state"
                let state = AuthState.sign k (now.AddHours 1.) (Array.zeroCreate 9) "shop-a"
                // 32 bytes take 43 characters: the last one's two low bits are dropped when decoding.
                let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                let last = alphabet.IndexOf state[state.Length - 1]
                let respelled = state.Substring(0, state.Length - 1) + string alphabet[last ^^^ 1]
                Expect.equal (AuthState.verify k now state) (Ok "shop-a") "as signed"

                Expect.equal
                    (AuthState.verify k now respelled)
                    (Error AuthState.BadSignature)
                    "the same signature bytes, spelled otherwise"

        ]

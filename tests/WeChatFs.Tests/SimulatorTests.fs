/// The simulator's own crypto agrees with the facts' vector (so it cannot merely mirror the gateway's),
/// and its token rules are the facts'.
module WeChatFs.Tests.SimulatorTests

open System
open System.Text
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Simulator
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState


let tests =
    testSequencedGroup "Simulator"
    <| testList
        "Simulator"
        [
            testCase "the simulator's crypto reproduces the facts' vector"
            <| fun () ->
                let key = SimCrypto.aesKey "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

                let plain =
                    "<xml><AppId><![CDATA[wx1111111111111111]]></AppId><CreateTime>1700000000</CreateTime><InfoType><![CDATA[component_verify_ticket]]></InfoType><ComponentVerifyTicket><![CDATA[ticket@@@example]]></ComponentVerifyTicket></xml>"

                let encrypted =
                    SimCrypto.encrypt key "wx1111111111111111" (Encoding.ASCII.GetBytes "0123456789abcdef") plain

                Expect.stringStarts encrypted "4j/AuRx71kQlxVlzbpsMWA5nnlmiumZZZPhqjvBM" "encrypted"

                Expect.equal
                    (SimCrypto.signature "sim_token" "1700000000" "123456789" encrypted)
                    "d06e952917cc88bf74f4bc628178a013fbc2cac2"
                    "SimCrypto.signature 'sim_token' '1700000000' '123456789' encrypted"

                Expect.equal
                    (SimCrypto.decrypt key encrypted)
                    (Some(plain, "wx1111111111111111"))
                    "SimCrypto.decrypt key encrypted"

            testCase "a replaced token works five more minutes, an expired one answers 42001"
            <| fun () ->
                let now = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

                let token =
                    {
                        Value = "t"
                        IssuedAt = now
                        ExpiresAt = now.AddSeconds 7200.
                        ReplacedAt = Some(now.AddMinutes 10.)
                    }

                Expect.equal
                    (checkToken (now.AddMinutes 14.) (Some token))
                    (Ok())
                    "checkToken (now.AddMinutes 14.) (Some token)"

                Expect.equal
                    (checkToken (now.AddMinutes 15.) (Some token))
                    (Error 40001)
                    "checkToken (now.AddMinutes 15.) (Some token)"

                Expect.equal
                    (checkToken (now.AddHours 2.) (Some { token with ReplacedAt = None }))
                    (Error 42001)
                    "checkToken (now.AddHours 2.) (Some { token with ReplacedAt = None })"

                Expect.equal (checkToken now None) (Error 40001) "checkToken now None"

            testCase "tickets expire after 12 hours and unknown ones are invalid"
            <| fun () ->
                let state = SimState(SimulatorOptions.defaults)
                let o = SimulatorOptions.defaults
                let ticket = state.IssueTicket()

                Expect.equal
                    (state.ComponentToken(o.ComponentAppId, o.ComponentAppSecret, "ticket@@@unknown")
                     |> Result.map ignore)
                    (Error 61006)
                    "state.ComponentToken(o.ComponentAppId, o.ComponentAppSecret, 'ticke..."

                Expect.equal
                    (state.ComponentToken(o.ComponentAppId, "wrong", ticket) |> Result.map ignore)
                    (Error 40125)
                    "state.ComponentToken(o.ComponentAppId, 'wrong', ticket) |> Result.m..."

                Expect.equal
                    (state.ComponentToken("wxother", o.ComponentAppSecret, ticket)
                     |> Result.map ignore)
                    (Error 61011)
                    "state.ComponentToken('wxother', o.ComponentAppSecret, ticket) |> Re..."

                Expect.isTrue
                    (state.ComponentToken(o.ComponentAppId, o.ComponentAppSecret, ticket)
                     |> Result.isOk)
                    "state.ComponentToken(o.ComponentAppId, o.ComponentAppSecret, ticket..."

                state.Advance(TimeSpan.FromHours 12.)

                Expect.equal
                    (state.ComponentToken(o.ComponentAppId, o.ComponentAppSecret, ticket)
                     |> Result.map ignore)
                    (Error 61005)
                    "state.ComponentToken(o.ComponentAppId, o.ComponentAppSecret, ticket..."

            testCase "pre-auth codes are single use and re-authorization replaces the refresh token"
            <| fun () ->
                let state = SimState(SimulatorOptions.defaults)
                let code, _ = state.CreatePreAuthCode()

                match state.Confirm(code, "wxsimoa00000000001", [ 1 ]) with
                | Ok(_, update) -> Expect.isFalse update "update"
                | Error e -> failwith e

                Expect.equal
                    (state.CheckPreAuthCode code)
                    (Error "this pre_auth_code has already been used")
                    "state.CheckPreAuthCode code"

                let first = (state.Authorization "wxsimoa00000000001").Value.RefreshToken
                let again, _ = state.CreatePreAuthCode()

                match state.Confirm(again, "wxsimoa00000000001", [ 1; 15 ]) with
                | Ok(_, update) -> Expect.isTrue update "update"
                | Error e -> failwith e

                Expect.equal
                    (state.AuthorizerToken("wxsimoa00000000001", first) |> Result.map ignore)
                    (Error 61023)
                    "state.AuthorizerToken('wxsimoa00000000001', first) |> Result.map ig..."

        ]

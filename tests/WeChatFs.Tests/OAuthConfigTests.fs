/// The OAuth settings: funcKey routes and verification files from configuration, and every bad value named by its key.
module WeChatFs.Tests.OAuthConfigTests

open System
open Microsoft.Extensions.Configuration
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.OAuth

let private load (pairs: (string * string) list) =
    ConfigurationBuilder()
        .AddInMemoryCollection(pairs |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)))
        .Build()
    |> OAuthConfig.load


let tests =
    testList
        "OAuthConfig"
        [
            testCase "routes and verification files come from configuration, with a 30-minute wxTkId by default"
            <| fun () ->
                match
                    load
                        [
                            "WeChatFs:OAuth:FuncKeys:card:TargetUrl", "https://shop.example.com/card"
                            "WeChatFs:OAuth:FuncKeys:card:Scope", "snsapi_userinfo"
                            "WeChatFs:OAuth:FuncKeys:card:Tenant", "t1"
                            "WeChatFs:OAuth:FuncKeys:home:TargetUrl", "https://shop.example.com/"
                            "WeChatFs:VerificationFiles:MP_verify_x1.txt", "x1"
                        ]
                with
                | Ok o ->
                    Expect.equal o.TrackingTokenLifetime (TimeSpan.FromMinutes 30.) "o.TrackingTokenLifetime"
                    let card = o.FuncKeys |> List.find (fun r -> r.FuncKey = "card")
                    Expect.equal card.Scope SnsapiUserinfo "card.Scope"
                    Expect.equal card.Tenant (Some(Domain.TenantId "t1")) "card.Tenant"
                    let home = o.FuncKeys |> List.find (fun r -> r.FuncKey = "home")
                    Expect.equal home.Scope SnsapiBase "home.Scope"
                    Expect.equal o.VerificationFiles ([ "MP_verify_x1.txt", "x1" ]) "o.VerificationFiles"
                | Error e -> failwith $"{e}"

            testCase "every bad OAuth value is reported at once, naming the key"
            <| fun () ->
                match
                    load
                        [
                            "WeChatFs:OAuth:TrackingTokenLifetime", "soon"
                            "WeChatFs:OAuth:FuncKeys:card:TargetUrl", "not a url"
                            "WeChatFs:OAuth:FuncKeys:home:TargetUrl", "https://shop.example.com/"
                            "WeChatFs:OAuth:FuncKeys:home:Scope", "snsapi_login"
                            "WeChatFs:VerificationFiles:verify.html", "x"
                        ]
                with
                | Ok _ -> failwith "a bad configuration was accepted"
                | Error errors ->
                    let keys = errors |> List.map (fun e -> e.Key)
                    Expect.contains keys "WeChatFs:OAuth:TrackingTokenLifetime" "keys"
                    Expect.contains keys "WeChatFs:OAuth:FuncKeys:card:TargetUrl" "keys"
                    Expect.contains keys "WeChatFs:OAuth:FuncKeys:home:Scope" "keys"
                    Expect.contains keys "WeChatFs:VerificationFiles:verify.html" "keys"
                    Expect.equal errors.Length 4 "errors.Length"

        ]

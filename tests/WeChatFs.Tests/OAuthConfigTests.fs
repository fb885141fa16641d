/// The OAuth settings: funcKey routes and verification files from configuration, and every bad value named by its key.
module WeChatFs.Tests.OAuthConfigTests

open System
open Microsoft.Extensions.Configuration
open Xunit
open WeChatFs
open WeChatFs.OAuth

let private load (pairs: (string * string) list) =
    ConfigurationBuilder()
        .AddInMemoryCollection(pairs |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)))
        .Build()
    |> OAuthConfig.load

[<Fact>]
let ``routes and verification files come from configuration, with a 30-minute wxTkId by default`` () =
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
        Assert.Equal(TimeSpan.FromMinutes 30., o.TrackingTokenLifetime)
        let card = o.FuncKeys |> List.find (fun r -> r.FuncKey = "card")
        Assert.Equal(SnsapiUserinfo, card.Scope)
        Assert.Equal(Some(Domain.TenantId "t1"), card.Tenant)
        let home = o.FuncKeys |> List.find (fun r -> r.FuncKey = "home")
        Assert.Equal(SnsapiBase, home.Scope)
        Assert.Equal<(string * string) list>([ "MP_verify_x1.txt", "x1" ], o.VerificationFiles)
    | Error e -> failwith $"{e}"

[<Fact>]
let ``every bad OAuth value is reported at once, naming the key`` () =
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
        Assert.Contains("WeChatFs:OAuth:TrackingTokenLifetime", keys)
        Assert.Contains("WeChatFs:OAuth:FuncKeys:card:TargetUrl", keys)
        Assert.Contains("WeChatFs:OAuth:FuncKeys:home:Scope", keys)
        Assert.Contains("WeChatFs:VerificationFiles:verify.html", keys)
        Assert.Equal(4, errors.Length)

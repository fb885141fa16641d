/// WeChatFsOptions, the C# options overload's properties: each lands on its documented key and is
/// validated by Config.load, with check-config's messages.
module WeChatFs.Tests.HostingOptionsTests

open System
open Expecto
open Microsoft.Extensions.Configuration
open WeChatFs
open WeChatFs.Tests.Harness

let private valid () =
    WeChatFsOptions(
        ComponentAppId = componentAppId,
        ComponentAppSecret = appSecret,
        Token = token,
        EncodingAesKey = encodingAesKey
    )

let private load (options: WeChatFsOptions) =
    ConfigurationBuilder().AddInMemoryCollection(options.ToConfiguration()).Build()
    |> Config.load

let tests =
    testList
        "HostingOptions"
        [
            test "the four credentials are enough; every property reaches its key" {
                let options = valid ()
                options.CheckInterval <- Nullable(TimeSpan.FromMilliseconds 200.)
                options.RefreshLease <- Nullable(TimeSpan.FromSeconds 5.)
                options.WebhookMaxAttempts <- Nullable 4
                options.WebhookUrl <- "http://127.0.0.1:9/hook"
                options.WebhookTenantUrls["shop-1"] <- "http://127.0.0.1:9/shop-1"
                options.ReleaseTestEnabled <- Nullable false
                options.StorageProvider <- "sqlite"
                options.AdminApiKey <- "key"
                Expect.isEmpty (WeChatFsConfiguration.Check options) "valid"

                match load options with
                | Error e -> failtest $"%A{e}"
                | Ok o ->
                    Expect.equal o.CheckInterval (TimeSpan.FromMilliseconds 200.) "CheckInterval"
                    Expect.equal o.RefreshLease (TimeSpan.FromSeconds 5.) "RefreshLease"
                    Expect.equal o.Webhooks.MaxAttempts 4 "MaxAttempts"
                    Expect.equal (o.Webhooks.Url |> Option.map string) (Some "http://127.0.0.1:9/hook") "Url"
                    Expect.isTrue (o.Webhooks.TenantUrls.ContainsKey "shop-1") "tenant URL"
                    Expect.isFalse o.ReleaseResponder "ReleaseTest:Enabled"
                    Expect.equal o.AdminApiKey (Some "key") "Admin:ApiKey"
            }

            test "wrong options give check-config's messages, every problem at once" {
                let options = WeChatFsOptions(EncodingAesKey = "short")
                options.Settings["Storage:Provider"] <- "oracle"
                let problems = WeChatFsConfiguration.Check options |> List.ofSeq

                let fromConfiguration =
                    ConfigurationBuilder()
                        .AddInMemoryCollection(
                            dict
                                [
                                    "WeChatFs:Component:EncodingAesKey", "short"
                                    "WeChatFs:Storage:Provider", "oracle"
                                ]
                        )
                        .Build()
                    |> WeChatFsConfiguration.Check
                    |> List.ofSeq

                Expect.equal problems fromConfiguration "the same messages as the configuration overload"

                Expect.contains
                    problems
                    "WeChatFs:Component:AppId: is not set. Fix: set the platform's AppID (第三方平台 appid), e.g. WeChatFs__Component__AppId"
                    "AppId"

                Expect.exists problems (fun p -> p.StartsWith "WeChatFs:Component:EncodingAesKey") "EncodingAesKey"
                Expect.exists problems (fun p -> p.StartsWith "WeChatFs:Storage:Provider") "Storage:Provider"
            }

            test "a property wins over the same key in Settings" {
                let options = valid ()
                options.Settings["Component:AppId"] <- "wxother"

                match load options with
                | Ok o -> Expect.equal o.ComponentAppId (Domain.ComponentAppId componentAppId) "the property"
                | Error e -> failtest $"%A{e}"
            }
        ]

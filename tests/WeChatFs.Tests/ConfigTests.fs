module WeChatFs.Tests.ConfigTests

open System
open Microsoft.Extensions.Configuration
open Xunit
open WeChatFs

let private load (pairs: (string * string) list) =
    ConfigurationBuilder()
        .AddInMemoryCollection(pairs |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)))
        .Build()
    |> Config.load

let private valid =
    [
        "WeChatFs:Component:AppId", "wxcomponent"
        "WeChatFs:Component:AppSecret", "secret"
        "WeChatFs:Component:Token", "token"
        "WeChatFs:Component:EncodingAesKey", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
    ]

[<Fact>]
let ``a minimal configuration gets the documented defaults`` () =
    match load valid with
    | Ok o ->
        Assert.Equal("https://api.weixin.qq.com/", string o.ApiBaseUrl)
        Assert.Equal("sqlite", o.StorageProvider)
        Assert.Equal("Data Source=data/wechatfs.db", o.ConnectionString)
        Assert.Equal("data", o.DataFolder)
        Assert.Equal(TimeSpan.FromMinutes 10., o.TokenPolicy.RefreshMargin)
        Assert.Equal(TimeSpan.FromSeconds 3., o.Webhooks.ReplyTimeout)
        Assert.Equal(TimeSpan.FromDays 7., o.Webhooks.DeliveredRetention)
        Assert.Equal(TimeSpan.FromDays 90., o.EventRetention)
        Assert.Equal(None, o.AdminApiKey)
        Assert.True o.ReleaseResponder
    | Error e -> failwith $"{e}"

[<Fact>]
let ``every bad value is reported at once, naming the key and the fix`` () =
    match
        load
            [
                "WeChatFs:Component:EncodingAesKey", "short"
                "WeChatFs:Storage:Provider", "mysql"
                "WeChatFs:WeChat:ApiBaseUrl", "not a url"
                "WeChatFs:Secrets:MasterKey", "AAAA"
            ]
    with
    | Ok _ -> failwith "accepted"
    | Error errors ->
        let keys = errors |> List.map (fun e -> e.Key) |> Set.ofList

        for k in
            [
                "WeChatFs:Component:AppId"
                "WeChatFs:Component:AppSecret"
                "WeChatFs:Component:Token"
                "WeChatFs:Component:EncodingAesKey"
                "WeChatFs:Storage:Provider"
                "WeChatFs:WeChat:ApiBaseUrl"
                "WeChatFs:Secrets:MasterKey"
            ] do
            Assert.Contains(k, keys)

        Assert.All(errors, fun e -> Assert.False(String.IsNullOrWhiteSpace e.Fix))

[<Fact>]
let ``postgres needs a connection string and tenants may have their own webhook`` () =
    match load (valid @ [ "WeChatFs:Storage:Provider", "postgres" ]) with
    | Error [ e ] -> Assert.Equal("WeChatFs:Storage:ConnectionString", e.Key)
    | other -> failwith $"{other}"

    match
        load (
            valid
            @ [
                "WeChatFs:Webhooks:Url", "https://hooks.example/a"
                "WeChatFs:Webhooks:Tenants:shop-1:Url", "https://hooks.example/shop-1"
            ]
        )
    with
    | Ok o -> Assert.Equal("https://hooks.example/shop-1", string (o.Webhooks.TenantUrls |> Map.find "shop-1"))
    | Error e -> failwith $"{e}"

[<Fact>]
let ``an event retention under a day is refused, a longer one is taken`` () =
    match load (valid @ [ "WeChatFs:Events:Retention", "12:00:00" ]) with
    | Ok _ -> failwith "accepted"
    | Error errors -> Assert.Contains(errors, fun e -> e.Key = "WeChatFs:Events:Retention")

    match load (valid @ [ "WeChatFs:Events:Retention", "30.00:00:00" ]) with
    | Ok o -> Assert.Equal(TimeSpan.FromDays 30., o.EventRetention)
    | Error e -> failwith $"{e}"

[<Fact>]
let ``a delivered-message retention shorter than WeChat's retries is refused`` () =
    match load (valid @ [ "WeChatFs:Webhooks:DeliveredRetention", "00:05:00" ]) with
    | Ok _ -> failwith "accepted"
    | Error errors -> Assert.Contains(errors, fun e -> e.Key = "WeChatFs:Webhooks:DeliveredRetention")

[<Fact>]
let ``the hardening limits have safe defaults and bad values name their keys`` () =
    match load valid with
    | Ok o ->
        Assert.Equal(10L * 1024L * 1024L, o.Hardening.ProxyMaxBodyBytes)
        Assert.False o.Hardening.AllowUnsignedTenant
        Assert.Equal(10, o.Hardening.RefusalLogsPerMinute)
        Assert.Equal(TimeSpan.FromMinutes 1., o.Hardening.TicketPushRequestInterval)
    | Error e -> failwith $"{e}"

    match
        load (
            valid
            @ [
                "WeChatFs:Proxy:MaxBodyBytes", "ten megabytes"
                "WeChatFs:Authorization:AllowUnsignedTenant", "yes"
                "WeChatFs:Logging:RefusalLogsPerMinute", "0"
                "WeChatFs:Component:TicketPushRequestInterval", "00:00:00.100"
            ]
        )
    with
    | Ok _ -> failwith "accepted"
    | Error errors ->
        let keys = errors |> List.map (fun e -> e.Key) |> Set.ofList

        for k in
            [
                "WeChatFs:Proxy:MaxBodyBytes"
                "WeChatFs:Authorization:AllowUnsignedTenant"
                "WeChatFs:Logging:RefusalLogsPerMinute"
                "WeChatFs:Component:TicketPushRequestInterval"
            ] do
            Assert.Contains(k, keys)

    match
        load (
            valid
            @ [
                "WeChatFs:Authorization:AllowUnsignedTenant", "True"
                "WeChatFs:Proxy:MaxBodyBytes", "65536"
            ]
        )
    with
    | Ok o ->
        Assert.True o.Hardening.AllowUnsignedTenant
        Assert.Equal(65536L, o.Hardening.ProxyMaxBodyBytes)
    | Error e -> failwith $"{e}"

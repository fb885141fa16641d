module WeChatFs.Tests.ConfigTests

open System
open Microsoft.Extensions.Configuration
open Expecto
open WeChatFs.Tests.Helpers
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


let tests =
    testList
        "Config"
        [
            testCase "a minimal configuration gets the documented defaults"
            <| fun () ->
                match load valid with
                | Ok o ->
                    Expect.equal (string o.ApiBaseUrl) "https://api.weixin.qq.com/" "string o.ApiBaseUrl"
                    Expect.equal o.StorageProvider Settings.Sqlite "o.StorageProvider"
                    Expect.equal o.ConnectionString "Data Source=data/wechatfs.db" "o.ConnectionString"
                    Expect.equal o.DataFolder "data" "o.DataFolder"
                    Expect.equal o.TokenPolicy.RefreshMargin (TimeSpan.FromMinutes 10.) "o.TokenPolicy.RefreshMargin"
                    Expect.equal o.Webhooks.ReplyTimeout (TimeSpan.FromSeconds 3.) "o.Webhooks.ReplyTimeout"
                    Expect.equal o.Webhooks.DeliveredRetention (TimeSpan.FromDays 7.) "o.Webhooks.DeliveredRetention"
                    Expect.equal o.EventRetention (TimeSpan.FromDays 90.) "o.EventRetention"
                    Expect.equal o.AdminApiKey None "o.AdminApiKey"
                    Expect.isTrue o.ReleaseResponder "o.ReleaseResponder"
                | Error e -> failwith $"{e}"

            testCase
                "the intake log is on for SQLite unless switched off, never for PostgreSQL, and takes only true or false"
            <| fun () ->
                let intake extra =
                    load (valid @ extra) |> Result.map (fun o -> o.IntakeLog)

                Expect.equal (intake []) (Ok true) "SQLite: on"
                Expect.equal (intake [ "WeChatFs:Storage:IntakeLog", "false" ]) (Ok false) "switched off"

                Expect.equal
                    (intake
                        [
                            "WeChatFs:Storage:Provider", "postgres"
                            "WeChatFs:Storage:ConnectionString", "Host=db"
                        ])
                    (Ok false)
                    "PostgreSQL: the database is the log"

                match intake [ "WeChatFs:Storage:IntakeLog", "sometimes" ] with
                | Error [ e ] -> Expect.equal e.Key "WeChatFs:Storage:IntakeLog" "names the key"
                | other -> failwith $"{other}"

            testCase "the intake log gathers 1 ms before a sync under load unless told otherwise, from 0 to 100 ms"
            <| fun () ->
                let gather extra =
                    load (valid @ extra) |> Result.map (fun o -> o.IntakeSyncGather)

                Expect.equal (gather []) (Ok(TimeSpan.FromMilliseconds 1.)) "default"

                Expect.equal
                    (gather [ "WeChatFs:Storage:IntakeSyncGather", "00:00:00.005" ])
                    (Ok(TimeSpan.FromMilliseconds 5.))
                    "five milliseconds"

                Expect.equal (gather [ "WeChatFs:Storage:IntakeSyncGather", "00:00:00" ]) (Ok TimeSpan.Zero) "off"

                for wrong in [ "00:00:01"; "-00:00:00.001"; "soon" ] do
                    match gather [ "WeChatFs:Storage:IntakeSyncGather", wrong ] with
                    | Error [ e ] -> Expect.equal e.Key "WeChatFs:Storage:IntakeSyncGather" $"{wrong}: names the key"
                    | other -> failwith $"{wrong}: {other}"

            testCase "the inbox is vacuumed after 10,000 changed rows unless told otherwise, 0 turning it off"
            <| fun () ->
                let after extra =
                    load (valid @ extra) |> Result.map (fun o -> o.InboxVacuumAfter)

                Expect.equal (after []) (Ok 10000) "the default"
                Expect.equal (after [ "WeChatFs:Storage:InboxVacuumAfter", "500" ]) (Ok 500) "set"
                Expect.equal (after [ "WeChatFs:Storage:InboxVacuumAfter", "0" ]) (Ok 0) "off"

                for wrong in [ "-1"; "often"; "1.5" ] do
                    match after [ "WeChatFs:Storage:InboxVacuumAfter", wrong ] with
                    | Error [ e ] -> Expect.equal e.Key "WeChatFs:Storage:InboxVacuumAfter" $"{wrong}: names the key"
                    | other -> failwith $"{wrong}: {other}"

            testCase "refreshes are paced from 1,000 accounts unless told otherwise, a whole number of at least 1"
            <| fun () ->
                let pacedFrom extra =
                    load (valid @ extra) |> Result.map (fun o -> o.AuthorizerPacedFrom)

                Expect.equal (pacedFrom []) (Ok 1000) "the default"
                Expect.equal (pacedFrom [ "WeChatFs:Authorizers:PacedFrom", "50" ]) (Ok 50) "set"

                match pacedFrom [ "WeChatFs:Authorizers:PacedFrom", "0" ] with
                | Error [ e ] -> Expect.equal e.Key "WeChatFs:Authorizers:PacedFrom" "names the key"
                | other -> failwith $"{other}"

            testCase "every bad value is reported at once, naming the key and the fix"
            <| fun () ->
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
                        Expect.contains keys k "keys"

                    for e in errors do
                        Expect.isFalse (String.IsNullOrWhiteSpace e.Fix) $"{e.Key} says how to fix it"

            testCase "postgres needs a connection string and tenants may have their own webhook"
            <| fun () ->
                match load (valid @ [ "WeChatFs:Storage:Provider", "postgres" ]) with
                | Error [ e ] -> Expect.equal e.Key "WeChatFs:Storage:ConnectionString" "e.Key"
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
                | Ok o ->
                    Expect.equal
                        (string (o.Webhooks.TenantUrls |> Map.find "shop-1"))
                        "https://hooks.example/shop-1"
                        "string (o.Webhooks.TenantUrls |> Map.find 'shop-1')"
                | Error e -> failwith $"{e}"

            testCase "an event retention under a day is refused, a longer one is taken"
            <| fun () ->
                match load (valid @ [ "WeChatFs:Events:Retention", "12:00:00" ]) with
                | Ok _ -> failwith "accepted"
                | Error errors ->
                    Expect.exists errors (fun e -> e.Key = "WeChatFs:Events:Retention") "errors has one that matches"

                match load (valid @ [ "WeChatFs:Events:Retention", "30.00:00:00" ]) with
                | Ok o -> Expect.equal o.EventRetention (TimeSpan.FromDays 30.) "o.EventRetention"
                | Error e -> failwith $"{e}"

            testCase "a delivered-message retention shorter than WeChat's retries is refused"
            <| fun () ->
                match load (valid @ [ "WeChatFs:Webhooks:DeliveredRetention", "00:05:00" ]) with
                | Ok _ -> failwith "accepted"
                | Error errors ->
                    Expect.exists
                        errors
                        (fun e -> e.Key = "WeChatFs:Webhooks:DeliveredRetention")
                        "errors has one that matches"


            testCase "the hardening limits have safe defaults and bad values name their keys"
            <| fun () ->
                match load valid with
                | Ok o ->
                    Expect.equal o.Hardening.ProxyMaxBodyBytes (10L * 1024L * 1024L) "10 MiB by default"
                    Expect.isFalse o.Hardening.AllowUnsignedTenant "signed links only, by default"
                    Expect.equal o.Hardening.RefusalLogsPerMinute 10 "refusal lines per minute"
                    Expect.equal o.Hardening.TicketPushRequestInterval (TimeSpan.FromMinutes 1.) "ticket push requests"
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
                        Expect.contains keys k "the bad key is named"

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
                    Expect.isTrue o.Hardening.AllowUnsignedTenant "True is true"
                    Expect.equal o.Hardening.ProxyMaxBodyBytes 65536L "a byte count"
                | Error e -> failwith $"{e}"
        ]

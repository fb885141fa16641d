/// The red-packet store against SQLite and a real PostgreSQL server: one row per Idempotency-Key,
/// compare-and-set writes, the worker's due list, and merchant secrets sealed at rest.
module WeChatFs.Tests.RedPackStoreTests

open System
open System.IO
open System.Text
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs
open WeChatFs.RedPacks
open WeChatFs.RedPackState
open WeChatFs.RedPackStore
open WeChatFs.Tests.StoreFixture

let private t0 = DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero)

let private policy =
    {
        ResolveRetryBase = TimeSpan.FromSeconds 1.
        ResolveRetryMax = TimeSpan.FromMinutes 5.
        ReconcileInterval = TimeSpan.FromMinutes 10.
        StaleAfter = TimeSpan.FromSeconds 30.
    }

let private packet (id: string) (key: string) (bill: string) =
    {
        Id = Domain.RedPackId id
        IdempotencyKey = key
        RequestHash = "hash-" + key
        MchId = MchId "1900000109"
        BillNo = MchBillNo bill
        AuthorizerAppId = Domain.AuthorizerAppId "wxsimoa00000000001"
        Tenant = Some(Domain.TenantId "shop")
        OpenId = "oUSER"
        AmountFen = 100L
        Request =
            {
                Wishing = "w"
                ActName = "a"
                Remark = "r"
                SendName = "s"
                SceneId = None
                RiskInfo = None
                ClientIp = "127.0.0.1"
                WxTkId = None
            }
        Packet = created policy t0
        Version = 0
        CreatedAt = t0
        UpdatedAt = t0
    }


let tests =
    testSequencedGroup "RedPackStore"
    <| testList
        "RedPackStore"
        [
            testTheoryTask
                "one packet per Idempotency-Key and per mch_billno, changed only by compare-and-set"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = openFresh provider
                    use _ = store
                    let packs = RedPackStore.ofStore store
                    let! first = packs.InsertRedPack(packet "p1" "key-1" "1900000109202611300000000001")
                    Expect.isTrue first "first"

                    let! sameKey =
                        packs.InsertRedPack(packet "p2" "key-1" "1900000109202611300000000002")

                    Expect.isFalse sameKey "sameKey"

                    let! sameBill =
                        packs.InsertRedPack(packet "p3" "key-3" "1900000109202611300000000001")

                    Expect.isFalse sameBill "sameBill"
                    let! byKey = packs.GetRedPackByKey "key-1"

                    Expect.equal
                        (byKey |> Option.map (fun r -> r.Id))
                        (Some(Domain.RedPackId "p1"))
                        "byKey |> Option.map (fun r -> r.Id)"

                    let sending, _ = step policy t0 (created policy t0) SendStarted
                    let! saved = packs.SavePacket(Domain.RedPackId "p1", 0, sending, t0)
                    Expect.isTrue saved "saved"
                    let! stale = packs.SavePacket(Domain.RedPackId "p1", 0, sending, t0)
                    Expect.isFalse stale "a write based on an old version must not land"
                    let! read = packs.GetRedPack(Domain.RedPackId "p1")
                    Expect.equal read.Value.Packet.Status Sending "read.Value.Packet.Status"
                    Expect.equal read.Value.Version 1 "read.Value.Version"

                    // Left sending: due once it is stale. Undecided: due at its next check. Final: never.
                    let! notYet = packs.DueRedPacks(t0.AddSeconds 1., t0.AddSeconds -30., 10)
                    Expect.isEmpty notYet "notYet"
                    let! due = packs.DueRedPacks(t0.AddMinutes 1., t0.AddSeconds 1., 10)

                    Expect.equal
                        (due |> List.map (fun r -> r.Id))
                        ([ Domain.RedPackId "p1" ])
                        "due |> List.map (fun r -> r.Id)"

                    let undecided, _ =
                        step policy t0 read.Value.Packet (SendAnswered(Unknown "SYSTEMERROR"))

                    let! _ = packs.SavePacket(Domain.RedPackId "p1", 1, undecided, t0)
                    let! dueUndecided = packs.DueRedPacks(t0.AddSeconds 2., t0.AddSeconds -30., 10)

                    Expect.equal
                        (dueUndecided |> List.map (fun r -> r.Id))
                        ([ Domain.RedPackId "p1" ])
                        "dueUndecided |> List.map (fun r -> r.Id)"

                    let received, _ =
                        step policy t0 undecided (QueryAnswered(Found("RECEIVED", "D1", "")))

                    let! _ = packs.SavePacket(Domain.RedPackId "p1", 2, received, t0)
                    let! dueFinal = packs.DueRedPacks(t0.AddDays 1., t0.AddDays 1., 10)
                    Expect.isEmpty dueFinal "dueFinal"

                    let! page =
                        packs.ListRedPacks
                            {
                                Status = Some "received"
                                MchId = Some "1900000109"
                                Offset = 0
                                Limit = 10
                            }

                    Expect.equal page.Total 1 "page.Total"
                    Expect.equal page.Items.Head.Packet.Status (Received "D1") "page.Items.Head.Packet.Status"
                }

            testTheoryTask
                "a merchant's API key and private key are sealed at rest and read back"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, file = openFresh provider
                    let packs = RedPackStore.ofStore store
                    let apiKey = "0123456789abcdef0123456789ABCDEF"

                    let keyPem =
                        "-----BEGIN PRIVATE KEY-----\nMIIsecretkeymaterial\n-----END PRIVATE KEY-----"

                    let m =
                        {
                            MchId = MchId "1900000109"
                            Tenant = Some(Domain.TenantId "shop")
                            SendName = "Demo Coffee"
                            BoundAppIds = [ Domain.AuthorizerAppId "wxsimoa00000000001" ]
                            ApiKey = apiKey
                            CertificatePem = "-----BEGIN CERTIFICATE-----\nMIIcert\n-----END CERTIFICATE-----"
                            PrivateKeyPem = keyPem
                            CertSubject = "CN=1900000109"
                            CertNotAfter = t0.AddYears 1
                            CreatedAt = t0
                            UpdatedAt = t0
                        }

                    do! packs.PutMerchant m
                    do! packs.PutMerchant { m with SendName = "Demo Coffee 2" }
                    let! back = packs.GetMerchant(MchId "1900000109")
                    Expect.equal back (Some { m with SendName = "Demo Coffee 2" }) "back"
                    let! all = packs.ListMerchants()
                    Expect.equal all.Length 1 "all.Length"

                    match file with
                    | Some f ->
                        store.Dispose()

                        let raw =
                            [ f; f + "-wal" ]
                            |> List.filter File.Exists
                            |> List.map (File.ReadAllBytes >> Encoding.Latin1.GetString)
                            |> String.concat ""

                        Expect.stringContains raw "Demo Coffee 2" "raw"
                        Expect.isFalse (raw.Contains(apiKey: string)) "raw must not contain apiKey"
                        Expect.isFalse (raw.Contains("MIIsecretkeymaterial")) "raw has no 'MIIsecretkeymaterial'"
                    | None -> store.Dispose()
                }

        ]

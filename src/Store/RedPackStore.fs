/// Where merchants and red packets live, on the same store as everything else (SQLite or PostgreSQL).
/// The merchant's API key and private key are sealed at rest; a packet is written before WeChat Pay
/// is asked, and every later change is a compare-and-set on its version, so two writers never lose
/// each other's news.
module WeChatFs.RedPackStore

open System
open System.Data.Common
open System.Text.Json
open System.Threading.Tasks
open WeChatFs.Domain
open WeChatFs.RedPacks
open WeChatFs.RedPackState
open WeChatFs.SqlAccess

type Merchant =
    {
        MchId: MchId
        Tenant: TenantId option
        SendName: string
        BoundAppIds: AuthorizerAppId list
        ApiKey: string
        CertificatePem: string
        PrivateKeyPem: string
        CertSubject: string
        CertNotAfter: DateTimeOffset
        CreatedAt: DateTimeOffset
        UpdatedAt: DateTimeOffset
    }

/// The fields of the send request kept with the packet, so a resend sends exactly the same thing.
type StoredRequest =
    {
        Wishing: string
        ActName: string
        Remark: string
        SendName: string
        SceneId: string option
        RiskInfo: string option
        ClientIp: string
        WxTkId: string option
    }

type RedPackRecord =
    {
        Id: RedPackId
        IdempotencyKey: string
        /// SHA-256 of the request, to tell a retry from a different request under the same key.
        RequestHash: string
        MchId: MchId
        BillNo: MchBillNo
        AuthorizerAppId: AuthorizerAppId
        Tenant: TenantId option
        OpenId: string
        AmountFen: int64
        Request: StoredRequest
        Packet: Packet
        Version: int
        CreatedAt: DateTimeOffset
        UpdatedAt: DateTimeOffset
    }

let private requestJson (r: StoredRequest) =
    JsonSerializer.Serialize
        {|
            wishing = r.Wishing
            act_name = r.ActName
            remark = r.Remark
            send_name = r.SendName
            scene_id = Option.toObj r.SceneId
            risk_info = Option.toObj r.RiskInfo
            client_ip = r.ClientIp
            wx_tk_id = Option.toObj r.WxTkId
        |}

let private readRequest (json: string) =
    use doc = JsonDocument.Parse json
    let root = doc.RootElement

    let s (name: string) =
        match root.TryGetProperty name with
        | true, v when v.ValueKind = JsonValueKind.String -> Some(v.GetString())
        | _ -> None

    {
        Wishing = defaultArg (s "wishing") ""
        ActName = defaultArg (s "act_name") ""
        Remark = defaultArg (s "remark") ""
        SendName = defaultArg (s "send_name") ""
        SceneId = s "scene_id"
        RiskInfo = s "risk_info"
        ClientIp = defaultArg (s "client_ip") ""
        WxTkId = s "wx_tk_id"
    }

/// status, send_listid, err_code, err_code_des as stored.
let private statusColumns (s: Status) : string * string option * string option * string option =
    match s with
    | Created
    | Sending -> Status.name s, None, None, None
    | Sent id
    | Received id
    | Refunded id -> Status.name s, Some id, None, None
    | Failed(code, des) -> Status.name s, None, Some code, Some des
    | Undecided reason -> Status.name s, None, None, Some reason

let private statusOf (name: string) (listId: string option) (code: string option) (des: string option) =
    let id = defaultArg listId ""

    match name with
    | "created" -> Created
    | "sending" -> Sending
    | "sent" -> Sent id
    | "received" -> Received id
    | "refunded" -> Refunded id
    | "failed" -> Failed(defaultArg code "", defaultArg des "")
    | _ -> Undecided(defaultArg des "")

let private packColumns =
    "id, idempotency_key, request_hash, mch_id, mch_billno, authorizer_appid, tenant, openid, amount_fen, request, status, send_listid, err_code, err_code_des, hb_status, attempts, version, next_check_at, created_at, updated_at"

let private readPack (r: DbDataReader) =
    {
        Id = RedPackId(r.GetString 0)
        IdempotencyKey = r.GetString 1
        RequestHash = r.GetString 2
        MchId = MchId(r.GetString 3)
        BillNo = MchBillNo(r.GetString 4)
        AuthorizerAppId = AuthorizerAppId(r.GetString 5)
        Tenant = text r 6 |> Option.map TenantId
        OpenId = r.GetString 7
        AmountFen = Convert.ToInt64(r.GetValue 8)
        Request = readRequest (r.GetString 9)
        Packet =
            {
                Status = statusOf (r.GetString 10) (text r 11) (text r 12) (text r 13)
                HbStatus = text r 14
                Attempts = Convert.ToInt32(r.GetValue 15)
                NextCheckAt = int64Of r 17 |> Option.map ofMs
            }
        Version = Convert.ToInt32(r.GetValue 16)
        CreatedAt = ofMs (Convert.ToInt64(r.GetValue 18))
        UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 19))
    }

type RedPackQuery =
    {
        Status: string option
        MchId: string option
        Offset: int
        Limit: int
    }

type RedPackStore(backend: ISqlAccess) =
    let sealer = backend.Sealer

    let unseal = unseal sealer

    let readMerchant (r: DbDataReader) =
        {
            MchId = MchId(r.GetString 0)
            Tenant = text r 1 |> Option.map TenantId
            SendName = r.GetString 2
            BoundAppIds =
                JsonSerializer.Deserialize<string list>(r.GetString 3)
                |> List.map AuthorizerAppId
            ApiKey = unseal "merchant API key" (r.GetString 4)
            CertificatePem = r.GetString 5
            PrivateKeyPem = unseal "merchant private key" (r.GetString 6)
            CertSubject = r.GetString 7
            CertNotAfter = ofMs (Convert.ToInt64(r.GetValue 8))
            CreatedAt = ofMs (Convert.ToInt64(r.GetValue 9))
            UpdatedAt = ofMs (Convert.ToInt64(r.GetValue 10))
        }

    let merchantColumns =
        "mch_id, tenant, send_name, bound_appids, api_key, certificate_pem, private_key, cert_subject, cert_not_after, created_at, updated_at"

    /// Inserts or replaces the merchant; the first creation time stays.
    member _.PutMerchant(m: Merchant) =
        backend.Run(fun conn ->
            exec
                conn
                null
                $"INSERT INTO merchants ({merchantColumns}) VALUES (@m, @t, @n, @b, @k, @c, @p, @s, @na, @ca, @ua) ON CONFLICT (mch_id) DO UPDATE SET tenant = excluded.tenant, send_name = excluded.send_name, bound_appids = excluded.bound_appids, api_key = excluded.api_key, certificate_pem = excluded.certificate_pem, private_key = excluded.private_key, cert_subject = excluded.cert_subject, cert_not_after = excluded.cert_not_after, updated_at = excluded.updated_at"
                [
                    "@m", box (PayIds.mchId m.MchId)
                    "@t", box (m.Tenant |> Option.map Ids.tenant |> Option.toObj)
                    "@n", box m.SendName
                    "@b", box (JsonSerializer.Serialize(m.BoundAppIds |> List.map Ids.authorizerAppId))
                    "@k", box (sealer.Seal m.ApiKey)
                    "@c", box m.CertificatePem
                    "@p", box (sealer.Seal m.PrivateKeyPem)
                    "@s", box m.CertSubject
                    "@na", box (ms m.CertNotAfter)
                    "@ca", box (ms m.CreatedAt)
                    "@ua", box (ms m.UpdatedAt)
                ])
        :> Task

    member _.GetMerchant(MchId mch) =
        backend.Run(fun conn ->
            tryOne
                conn
                null
                $"SELECT {merchantColumns} FROM merchants WHERE mch_id = @m"
                [ "@m", box mch ]
                readMerchant)

    member _.ListMerchants() =
        backend.Run(fun conn ->
            query conn null $"SELECT {merchantColumns} FROM merchants ORDER BY mch_id" [] readMerchant)

    /// Stores a new packet unless its Idempotency-Key (or its mch_billno) is taken; true when stored.
    member _.InsertRedPack(p: RedPackRecord) =
        let status, listId, code, des = statusColumns p.Packet.Status

        backend.Run(fun conn ->
            task {
                let! n =
                    exec
                        conn
                        null
                        $"INSERT INTO redpacks ({packColumns}) VALUES (@id, @key, @hash, @mch, @bill, @appid, @tenant, @openid, @amount, @req, @status, @list, @code, @des, @hb, @attempts, @version, @next, @created, @updated) ON CONFLICT DO NOTHING"
                        [
                            "@id", box (Ids.redPackId p.Id)
                            "@key", box p.IdempotencyKey
                            "@hash", box p.RequestHash
                            "@mch", box (PayIds.mchId p.MchId)
                            "@bill", box (PayIds.billNo p.BillNo)
                            "@appid", box (Ids.authorizerAppId p.AuthorizerAppId)
                            "@tenant", box (p.Tenant |> Option.map Ids.tenant |> Option.toObj)
                            "@openid", box p.OpenId
                            "@amount", box p.AmountFen
                            "@req", box (requestJson p.Request)
                            "@status", box status
                            "@list", box (Option.toObj listId)
                            "@code", box (Option.toObj code)
                            "@des", box (Option.toObj des)
                            "@hb", box (Option.toObj p.Packet.HbStatus)
                            "@attempts", box p.Packet.Attempts
                            "@version", box p.Version
                            "@next", optionalMs p.Packet.NextCheckAt
                            "@created", box (ms p.CreatedAt)
                            "@updated", box (ms p.UpdatedAt)
                        ]

                return n = 1
            })

    member _.GetRedPack(id: RedPackId) =
        backend.Run(fun conn ->
            tryOne
                conn
                null
                $"SELECT {packColumns} FROM redpacks WHERE id = @id"
                [ "@id", box (Ids.redPackId id) ]
                readPack)

    member _.GetRedPackByKey(key: string) =
        backend.Run(fun conn ->
            tryOne
                conn
                null
                $"SELECT {packColumns} FROM redpacks WHERE idempotency_key = @k"
                [ "@k", box key ]
                readPack)

    /// Writes the packet's new state only if nobody changed it since `expectedVersion` was read.
    member _.SavePacket(id: RedPackId, expectedVersion: int, p: Packet, now: DateTimeOffset) =
        let status, listId, code, des = statusColumns p.Status

        backend.Run(fun conn ->
            task {
                let! n =
                    exec
                        conn
                        null
                        "UPDATE redpacks SET status = @status, send_listid = @list, err_code = @code, err_code_des = @des, hb_status = @hb, attempts = @attempts, next_check_at = @next, updated_at = @updated, version = version + 1 WHERE id = @id AND version = @version"
                        [
                            "@status", box status
                            "@list", box (Option.toObj listId)
                            "@code", box (Option.toObj code)
                            "@des", box (Option.toObj des)
                            "@hb", box (Option.toObj p.HbStatus)
                            "@attempts", box p.Attempts
                            "@next", optionalMs p.NextCheckAt
                            "@updated", box (ms now)
                            "@id", box (Ids.redPackId id)
                            "@version", box expectedVersion
                        ]

                return n = 1
            })

    /// Packets due a look at `now`: undecided and sent ones whose check is due, and created or
    /// sending ones untouched since `staleBefore` (their sender died, or never came back).
    member _.DueRedPacks(now: DateTimeOffset, staleBefore: DateTimeOffset, limit: int) =
        backend.Run(fun conn ->
            query
                conn
                null
                $"SELECT {packColumns} FROM redpacks WHERE (status IN ('undecided', 'sent') AND next_check_at <= @now) OR (status IN ('created', 'sending') AND updated_at <= @stale) ORDER BY updated_at LIMIT @limit"
                [
                    "@now", box (ms now)
                    "@stale", box (ms staleBefore)
                    "@limit", box (int64 limit)
                ]
                readPack)

    member _.ListRedPacks(q: RedPackQuery) : Task<Store.Page<RedPackRecord>> =
        let filter =
            whereOf
                [
                    q.Status |> Option.map (fun s -> "status = @status", ("@status", box s))
                    q.MchId |> Option.map (fun m -> "mch_id = @mch", ("@mch", box m))
                ]

        page backend "redpacks" packColumns filter "created_at DESC, id DESC" (q.Offset, q.Limit) readPack

/// The red-packet store over the gateway's store.
let ofStore (store: Store.IStore) =
    match box store with
    | :? ISqlAccess as backend -> RedPackStore backend
    | _ -> raise (InvalidOperationException "red packets need the SQL store (sqlite or postgres)")

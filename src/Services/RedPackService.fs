/// Sending red packets and seeing each one through: the packet is stored before sendredpack is
/// called, every answer goes through the state machine (RedPackState.step) and a compare-and-set,
/// and a worker on every instance resolves undecided packets with gethbinfo and reconciles sent ones
/// until a final status. Status changes go to the webhook as redpack.* deliveries.
module WeChatFs.RedPackService

open System
open System.Security.Cryptography
open System.Text
open System.Text.Json.Nodes
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.RedPacks
open WeChatFs.RedPackState
open WeChatFs.RedPackStore
open WeChatFs.RedPackView

type TrackingError =
    /// This gateway cannot resolve tracking tokens (no web OAuth tracking here).
    | TrackingNotSupported
    | UnknownTrackingToken of reason: string

/// Turns a wx_tk_id (a web OAuth tracking token) into the openid it stands for under the account.
type ITrackingTokens =
    abstract Resolve: authorizerAppId: string * token: string -> Task<Result<string, TrackingError>>

/// The default: tracking tokens are not known here.
type NoTrackingTokens() =
    interface ITrackingTokens with
        member _.Resolve(_, _) =
            Task.FromResult(Error TrackingNotSupported)

/// Tracking tokens minted by web OAuth on behalf of accounts (OAuthFlow): a wxTkId resolves while it
/// has not expired, and only under the account whose follower it stands for.
type OAuthTrackingTokens(oauth: OAuthFlow.OAuthService) =
    interface ITrackingTokens with
        member _.Resolve(authorizerAppId, token) =
            task {
                match! oauth.Resolve token with
                | Some visit when Domain.Ids.authorizerAppId visit.AuthorizerAppId = authorizerAppId ->
                    return Ok(Domain.Ids.openId visit.OpenId)
                | Some _ -> return Error(UnknownTrackingToken "the wx_tk_id belongs to another account")
                | None -> return Error(UnknownTrackingToken "the wx_tk_id is unknown or has expired")
            }

/// The openid a packet goes to: the one given, or the one a tracking token stands for.
let resolveRecipient (tracking: ITrackingTokens) (authorizerAppId: string) (recipient: Recipient) =
    match recipient with
    | OpenId o -> Task.FromResult(Ok o)
    | TrackingToken t -> tracking.Resolve(authorizerAppId, t)

type SendError =
    | Invalid of FieldError list
    | UnknownMerchant of string
    | NotBound of mchId: string * appid: string
    | Tracking of TrackingError
    /// The Idempotency-Key was used before for a different request.
    | KeyReused of existingId: Domain.RedPackId

let policyOf (o: RedPackOptions) =
    {
        ResolveRetryBase = o.ResolveRetryBase
        ResolveRetryMax = TimeSpan.FromMinutes 5.
        ReconcileInterval = o.ReconcileInterval
        // A live send never takes longer than its timeout; leave it twice that before taking over.
        StaleAfter = o.SendTimeout + o.SendTimeout
    }

let private nonce () =
    Convert.ToHexStringLower(RandomNumberGenerator.GetBytes 16)

let private digits () =
    String(Array.init 20 (fun _ -> char (int '0' + RandomNumberGenerator.GetInt32 10)))

type RedPackService
    (
        options: GatewayOptions,
        store: Store.IStore,
        pay: PayClient.Client,
        inbox: Inbox.InboxService,
        tracking: ITrackingTokens,
        clock: TimeProvider,
        logger: ILogger<RedPackService>
    ) =
    let packs = RedPackStore.ofStore store
    let policy = policyOf options.RedPacks

    let notify (r: RedPackRecord) (kind: string) =
        task {
            let now = clock.GetUtcNow()
            let id = Guid.CreateVersion7().ToString("N")

            let! _ =
                inbox.Append
                    {
                        Id = id
                        // Whoever gets here first (sender, worker, another instance) notifies; the rest dedupe.
                        DedupeKey = $"redpack:{Domain.Ids.redPackId r.Id}:{kind}"
                        AuthorizerAppId = r.AuthorizerAppId
                        Tenant = r.Tenant
                        Kind = kind
                        ReceivedAt = now
                        Payload = Messages.webhookPayload id kind r.AuthorizerAppId r.Tenant now (view r) ""
                        ClaimedBy = None
                        ClaimedUntil = None
                    }

            ()
        }

    /// Feeds one input to the packet and stores the outcome (compare-and-set; on a lost race the
    /// fresh state is read and the input applied to it). Answers the stored record and the effects.
    let rec apply (r: RedPackRecord) (input: Input) (tries: int) =
        task {
            let now = clock.GetUtcNow()
            let packet, effects = step policy now r.Packet input

            if packet = r.Packet then
                return r, effects
            else
                let! saved = packs.SavePacket(r.Id, r.Version, packet, now)

                if saved then
                    let r =
                        { r with
                            Packet = packet
                            Version = r.Version + 1
                            UpdatedAt = now
                        }

                    for e in effects do
                        match e with
                        | Notify kind -> do! notify r kind
                        | CallSend -> ()

                    return r, effects
                else
                    match! packs.GetRedPack r.Id with
                    | Some fresh when tries > 0 -> return! apply fresh input (tries - 1)
                    | Some fresh -> return fresh, []
                    | None -> return r, []
        }

    let content (r: RedPackRecord) =
        {
            MchId = r.MchId
            BillNo = r.BillNo
            WxAppId = Domain.Ids.authorizerAppId r.AuthorizerAppId
            OpenId = r.OpenId
            AmountFen = r.AmountFen
            SendName = r.Request.SendName
            Wishing = r.Request.Wishing
            ActName = r.Request.ActName
            Remark = r.Request.Remark
            SceneId = r.Request.SceneId
            RiskInfo = r.Request.RiskInfo
            ClientIp = r.Request.ClientIp
        }

    /// Marks the packet as sending (stored first), then calls sendredpack and stores its answer.
    let send (merchant: Merchant) (r: RedPackRecord) =
        task {
            let! r, _ = apply r SendStarted 5

            if r.Packet.Status <> Sending then
                return r
            else
                let! outcome = pay.SendRedPack(merchant, sendFields (content r) (nonce ()))

                match outcome with
                | Unknown reason ->
                    logger.LogWarning(
                        "red packet {Id}: sendredpack undecided ({Reason})",
                        Domain.Ids.redPackId r.Id,
                        reason
                    )
                | Refused(code, _) ->
                    logger.LogWarning("red packet {Id}: refused with {Code}", Domain.Ids.redPackId r.Id, code)
                | Accepted _ -> ()

                let! r, _ = apply r (SendAnswered outcome) 5
                return r
        }

    member _.Store = packs
    member _.Policy = policy

    /// Sends a packet once per Idempotency-Key; a repeated key answers the packet stored under it.
    member _.Send(request: SendRequest, key: string, requestHash: string, callerIp: string) =
        task {
            match! packs.GetMerchant request.MchId with
            | None -> return Error(UnknownMerchant(PayIds.mchId request.MchId))
            | Some merchant ->
                let sendName = defaultArg request.SendName merchant.SendName
                let problems = check request sendName

                if not problems.IsEmpty then
                    return Error(Invalid problems)
                elif not (List.contains (Domain.AuthorizerAppId request.AuthorizerAppId) merchant.BoundAppIds) then
                    return Error(NotBound(PayIds.mchId merchant.MchId, request.AuthorizerAppId))
                else
                    let sameRequest (existing: RedPackRecord) =
                        if existing.RequestHash = requestHash then
                            Ok existing
                        else
                            Error(KeyReused existing.Id)

                    match! packs.GetRedPackByKey key with
                    | Some existing -> return sameRequest existing
                    | None ->
                        let! openid = resolveRecipient tracking request.AuthorizerAppId request.Recipient

                        match openid with
                        | Error e -> return Error(Tracking e)
                        | Ok openid ->
                            let! tenant =
                                task {
                                    match merchant.Tenant with
                                    | Some t -> return Some t
                                    | None ->
                                        match! store.GetAuthorizer(Domain.AuthorizerAppId request.AuthorizerAppId) with
                                        | Some a -> return a.Tenant
                                        | None -> return None
                                }

                            let now = clock.GetUtcNow()

                            let record () =
                                {
                                    Id = Domain.RedPackId(Guid.CreateVersion7().ToString("N"))
                                    IdempotencyKey = key
                                    RequestHash = requestHash
                                    MchId = merchant.MchId
                                    BillNo = billNo merchant.MchId now (digits ())
                                    AuthorizerAppId = Domain.AuthorizerAppId request.AuthorizerAppId
                                    Tenant = tenant
                                    OpenId = openid
                                    AmountFen = request.AmountFen
                                    Request =
                                        {
                                            Wishing = request.Wishing
                                            ActName = request.ActName
                                            Remark = request.Remark
                                            SendName = sendName
                                            SceneId = request.SceneId
                                            RiskInfo = request.RiskInfo
                                            ClientIp =
                                                request.ClientIp
                                                |> Option.orElse options.RedPacks.ClientIp
                                                |> Option.defaultValue callerIp
                                            WxTkId =
                                                match request.Recipient with
                                                | TrackingToken t -> Some t
                                                | OpenId _ -> None
                                        }
                                    Packet = created policy now
                                    Version = 0
                                    CreatedAt = now
                                    UpdatedAt = now
                                }

                            // A taken key answers its packet; a taken mch_billno (ten random digits
                            // colliding) draws new digits.
                            let rec insert tries =
                                task {
                                    let r = record ()
                                    let! stored = packs.InsertRedPack r

                                    if stored then
                                        let! sent = send merchant r
                                        return Ok sent
                                    else
                                        match! packs.GetRedPackByKey key with
                                        | Some existing -> return sameRequest existing
                                        | None when tries > 0 -> return! insert (tries - 1)
                                        | None ->
                                            return
                                                raise (
                                                    InvalidOperationException "no free mch_billno after several draws"
                                                )
                                }

                            return! insert 5
        }

    /// One look at a packet that is due: send one that was never sent, ask gethbinfo about an
    /// undecided or sent one, and send again (same mch_billno) one WeChat Pay never saw.
    member _.Check(r: RedPackRecord) =
        task {
            match! packs.GetMerchant r.MchId with
            | None ->
                logger.LogError(
                    "red packet {Id}: merchant {Mch} is gone; it cannot be checked",
                    Domain.Ids.redPackId r.Id,
                    PayIds.mchId r.MchId
                )

                return r
            | Some merchant ->
                match r.Packet.Status with
                | Created -> return! send merchant r
                | Sending
                | Undecided _
                | Sent _ ->
                    let! outcome =
                        pay.GetHbInfo(merchant, Domain.Ids.authorizerAppId r.AuthorizerAppId, r.BillNo, nonce ())

                    let! r, effects = apply r (QueryAnswered outcome) 5

                    if List.contains CallSend effects then
                        logger.LogInformation(
                            "red packet {Id}: WeChat Pay never saw it; sending it again under the same mch_billno",
                            Domain.Ids.redPackId r.Id
                        )

                        return! send merchant r
                    else
                        return r
                | Received _
                | Refunded _
                | Failed _ -> return r
        }

/// Looks for packets due a check, on every instance; a lease per packet keeps two instances apart.
/// Whether the worker should look at the packet now (the same rule as RedPackStore.DueRedPacks).
let isDue (policy: Policy) (now: DateTimeOffset) (r: RedPackRecord) =
    match r.Packet.Status with
    | Created
    | Sending -> r.UpdatedAt <= now - policy.StaleAfter
    | Undecided _
    | Sent _ -> r.Packet.NextCheckAt |> Option.exists (fun t -> t <= now)
    | Received _
    | Refunded _
    | Failed _ -> false

type RedPackWorker
    (
        service: RedPackService,
        store: Store.IStore,
        options: GatewayOptions,
        clock: TimeProvider,
        logger: ILogger<RedPackWorker>
    ) =
    inherit BackgroundService()

    override _.ExecuteAsync(stopping: CancellationToken) =
        task {
            while not stopping.IsCancellationRequested do
                try
                    let now = clock.GetUtcNow()
                    let! due = service.Store.DueRedPacks(now, now - service.Policy.StaleAfter, 32)

                    for r in due do
                        let until = now + service.Policy.StaleAfter

                        let! _ =
                            Store.Leases.run
                                store
                                ("redpack:" + Domain.Ids.redPackId r.Id)
                                options.InstanceId
                                now
                                until
                                (fun () ->
                                    task {
                                        // Read again under the lease: another instance may have moved it on.
                                        match! service.Store.GetRedPack r.Id with
                                        | Some fresh when isDue service.Policy now fresh ->
                                            let! _ = service.Check fresh
                                            ()
                                        | _ -> ()
                                    })

                        ()
                with ex ->
                    logger.LogError(ex, "red packet pass failed")

                try
                    do! Task.Delay(options.RedPacks.PollInterval, stopping)
                with :? OperationCanceledException ->
                    ()
        }

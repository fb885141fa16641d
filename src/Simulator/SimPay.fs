/// The simulated WeChat Pay red-packet API (facts §11): sendredpack and gethbinfo over HTTPS with a
/// merchant client certificate from the test CA (CA_ERROR without one), the MD5 signature checked
/// (SIGN_ERROR), the fields checked, idempotent by mch_billno; packets move SENT → RECEIVED (or
/// REFUND) after a set time. Tests can make the next calls answer SYSTEMERROR or PROCESSING, drop
/// the connection, or hold the answer until released.
module WeChatFs.Simulator.SimPay

open System
open System.Collections.Generic
open System.IO
open System.Security.Cryptography
open System.Security.Cryptography.X509Certificates
open System.Text
open System.Threading.Tasks
open System.Xml
open Microsoft.AspNetCore.Http
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState

type Merchant =
    {
        MchId: string
        ApiKey: string
        Certificate: X509Certificate2
        CertificatePem: string
        PrivateKeyPem: string
    }

type Packet =
    {
        BillNo: string
        MchId: string
        WxAppId: string
        OpenId: string
        Amount: int64
        Wishing: string
        ActName: string
        Remark: string
        SendListId: string
        SentAt: DateTimeOffset
        /// sendredpack calls that named this mch_billno (the first paid; the rest only answered).
        Sends: int
    }

/// What the next calls of one API do instead of answering normally.
type Fault =
    | SystemError
    | Processing
    | Drop

type FaultRule = { Fault: Fault; PayFirst: bool }

/// What happens to a sent packet later: claimed, refunded unclaimed, or neither.
type Outcome =
    | ReceiveAfter of TimeSpan
    | RefundAfter of TimeSpan
    | StaySent

// ---- XML and the signature, written here from the facts, apart from the gateway's ------------------

let private readerSettings =
    XmlReaderSettings(DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, IgnoreWhitespace = true)

/// The root's direct children (text only); None when not XML.
let parseXml (xml: string) =
    try
        use reader = XmlReader.Create(new StringReader(xml), readerSettings)
        let fields = Dictionary<string, string>()
        reader.MoveToContent() |> ignore
        reader.Read() |> ignore

        while not reader.EOF do
            if reader.NodeType = XmlNodeType.Element && reader.Depth = 1 then
                let name = reader.LocalName
                // Reads past the element's end: the next node is already current.
                fields[name] <- reader.ReadElementContentAsString()
            else
                reader.Read() |> ignore

        Some(fields |> Seq.map (fun kv -> kv.Key, kv.Value) |> List.ofSeq)
    with :? XmlException ->
        None

let md5Sign (apiKey: string) (fields: (string * string) list) =
    let text =
        fields
        |> List.filter (fun (k, v) -> k <> "sign" && v <> "")
        |> List.sortWith (fun (a, _) (b, _) -> String.CompareOrdinal(a, b))
        |> List.map (fun (k, v) -> $"{k}={v}")
        |> String.concat "&"

    MD5.HashData(Encoding.UTF8.GetBytes(text + "&key=" + apiKey))
    |> Convert.ToHexString

let xmlOf (fields: (string * string) list) =
    let esc (v: string) =
        "<![CDATA[" + v.Replace("]]>", "]]]]><![CDATA[>") + "]]>"

    "<xml>"
    + (fields |> List.map (fun (k, v) -> $"<{k}>{esc v}</{k}>") |> String.concat "")
    + "</xml>"

let failXml code des =
    xmlOf
        [
            "return_code", "SUCCESS"
            "return_msg", "OK"
            "result_code", "FAIL"
            "err_code", code
            "err_code_des", des
        ]

// ---- state -----------------------------------------------------------------------------------------

type SimPay(authority: SimPayCerts.Authority, state: SimState) =
    let sync = obj ()
    let merchants = Dictionary<string, Merchant>()
    let packets = Dictionary<string, Packet>()
    let faults = Dictionary<string, Queue<FaultRule>>()
    let mutable outcome = ReceiveAfter(TimeSpan.FromSeconds 30.)
    let mutable hold = false
    let mutable held = 0

    let mutable release =
        TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

    let locked f = lock sync f

    member _.Authority = authority
    member _.CaPem = authority.CaPem

    /// The merchant, created on first use with a fresh API key and certificate (as WeChat Pay's console
    /// would hand them out).
    member _.Merchant(mchId: string) =
        locked (fun () ->
            match merchants.TryGetValue mchId with
            | true, m -> m
            | _ ->
                let cert = authority.IssueMerchant(mchId, TimeSpan.FromDays 365.)
                let certPem, keyPem = SimPayCerts.pemPair cert

                let m =
                    {
                        MchId = mchId
                        ApiKey = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes 16)
                        Certificate = cert
                        CertificatePem = certPem
                        PrivateKeyPem = keyPem
                    }

                merchants[mchId] <- m
                m)

    member _.TryMerchant(mchId: string) =
        locked (fun () ->
            match merchants.TryGetValue mchId with
            | true, m -> Some m
            | _ -> None)

    member _.InjectFault(api: string, rule: FaultRule, times: int) =
        locked (fun () ->
            if not (faults.ContainsKey api) then
                faults[api] <- Queue()

            for _ in 1..times do
                faults[api].Enqueue rule)

    member _.NextFault(api: string) =
        locked (fun () ->
            match faults.TryGetValue api with
            | true, q when q.Count > 0 -> Some(q.Dequeue())
            | _ -> None)

    member _.SetOutcome(o: Outcome) = locked (fun () -> outcome <- o)

    /// While on, sendredpack pays and then waits for SetHold false before answering.
    member _.SetHold(on: bool) =
        locked (fun () ->
            hold <- on

            if not on then
                release.TrySetResult() |> ignore
                release <- TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously))

    member _.Held = locked (fun () -> held)

    member _.WaitIfHeld() =
        task {
            let wait =
                locked (fun () ->
                    if hold then
                        held <- held + 1
                        Some release.Task
                    else
                        None)

            match wait with
            | Some t ->
                do! t
                locked (fun () -> held <- held - 1)
            | None -> ()
        }

    /// Pays the packet once per mch_billno; a repeat with the same content answers the same packet.
    member _.Pay(p: Packet) =
        locked (fun () ->
            match packets.TryGetValue p.BillNo with
            | true, existing when
                existing.MchId = p.MchId
                && existing.OpenId = p.OpenId
                && existing.Amount = p.Amount
                && existing.WxAppId = p.WxAppId
                ->
                let again =
                    { existing with
                        Sends = existing.Sends + 1
                    }

                packets[p.BillNo] <- again
                Ok again
            | true, _ -> Error "mch_billno was used for a different red packet"
            | _ ->
                packets[p.BillNo] <- p
                Ok p)

    member _.Find(billNo: string) =
        locked (fun () ->
            match packets.TryGetValue billNo with
            | true, p -> Some p
            | _ -> None)

    member _.Packets() =
        locked (fun () -> packets.Values |> List.ofSeq |> List.sortBy (fun p -> p.SentAt))

    /// The gethbinfo status of a packet at `now`, and when it changed.
    member _.StatusOf(p: Packet, now: DateTimeOffset) =
        match locked (fun () -> outcome) with
        | ReceiveAfter after when now >= p.SentAt + after -> "RECEIVED", Some(p.SentAt + after)
        | RefundAfter after when now >= p.SentAt + after -> "REFUND", Some(p.SentAt + after)
        | _ -> "SENT", None

    member _.Now() = state.Now()
    member _.Count(api: string) = state.Count api

/// The life of one red packet as a total state machine: created → sending → sent | failed | undecided,
/// then sent → received | refunded | failed. Undecided packets are resolved with gethbinfo, or sent
/// again with the same mch_billno when WeChat Pay never saw them; once sent, never sent again.
/// Pure: the caller passes `now` and carries out the effects.
module WeChatFs.RedPackState

open System
open WeChatFs.RedPacks

type Status =
    /// Stored, sendredpack not called yet.
    | Created
    /// sendredpack called (maybe more than once, always with the same mch_billno); no answer stored.
    | Sending
    /// WeChat Pay took it; gethbinfo reconciles until a final status.
    | Sent of sendListId: string
    | Received of sendListId: string
    | Refunded of sendListId: string
    | Failed of errCode: string * errCodeDes: string
    /// Maybe paid, maybe not: SYSTEMERROR, PROCESSING, a timeout, a dropped connection, a crash.
    | Undecided of reason: string

module Status =
    let name =
        function
        | Created -> "created"
        | Sending -> "sending"
        | Sent _ -> "sent"
        | Received _ -> "received"
        | Refunded _ -> "refunded"
        | Failed _ -> "failed"
        | Undecided _ -> "undecided"

    let isFinal =
        function
        | Received _
        | Refunded _
        | Failed _ -> true
        | Created
        | Sending
        | Sent _
        | Undecided _ -> false

    /// Whether WeChat Pay took the packet (so it must never be sent again).
    let isAccepted =
        function
        | Sent _
        | Received _
        | Refunded _ -> true
        | Created
        | Sending
        | Failed _
        | Undecided _ -> false

type Packet =
    {
        Status: Status
        /// Resolution attempts since the last decided answer; drives the backoff.
        Attempts: int
        /// When the worker looks at it next; None once final.
        NextCheckAt: DateTimeOffset option
        /// The last status gethbinfo reported.
        HbStatus: string option
    }

type Input =
    /// The caller is about to call sendredpack.
    | SendStarted
    | SendAnswered of SendOutcome
    | QueryAnswered of QueryOutcome

type Effect =
    /// Call sendredpack with the packet's own mch_billno.
    | CallSend
    /// Tell the webhook: redpack.sent, redpack.received, redpack.refunded, redpack.failed.
    | Notify of kind: string

type Policy =
    {
        /// The first wait before gethbinfo asks about an undecided packet; doubled each time.
        ResolveRetryBase: TimeSpan
        ResolveRetryMax: TimeSpan
        /// How often a sent packet is reconciled with gethbinfo.
        ReconcileInterval: TimeSpan
        /// How long a created or sending packet is left to its sender before the worker takes it
        /// (longer than a send can take, so a live send is never raced).
        StaleAfter: TimeSpan
    }

let created (policy: Policy) (now: DateTimeOffset) =
    {
        Status = Created
        Attempts = 0
        NextCheckAt = Some(now + policy.StaleAfter)
        HbStatus = None
    }

let backoff (policy: Policy) (attempts: int) =
    let factor = Math.Pow(2.0, float (min 30 (max 0 (attempts - 1))))
    let ms = policy.ResolveRetryBase.TotalMilliseconds * factor
    TimeSpan.FromMilliseconds(min ms policy.ResolveRetryMax.TotalMilliseconds)

/// What each gethbinfo status means for a packet that WeChat Pay took.
let private ofHbStatus (status: string) (detailId: string) (reason: string) =
    match status with
    | "SENDING"
    | "SENT"
    | "RFUND_ING" -> Some(Sent detailId)
    | "RECEIVED" -> Some(Received detailId)
    | "REFUND" -> Some(Refunded detailId)
    | "FAILED" -> Some(Failed("FAILED", (if reason = "" then "gethbinfo: FAILED" else reason)))
    | _ -> None

/// The webhook events for moving from `before` to `after`, in order, each at most once per packet.
let private notifications (before: Status) (after: Status) =
    let sent =
        if not (Status.isAccepted before) && Status.isAccepted after then
            [ Notify "redpack.sent" ]
        else
            []

    let final =
        match before, after with
        | b, _ when Status.isFinal b -> []
        | _, Received _ -> [ Notify "redpack.received" ]
        | _, Refunded _ -> [ Notify "redpack.refunded" ]
        | _, Failed _ -> [ Notify "redpack.failed" ]
        | _ -> []

    sent @ final

let private settle (policy: Policy) (now: DateTimeOffset) (p: Packet) (status: Status) (hb: string option) =
    let next =
        match status with
        | s when Status.isFinal s -> None
        | Sent _ -> Some(now + policy.ReconcileInterval)
        | Undecided _ -> Some(now + backoff policy (p.Attempts + 1))
        | Created
        | Sending -> Some(now + policy.StaleAfter)
        | Received _
        | Refunded _
        | Failed _ -> None

    let attempts =
        match status with
        | Undecided _ -> p.Attempts + 1
        | _ -> 0

    let packet =
        {
            Status = status
            Attempts = attempts
            NextCheckAt = next
            HbStatus = hb |> Option.orElse p.HbStatus
        }

    packet, notifications p.Status status

/// Total: every (status, input) pair has an answer, and no pair sends a packet WeChat Pay took.
let step (policy: Policy) (now: DateTimeOffset) (p: Packet) (input: Input) : Packet * Effect list =
    match p.Status, input with
    // Final: nothing changes it.
    | (Received _ | Refunded _ | Failed _), _ -> p, []
    // Not decided yet.
    | (Created | Sending | Undecided _), SendStarted -> settle policy now p Sending None
    | (Created | Sending | Undecided _), SendAnswered(Accepted listId) -> settle policy now p (Sent listId) None
    | (Created | Sending | Undecided _), SendAnswered(Refused(code, des)) ->
        settle policy now p (Failed(code, des)) None
    | (Created | Sending | Undecided _), SendAnswered(Unknown reason) -> settle policy now p (Undecided reason) None
    | (Created | Sending | Undecided _), QueryAnswered(Found(status, detailId, reason)) ->
        match ofHbStatus status detailId reason with
        | Some s -> settle policy now p s (Some status)
        | None -> settle policy now p (Undecided $"gethbinfo status {status}") (Some status)
    | (Created | Sending | Undecided _), QueryAnswered NotFound ->
        // WeChat Pay never saw the number: sending it again, with the same number, pays at most once.
        let next, events = settle policy now p Sending None
        next, CallSend :: events
    | (Created | Sending | Undecided _), QueryAnswered(QueryUnknown reason) ->
        settle policy now p (Undecided reason) None
    // Sent: only gethbinfo moves it on; a late or repeated send answer changes nothing.
    | Sent _, (SendStarted | SendAnswered _) -> p, []
    | Sent listId, QueryAnswered(Found(status, detailId, reason)) ->
        let detail = if detailId = "" then listId else detailId

        match ofHbStatus status detail reason with
        | Some(Sent _) -> settle policy now p (Sent listId) (Some status)
        | Some s -> settle policy now p s (Some status)
        | None -> settle policy now p (Sent listId) (Some status)
    | Sent listId, QueryAnswered(NotFound | QueryUnknown _) -> settle policy now p (Sent listId) None

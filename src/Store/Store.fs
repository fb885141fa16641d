/// The store contract. SQLite (embedded default) and PostgreSQL (many instances) both implement it and
/// both pass one contract test suite. Secrets (tickets, tokens, refresh tokens) are sealed at rest by the
/// implementation; callers hand in and get back plain domain values.
module WeChatFs.Store

open System
open System.Collections.Generic
open System.Threading
open System.Threading.Tasks
open WeChatFs.Domain

type Page<'item> = { Items: 'item list; Total: int }

type AuthorizerQuery =
    {
        Tenant: TenantId option
        Status: AuthorizerStatus option
        Offset: int
        Limit: int
    }

/// What a start-up preload reads of an account: its status and access token, not its refresh token
/// (which would be unsealed for nothing) nor its profile.
type AuthorizerTokenRow =
    {
        Account: AuthorizerAppId
        State: AuthorizerStatus
        Current: Expiring<AuthorizerAccessToken> option
    }

type IComponentStore =
    /// Keeps the newest ticket (Domain.newerTicket); storing the same push twice changes nothing.
    abstract SaveTicket: ComponentAppId * ReceivedTicket -> Task
    abstract LatestTicket: ComponentAppId -> Task<ReceivedTicket option>
    abstract SaveComponentToken: ComponentAppId * Expiring<ComponentAccessToken> -> Task
    abstract ComponentToken: ComponentAppId -> Task<Expiring<ComponentAccessToken> option>
    /// Deletes the stored token only while it is still `failed`; true when it did.
    abstract InvalidateComponentToken: ComponentAppId * failed: ComponentAccessToken -> Task<bool>

/// A named, time-limited lock shared by every instance on the same store: single-flight across
/// processes. A crashed holder's lease simply runs out.
type ILeaseStore =
    /// Takes (or renews, for the same holder) the lease until `until`, unless another holder's lease
    /// is still running at `now`. True when the caller holds it.
    abstract TryAcquireLease: name: string * holder: string * now: DateTimeOffset * until: DateTimeOffset -> Task<bool>
    abstract ReleaseLease: name: string * holder: string -> Task

type IAuthorizerStore =
    abstract GetAuthorizer: AuthorizerAppId -> Task<Authorizer option>
    /// Inserts or replaces the whole record.
    abstract SaveAuthorizer: Authorizer -> Task
    /// Inserts the record only if the appid is unknown; true when it did. An import must never
    /// overwrite what an authorization running at the same moment (maybe on another instance) stored.
    abstract AddAuthorizerIfAbsent: Authorizer -> Task<bool>
    abstract ListAuthorizers: AuthorizerQuery -> Task<Page<Authorizer>>

    /// Up to `count` authorizers' tokens after `after` in appid order, for going through all of them
    /// a page at a time: no count of the whole table and no offset to skip, so the last page costs
    /// what the first does.
    abstract AuthorizerTokensAfter: after: AuthorizerAppId option * count: int -> Task<AuthorizerTokenRow list>

    /// After api_authorizer_token: the access token and the (possibly rotated) refresh token, in one write.
    abstract SaveAuthorizerTokens:
        AuthorizerAppId * Expiring<AuthorizerAccessToken> * AuthorizerRefreshToken * now: DateTimeOffset -> Task

    /// Deletes the access token only while it is still `failed`; true when it did.
    abstract InvalidateAuthorizerToken: AuthorizerAppId * failed: AuthorizerAccessToken -> Task<bool>

    /// Revoked also deletes both tokens; the record and its history stay.
    abstract SetAuthorizerStatus:
        AuthorizerAppId * AuthorizerStatus * reason: string option * now: DateTimeOffset -> Task

    /// Authorized accounts whose access token is missing or expires before `before`, soonest first.
    abstract DueAuthorizers: before: DateTimeOffset * limit: int -> Task<AuthorizerAppId list>
    abstract CountAuthorizers: unit -> Task<int>

/// Small named values: the last WeChat error, the latest AuthorizationCode per account, ...
/// `secret = true` seals the value at rest.
type IValueStore =
    abstract PutValue: key: string * value: string * secret: bool -> Task
    abstract GetValue: key: string -> Task<string option>

/// The small pieces of domain state the services keep between calls and across instances, each a
/// named operation with typed arguments (kept in the value table under the keys of IValueStore's
/// earlier users, so existing databases keep working).
type IDomainState =
    /// The tenant a pair of authorization links was made for, under its pre_auth_code: an
    /// `authorized` push alone then binds the right tenant.
    abstract RememberPreAuthTenant: PreAuthCode * TenantId -> Task
    abstract PreAuthTenant: PreAuthCode -> Task<TenantId option>
    /// The account an authorization code was exchanged for: the same code again binds, and never
    /// exchanges twice.
    abstract RecordExchangedCode: AuthorizationCode * AuthorizerAppId -> Task
    abstract ExchangedCode: AuthorizationCode -> Task<AuthorizerAppId option>
    /// The latest authorization code pushed for an account (sealed at rest).
    abstract SaveLatestCode: AuthorizerAppId * AuthorizationCode -> Task
    abstract LatestCode: AuthorizerAppId -> Task<AuthorizationCode option>
    /// The marker (Decisions.ticketMarker) of the ticket WeChat refused.
    abstract SaveRejectedTicket: marker: int64 -> Task
    abstract RejectedTicket: unit -> Task<int64 option>
    /// The component's last failed call to WeChat: its errcode, if any, what it was, and when.
    abstract SaveComponentError: errcode: int option * message: string * at: DateTimeOffset -> Task
    abstract ComponentError: unit -> Task<(int option * string * DateTimeOffset) option>

    /// Marks an authorization `state` as used by `code` until `until`, unless another code's mark
    /// is still running at `now`: true for the first code and for the same code again (a reload),
    /// false when another code has the state. Atomic across instances (a lease row under the hashed
    /// state, held by the hashed code).
    abstract ClaimStateUse:
        state: string * code: AuthorizationCode * now: DateTimeOffset * until: DateTimeOffset -> Task<bool>

/// An audit trail of what arrived and what happened (unknown pushes, fast-register results, ...).
type EventRecord =
    {
        Kind: string
        Subject: string
        Detail: string
        At: DateTimeOffset
    }

type IEventLog =
    abstract AppendEvent: EventRecord -> Task
    /// Newest first.
    abstract RecentEvents: kind: string option * limit: int -> Task<EventRecord list>
    /// Deletes up to `max` records made before `before`, oldest first; answers how many went.
    abstract PurgeEvents: before: DateTimeOffset * max: int -> Task<int>

type DeliveryStatus =
    | Pending
    | Delivered
    | Dead

module DeliveryStatus =
    let toText =
        function
        | Pending -> "pending"
        | Delivered -> "delivered"
        | Dead -> "dead"

    let ofText =
        function
        | "delivered" -> Some Delivered
        | "dead" -> Some Dead
        | "pending" -> Some Pending
        | _ -> None

/// One inbound message or event, stored before WeChat hears an answer, and its delivery to the webhook.
type InboxItem =
    {
        Id: string
        /// MsgId for messages, FromUserName + CreateTime for events: WeChat's retries carry the same key.
        DedupeKey: string
        AuthorizerAppId: AuthorizerAppId
        Tenant: TenantId option
        Kind: string
        ReceivedAt: DateTimeOffset
        /// The webhook body, ready to send; or a message's decrypted XML, of which the inbox makes
        /// the body when the row is read (a row half the size: the body repeats the message's text).
        Payload: string
        /// The receiving instance claims the first attempt while WeChat waits.
        ClaimedBy: string option
        ClaimedUntil: DateTimeOffset option
    }

type Delivery =
    {
        Id: string
        AuthorizerAppId: AuthorizerAppId
        Tenant: TenantId option
        Kind: string
        ReceivedAt: DateTimeOffset
        Payload: string
        Status: DeliveryStatus
        Attempts: int
        NextAttemptAt: DateTimeOffset option
        LastError: string option
        DeliveredAt: DateTimeOffset option
    }

module Delivery =
    /// Where `d` sits in the deliveries list's order: the cursor that a page ending with it hands on.
    let cursor (d: Delivery) : Paging.Cursor =
        {
            At = d.ReceivedAt.ToUnixTimeMilliseconds()
            Id = d.Id
        }

    /// The cursor a page hands on to the next: its last item's, when more follow it.
    let nextCursor (items: Delivery list) (more: bool) =
        match List.tryLast items with
        | Some last when more -> Some(cursor last)
        | _ -> None

    /// The cursor a page hands on to the one before it: its first item's, when newer ones precede it.
    let previousCursor (items: Delivery list) (newer: bool) =
        match items with
        | first :: _ when newer -> Some(cursor first)
        | _ -> None

type AppendOutcome =
    /// Stored now, under this id.
    | Stored of id: string
    /// A retry of something already stored under this id.
    | Duplicate of id: string

/// The outcome of one delivery attempt, as MarkDelivered and MarkFailed record it; the intake log
/// hands them to the store in batches (RecordAttempts).
type AttemptRecord =
    | DeliveredAt of id: string * at: DateTimeOffset * holder: string
    | FailedAt of id: string * error: string * retryAt: DateTimeOffset option * holder: string

    member a.Id =
        match a with
        | DeliveredAt(id, _, _)
        | FailedAt(id, _, _, _) -> id

type IInboxStore =
    /// Stores the feed's items in one transaction (group commit), taking more while the feed gives
    /// them; resolves once they are durable, with one outcome per item in the order they were taken.
    abstract AppendInbox: GroupCommit.Feed<InboxItem> -> Task<AppendOutcome list>

    /// AppendInbox for a batch from the intake log, where the first attempt of some items was made
    /// before their rows are written: their outcomes (by id) are written with the rows, in the same
    /// transaction, rather than as updates after them.
    abstract IndexInbox:
        items: InboxItem list * firstAttempts: IReadOnlyDictionary<string, AttemptRecord> -> Task<AppendOutcome list>

    /// Claims up to `max` pending deliveries that are due at `now` and not claimed by a live holder
    /// (PostgreSQL: FOR UPDATE SKIP LOCKED), until `until`.
    abstract ClaimDeliveries:
        holder: string * now: DateTimeOffset * until: DateTimeOffset * max: int -> Task<Delivery list>

    /// Records the delivery, if `holder` still holds the claim (or nobody does): a holder whose
    /// claim ran out and was taken over leaves the outcome to the new holder (at least once).
    abstract MarkDelivered: id: string * at: DateTimeOffset * holder: string -> Task
    /// Counts the attempt; `retryAt = None` dead-letters the delivery. A delivery that is no longer
    /// pending (delivered meanwhile, or already dead), or whose claim another holder took over,
    /// stays as it is.
    abstract MarkFailed: id: string * error: string * retryAt: DateTimeOffset option * holder: string -> Task
    /// MarkDelivered and MarkFailed for many attempts, in one transaction, in order.
    abstract RecordAttempts: attempts: AttemptRecord list -> Task
    /// At start: lets go of the claims `holder` held before a crash, so an instance restarted under
    /// the same `WeChatFs:InstanceId` delivers them at once instead of after the claims run out.
    abstract ReleaseClaims: holder: string -> Task<int>
    abstract GetDelivery: id: string -> Task<Delivery option>
    abstract ListDeliveries: status: DeliveryStatus option * offset: int * limit: int -> Task<Page<Delivery>>

    /// The deliveries that come after `before` in the list's order (newest first, so older ones),
    /// found in the list's index: a page deep in the list costs what the first does, where an
    /// offset is counted entry by entry. The total is ListDeliveries'.
    abstract ListDeliveriesBefore:
        status: DeliveryStatus option * before: Paging.Cursor * limit: int -> Task<Page<Delivery>>

    /// The deliveries that come before `after` in the list's order (newer ones), the `limit` nearest
    /// to it, in the list's order: the page before a page by cursor, found in the same index.
    abstract ListDeliveriesAfter:
        status: DeliveryStatus option * after: Paging.Cursor * limit: int -> Task<Page<Delivery>>

    /// Folds the count changes recorded since the last fold into one figure per status (PostgreSQL:
    /// migration 10); the counts are exact either way, and reading them costs less after a fold.
    abstract FoldDeliveryCounts: unit -> Task
    /// PostgreSQL: vacuums the inbox once at least `after` of its rows were written or changed since
    /// its last vacuum, so that a deep page of the list skips its offset in the index alone; true when it
    /// did. SQLite: nothing, false.
    abstract VacuumInbox: after: int64 * stopping: CancellationToken -> Task<bool>
    /// Puts a dead (or pending) delivery back in line at `now`; false when unknown or already delivered.
    abstract RetryDelivery: id: string * now: DateTimeOffset -> Task<bool>
    /// Deletes up to `max` deliveries delivered before `before`, those that fell due first going
    /// first; answers how many went.
    /// Pending and dead ones stay whatever their age: nothing undelivered is ever dropped.
    abstract PurgeDelivered: before: DateTimeOffset * max: int -> Task<int>

/// Why the store did not answer a ping (/readyz reports it as not ready).
type PingError =
    /// The round trip failed; the database driver's message.
    | StoreUnreachable of reason: string

let describePingError (StoreUnreachable reason) = reason

type IStore =
    inherit IComponentStore
    inherit ILeaseStore
    inherit IAuthorizerStore
    inherit IValueStore
    inherit IDomainState
    inherit IEventLog
    inherit IInboxStore
    inherit IDisposable
    /// Creates or upgrades the schema (versioned; under a lock where several instances may start at once).
    abstract Migrate: unit -> Task
    /// A cheap round trip, for /readyz.
    abstract Ping: unit -> Task<Result<unit, PingError>>
    abstract Provider: string

/// A page of the deliveries list with the cursors that lead on from it: `Next`, its last item's
/// when older items follow (`before=`), and `Previous`, its first item's when newer items precede
/// (`after=`).
type DeliveriesPage =
    {
        Page: Page<Delivery>
        Next: Paging.Cursor option
        Previous: Paging.Cursor option
    }

/// The page at `offset`.
let deliveriesAt (store: IStore) (status: DeliveryStatus option) (offset: int) (limit: int) =
    task {
        let! page = store.ListDeliveries(status, offset, limit)
        let more = int64 offset + int64 page.Items.Length < int64 page.Total

        return
            {
                Page = page
                Next = Delivery.nextCursor page.Items more
                Previous = Delivery.previousCursor page.Items (offset > 0)
            }
    }

/// The page of at most `limit` deliveries after `before` in the list's order (one more is read to
/// know whether more follow).
let deliveriesBefore (store: IStore) (status: DeliveryStatus option) (before: Paging.Cursor) (limit: int) =
    task {
        let! page = store.ListDeliveriesBefore(status, before, limit + 1)
        let items = List.truncate limit page.Items

        return
            {
                Page = { page with Items = items }
                Next = Delivery.nextCursor items (page.Items.Length > limit)
                // The cursor's own item precedes them. Past the end of the list (the items that
                // followed the cursor were purged, or it was made by hand), the page before is the
                // list's last: the items up to the cursor's own, which `after=` reads from a place
                // just older than it (nothing lies between: the page is empty).
                Previous =
                    Delivery.previousCursor items true
                    |> Option.orElse (
                        if before.At > 0L then
                            Some { before with At = before.At - 1L }
                        else
                            None
                    )
            }
    }

/// The page of `limit` deliveries just before `after` in the list (newer ones). With fewer than
/// `limit` newer ones, the page before is the list's first page, whole, as a client going back
/// expects, rather than a short page of the newest items.
let deliveriesAfter (store: IStore) (status: DeliveryStatus option) (after: Paging.Cursor) (limit: int) =
    task {
        let! page = store.ListDeliveriesAfter(status, after, limit + 1)

        if page.Items.Length < limit then
            return! deliveriesAt store status 0 limit
        else
            // Newest first: one more than asked for is the first of them.
            let newer = page.Items.Length > limit
            let items = if newer then List.tail page.Items else page.Items

            return
                {
                    Page = { page with Items = items }
                    // The cursor's own item follows them.
                    Next = Delivery.nextCursor items true
                    Previous = Delivery.previousCursor items newer
                }
    }

module Leases =
    /// Runs `work` only while holding the named lease, and releases it afterwards whatever happens.
    /// None when another holder has it.
    let run (leases: ILeaseStore) name holder (now: DateTimeOffset) (until: DateTimeOffset) (work: unit -> Task<'a>) =
        task {
            let! held = leases.TryAcquireLease(name, holder, now, until)

            if not held then
                return None
            else
                let! outcome =
                    task {
                        try
                            let! r = work ()
                            return Ok r
                        with ex ->
                            return Error ex
                    }

                do! leases.ReleaseLease(name, holder)

                match outcome with
                | Ok r -> return Some r
                | Error ex ->
                    Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex).Throw()
                    return None
        }

/// The store's contract types and its lease helper, without a database (the SQL stores themselves
/// are tested against SQLite and PostgreSQL in SqlStoreTests).
module WeChatFs.Tests.StoreTests

open System
open System.Collections.Generic
open System.Threading.Tasks
open Expecto
open WeChatFs.Tests.Helpers
open WeChatFs.Store

/// Leases in a dictionary, with the same rules as the SQL stores: free, expired or already ours.
type private MemoryLeases() =
    let held = Dictionary<string, string * DateTimeOffset>()

    member _.Holder name =
        match held.TryGetValue name with
        | true, (h, _) -> Some h
        | _ -> None

    interface ILeaseStore with
        member _.TryAcquireLease(name, holder, now, until) =
            let free =
                match held.TryGetValue name with
                | true, (h, expires) -> h = holder || expires <= now
                | _ -> true

            if free then
                held[name] <- (holder, until)

            Task.FromResult free

        member _.ReleaseLease(name, holder) =
            match held.TryGetValue name with
            | true, (h, _) when h = holder -> held.Remove name |> ignore
            | _ -> ()

            Task.CompletedTask

let private now = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

let tests =
    testList
        "Store"
        [
            testProp "a delivery status survives its text form, and no other text is a status" (fun (text: string) ->
                [ Pending; Delivered; Dead ]
                |> List.forall (fun s -> DeliveryStatus.ofText (DeliveryStatus.toText s) = Some s)
                && (match DeliveryStatus.ofText text with
                    | Some s -> DeliveryStatus.toText s = text
                    | None -> not (List.contains text [ "pending"; "delivered"; "dead" ])))

            testCaseTask "work runs under a lease only while it is free, and the lease is released after it"
            <| fun () ->
                task {
                    let leases = MemoryLeases()
                    let otherGotIt = ResizeArray<bool>()

                    let! first =
                        Leases.run leases "refresh" "a" now (now.AddSeconds 30.) (fun () ->
                            task {
                                // While "a" works, "b" cannot take the lease.
                                let! other =
                                    (leases :> ILeaseStore).TryAcquireLease("refresh", "b", now, now.AddSeconds 30.)

                                otherGotIt.Add other
                                return 1
                            })

                    Expect.equal first (Some 1) "the holder's work ran and its result came back"
                    Expect.equal (List.ofSeq otherGotIt) [ false ] "b was refused while a held the lease"
                    Expect.equal (leases.Holder "refresh") None "released after the work"
                }

            testCaseTask "a held lease means the work does not run"
            <| fun () ->
                task {
                    let leases = MemoryLeases()

                    let! _ =
                        (leases :> ILeaseStore).TryAcquireLease("refresh", "b", now, now.AddSeconds 30.)

                    let mutable ran = false

                    let! r =
                        Leases.run leases "refresh" "a" now (now.AddSeconds 30.) (fun () ->
                            task {
                                ran <- true
                                return 1
                            })

                    Expect.equal r None "no result without the lease"
                    Expect.isFalse ran "the work did not run"
                    Expect.equal (leases.Holder "refresh") (Some "b") "the other holder keeps it"
                }

            testCaseTask "a lease is released when the work fails, and the failure is not swallowed"
            <| fun () ->
                task {
                    let leases = MemoryLeases()

                    let! ex =
                        failsWith<InvalidOperationException>(fun () ->
                            Leases.run leases "refresh" "a" now (now.AddSeconds 30.) (fun () ->
                                task { return raise (InvalidOperationException "WeChat is down") })
                            :> Task)

                    Expect.equal ex.Message "WeChat is down" "the work's own exception"
                    Expect.equal (leases.Holder "refresh") None "released after the failure"
                }
        ]

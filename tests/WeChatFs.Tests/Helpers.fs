/// Shared test helpers: generators, the one FsCheck configuration every property runs with, and a
/// throwaway PostgreSQL cluster started once per test run.
module WeChatFs.Tests.Helpers

open System
open System.IO
open Expecto
open FsCheck
open FsCheck.FSharp
open WeChatFs.Domain

let bytes n =
    Gen.arrayOfLength n (Gen.choose (0, 255) |> Gen.map byte)

/// Any string made of characters XML can carry (tabs, newlines and everything from space up, minus
/// surrogates and U+FFFE/U+FFFF), including the empty one.
let xmlSafeString =
    Gen.choose (0, 60)
    |> Gen.bind (fun n ->
        Gen.arrayOfLength
            n
            (Gen.frequency
                [
                    6, Gen.choose (0x20, 0x7E)
                    1, Gen.elements [ 0x09; 0x0A ]
                    3, Gen.choose (0xA0, 0xD7FF)
                    1, Gen.choose (0xE000, 0xFFFD)
                ]
             |> Gen.map char))
    |> Gen.map String

/// `X-WeChatFs-Signature` as a webhook receiver checks it: `sha256=` and the hex HMAC-SHA256 of the
/// body's UTF-8 under the secret, computed here apart from the gateway's code.
let signBody (secret: string) (body: string) =
    "sha256="
    + Convert.ToHexStringLower(
        Security.Cryptography.HMACSHA256.HashData(Text.Encoding.UTF8.GetBytes secret, Text.Encoding.UTF8.GetBytes body)
    )

let freePort () = PostgresCluster.freePort ()

let postgres = PostgresCluster.shared

let tempFolder () =
    let dir = Path.Combine(Path.GetTempPath(), $"wechatfs-test-{Guid.NewGuid():N}")
    Directory.CreateDirectory dir |> ignore
    dir

/// The instant generated clocks are spread around.
let t0 = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

/// Instants within about a day and a half either side of t0, by the minute: close enough together
/// that tickets, tokens and clocks generated independently still overlap in interesting ways.
let instants = Gen.choose (-2000, 2000) |> Gen.map (fun m -> t0.AddMinutes(float m))

let private expiring token =
    instants |> Gen.map (fun at -> { Token = token; ExpiresAt = at })

/// Arbitrary instances for the domain's types, registered once in `fsCheck` so that properties can
/// take them as plain typed arguments.
type DomainArbitraries =
    static member Instant() = Arb.fromGen instants

    static member Ticket() =
        instants
        |> Gen.map (fun at ->
            {
                Ticket = VerifyTicket $"t{at:yyyyMMddHHmm}"
                ReceivedAt = at
            })
        |> Arb.fromGen

    static member ComponentToken() =
        Gen.elements [ "tok-a"; "tok-b" ]
        |> Gen.bind (ComponentAccessToken >> expiring)
        |> Arb.fromGen

    static member AuthorizerToken() =
        Gen.elements [ "acc-a"; "acc-b" ]
        |> Gen.bind (AuthorizerAccessToken >> expiring)
        |> Arb.fromGen

    static member Status() =
        Gen.elements [ Authorized; Revoked; NeedsReauthorization ] |> Arb.fromGen

    static member Authorizer() =
        gen {
            let! status = Gen.elements [ Authorized; Revoked; NeedsReauthorization ]

            let! refresh =
                Gen.optionOf (Gen.elements [ AuthorizerRefreshToken "r1"; AuthorizerRefreshToken "r2" ])

            let! token =
                Gen.optionOf (
                    Gen.elements [ "acc-a"; "acc-b" ]
                    |> Gen.bind (AuthorizerAccessToken >> expiring)
                )

            return
                {
                    AppId = AuthorizerAppId "wx1"
                    Tenant = None
                    Status = status
                    StatusReason = None
                    FuncIds = []
                    Profile = None
                    RefreshToken = refresh
                    AccessToken = token
                    AuthorizedAt = t0
                    UpdatedAt = t0
                }
        }
        |> Arb.fromGen

/// The one FsCheck configuration: the domain's arbitraries, 200 cases unless `--fscheck-max-tests`
/// says otherwise.
let fsCheck =
    { FsCheckConfig.defaultConfig with
        maxTest = 200
        arbitrary = [ typeof<DomainArbitraries> ]
    }

/// A property test with the shared configuration.
let testProp name property =
    testPropertyWithConfig fsCheck name property

/// The exception of type 'e that `f` fails with; the test fails when it succeeds or fails otherwise.
let failsWith<'e when 'e :> exn> (f: unit -> Threading.Tasks.Task) : Threading.Tasks.Task<'e> =
    task {
        let! outcome =
            task {
                try
                    do! f ()
                    return None
                with ex ->
                    return Some ex
            }

        return
            match outcome with
            | Some(:? 'e as e) -> e
            | Some(:? AggregateException as a) when (a.InnerException :? 'e) -> a.InnerException :?> 'e
            | Some other -> failtest $"expected {typeof<'e>.Name}, got {other}"
            | None -> failtest $"expected {typeof<'e>.Name}, but it succeeded"
    }

/// The value of one series (`name{labels}`) in a Prometheus text answer, when present; labels the
/// exporter adds of its own (such as the scope) are ignored.
let metricValue (body: string) (series: string) =
    let labelsOf (text: string) =
        Text.RegularExpressions.Regex.Matches(text, "(\\w+)=\"([^\"]*)\"")
        |> Seq.map (fun m -> m.Groups[1].Value, m.Groups[2].Value)
        |> Set.ofSeq

    let name, wanted =
        match series.IndexOf '{' with
        | -1 -> series, Set.empty
        | i -> series.Substring(0, i), labelsOf (series.Substring i)

    body.Split('\n')
    |> Array.tryPick (fun line ->
        let m = Text.RegularExpressions.Regex.Match(line, "^(\\w+)(\\{[^}]*\\})? (\\S+)")

        if
            m.Success
            && m.Groups[1].Value = name
            && Set.isSubset wanted (labelsOf m.Groups[2].Value)
        then
            Some(float m.Groups[3].Value)
        else
            None)

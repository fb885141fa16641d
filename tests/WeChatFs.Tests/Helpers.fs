/// Shared test helpers: generators, and a throwaway PostgreSQL cluster started once per test run.
module WeChatFs.Tests.Helpers

open System
open System.IO
open System.Net
open System.Net.Sockets
open FsCheck
open FsCheck.FSharp

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

let freePort () = PostgresCluster.freePort ()

let postgres = PostgresCluster.shared

let tempFolder () =
    let dir = Path.Combine(Path.GetTempPath(), $"wechatfs-test-{Guid.NewGuid():N}")
    Directory.CreateDirectory dir |> ignore
    dir

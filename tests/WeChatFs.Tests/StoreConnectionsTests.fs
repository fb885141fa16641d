/// StoreConnections: PostgreSQL's connection string gets Npgsql's automatic preparation unless the
/// operator's string says otherwise.
module WeChatFs.Tests.StoreConnectionsTests

open Expecto
open Npgsql
open WeChatFs.StoreConnections

let tests =
    testList
        "StoreConnections"
        [
            testCase "a connection string without Max Auto Prepare gets 64, and keeps the rest"
            <| fun () ->
                let b =
                    NpgsqlConnectionStringBuilder(
                        postgresConnectionString "Host=db.internal;Port=6432;Database=wechatfs;Username=gw"
                    )

                Expect.equal b.MaxAutoPrepare 64 "Max Auto Prepare"
                Expect.equal (b.Host, b.Port, b.Database, b.Username) ("db.internal", 6432, "wechatfs", "gw") "the rest"

            testCase "a connection string that names Max Auto Prepare is kept as it is, 0 included"
            <| fun () ->
                for given in
                    [
                        "Host=db;Database=wechatfs;Max Auto Prepare=0"
                        "Host=db;Database=wechatfs;MaxAutoPrepare=8"
                    ] do
                    Expect.equal (postgresConnectionString given) given given
        ]

/// A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a temporary folder, a free
/// loopback port, the binaries of the Debian package `postgresql`.
module WeChatFs.Tests.PostgresCluster

open System
open System.Diagnostics
open System.IO
open System.Net
open System.Net.Sockets
open Npgsql

let freePort () =
    use listener = new TcpListener(IPAddress.Loopback, 0)
    listener.Start()
    (listener.LocalEndpoint :?> IPEndPoint).Port

let private run (file: string) (args: string list) =
    let psi =
        ProcessStartInfo(file, args, RedirectStandardOutput = true, RedirectStandardError = true)

    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEnd()
    p.WaitForExit()

    if p.ExitCode <> 0 then
        failwith $"{file} {String.Join(' ', args)} failed ({p.ExitCode}): {err} {out.Result}"

/// A PostgreSQL cluster in a temporary folder on a free loopback port, from the Debian package's
/// binaries. PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
type Cluster() =
    let bin =
        if Directory.Exists "/usr/lib/postgresql" then
            Directory.GetDirectories "/usr/lib/postgresql"
            |> Array.map (fun d -> Path.Combine(d, "bin"))
            |> Array.filter (fun d -> File.Exists(Path.Combine(d, "initdb")))
            |> Array.sortDescending
            |> Array.tryHead
        else
            None

    let binDir =
        match bin with
        | Some b -> b
        | None ->
            failwith "PostgreSQL server binaries not found (Debian package postgresql); the test command installs them"

    let root = Path.Combine(Path.GetTempPath(), $"wechatfs-pg-{Guid.NewGuid():N}")
    let data = Path.Combine(root, "data")
    let port = freePort ()
    let isRoot = Environment.UserName = "root"

    let asOwner (tool: string) (args: string list) =
        let exe = Path.Combine(binDir, tool)

        if isRoot then
            run "runuser" ([ "-u"; "postgres"; "--"; exe ] @ args)
        else
            run exe args

    do
        Directory.CreateDirectory root |> ignore

        if isRoot then
            run "chown" [ "postgres:postgres"; root ]

        asOwner "initdb" [ "-D"; data; "-U"; "postgres"; "-A"; "trust"; "-E"; "UTF8"; "--no-sync" ]

        asOwner
            "pg_ctl"
            [
                "-D"
                data
                "-l"
                Path.Combine(root, "log")
                "-w"
                "-t"
                "60"
                "-o"
                $"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
                "start"
            ]

    // The test host is often ended without ProcessExit running: a detached watcher stops the cluster
    // and removes its folder once this process is gone.
    do
        let stop =
            let ctl = Path.Combine(binDir, "pg_ctl")
            let asPostgres = if isRoot then $"runuser -u postgres -- {ctl}" else ctl
            $"{asPostgres} -D {data} -m immediate -w stop; rm -rf {root}"

        let watcher =
            ProcessStartInfo(
                "setsid",
                [
                    "sh"
                    "-c"
                    // Its own output goes nowhere, so nothing is printed after the test run's last line.
                    $"exec </dev/null >/dev/null 2>&1; while kill -0 {Environment.ProcessId}; do sleep 1; done; {stop}"
                ],
                UseShellExecute = false
            )

        Process.Start watcher |> ignore

    member _.ConnectionString(database: string) =
        $"Host=127.0.0.1;Port={port};Username=postgres;Database={database};Pooling=true;Maximum Pool Size=20"

    /// A new empty database, so every test starts from nothing.
    member this.NewDatabase() =
        let name = $"test_{Guid.NewGuid():N}"
        use conn = new NpgsqlConnection(this.ConnectionString "postgres")
        conn.Open()
        use cmd = new NpgsqlCommand($"CREATE DATABASE {name}", conn)
        cmd.ExecuteNonQuery() |> ignore
        this.ConnectionString name

    member _.Stop() =
        try
            asOwner "pg_ctl" [ "-D"; data; "-m"; "immediate"; "-w"; "stop" ]
        with _ ->
            ()

        try
            Directory.Delete(root, true)
        with _ ->
            ()

/// One cluster for the whole run, stopped when the process exits.
let shared =
    lazy
        (let cluster = Cluster()
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> cluster.Stop())
         cluster)

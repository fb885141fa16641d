// WeChatFs build script: plain F# with named targets and their prerequisites.
//   dotnet fsi build.fsx demo      gateway + simulator on loopback, embedded store
//   dotnet fsi build.fsx test      every test (starts its own throwaway PostgreSQL)
//   dotnet fsi build.fsx bench     benchmarks, printed side by side with their baselines
//   dotnet fsi build.fsx format    Fantomas over src, tests and this script
// Further arguments after the target are passed to the program (demo, serve, simulate, bench).

open System
open System.Diagnostics
open System.IO
open System.Text.RegularExpressions

let root = __SOURCE_DIRECTORY__
let args = fsi.CommandLineArgs |> Array.skip 1
let target = args |> Array.tryHead |> Option.defaultValue "test"
let rest = if args.Length > 1 then args[1..] else [||]
let isCi = Environment.GetEnvironmentVariable "CI" = "true"

let runIn (dir: string) (cmd: string) (argv: string list) =
    let psi =
        ProcessStartInfo(cmd, argv, WorkingDirectory = dir, UseShellExecute = false)

    psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] <- "1"
    psi.Environment["DOTNET_NOLOGO"] <- "1"
    use p = Process.Start psi
    p.WaitForExit()
    p.ExitCode

let run cmd argv =
    let code = runIn root cmd argv

    if code <> 0 then
        let line = String.Join(" ", cmd :: argv)
        failwith $"'{line}' exited with {code}"

/// The store tests start a throwaway PostgreSQL 15 cluster; install the Debian package when missing.
let ensurePostgres () =
    let hasInitdb =
        Directory.Exists "/usr/lib/postgresql"
        && Directory.GetDirectories "/usr/lib/postgresql"
           |> Array.exists (fun d -> File.Exists(Path.Combine(d, "bin", "initdb")))

    if not hasInitdb then
        printfn "=== installing PostgreSQL (Debian package postgresql)"
        run "apt-get" [ "update"; "-qq" ]
        run "apt-get" [ "install"; "-y"; "-qq"; "postgresql" ]

let restore () =
    run "dotnet" [ "tool"; "restore" ]
    // CI restores exactly what the lock files say; locally a changed dependency may update them.
    run "dotnet" ([ "restore"; "WeChatFs.sln" ] @ (if isCi then [ "--locked-mode" ] else []))

let build () =
    run
        "dotnet"
        [
            "build"
            "WeChatFs.sln"
            "-c"
            "Release"
            "--no-restore"
            "-nologo"
            "-clp:ErrorsOnly"
        ]

let hostDll =
    Path.Combine(root, "src", "Host.CSharp", "bin", "Release", "net10.0", "wechatfs.dll")

/// Sums the TRX counters of every test assembly into the plain `N passed, N failed` line.
let summarize (resultsDir: string) =
    let counters =
        Directory.GetFiles(resultsDir, "*.trx", SearchOption.AllDirectories)
        |> Array.collect (fun f ->
            Regex.Matches(File.ReadAllText f, "<Counters [^>]*>")
            |> Seq.map (fun m -> m.Value)
            |> Array.ofSeq)

    let sum name =
        counters
        |> Array.sumBy (fun c ->
            let m = Regex.Match(c, $" {name}=\"(\\d+)\"")
            if m.Success then int m.Groups[1].Value else 0)

    let passed, failed = sum "passed", sum "failed"
    let skipped = sum "total" - sum "executed"
    passed, failed, skipped

let test () =
    ensurePostgres ()
    restore ()
    run "dotnet" [ "fantomas"; "--check"; "src"; "tests"; "bench"; "build.fsx" ]
    build ()

    let resultsDir =
        Path.Combine(Path.GetTempPath(), $"wechatfs-tests-{Guid.NewGuid():N}")

    let code =
        runIn
            root
            "dotnet"
            [
                "test"
                "WeChatFs.sln"
                "-c"
                "Release"
                "--no-build"
                "--logger"
                "console;verbosity=normal"
                "--logger"
                "trx"
                "--results-directory"
                resultsDir
            ]

    let passed, failed, skipped =
        if Directory.Exists resultsDir then
            summarize resultsDir
        else
            0, 0, 0

    try
        Directory.Delete(resultsDir, true)
    with _ ->
        ()

    printfn $"tests: {passed} passed, {failed} failed, {skipped} skipped"

    if code <> 0 || passed = 0 then
        exit (if code <> 0 then code else 1)

let host command =
    restore ()
    build ()
    run "dotnet" ([ hostDll; command ] @ List.ofArray rest)

/// Benchmarks print their figures beside a baseline measured in the same run; Release build.
let bench () =
    ensurePostgres ()
    restore ()
    build ()

    run
        "dotnet"
        ([
            Path.Combine(root, "bench", "WeChatFs.Bench", "bin", "Release", "net10.0", "WeChatFs.Bench.dll")
         ]
         @ List.ofArray rest)

let targets: (string * (unit -> unit)) list =
    [
        "test", test
        "demo", (fun () -> host "demo")
        "run", (fun () -> host "demo")
        "serve", (fun () -> host "serve")
        "simulate", (fun () -> host "simulate")
        "bench", bench
        "build",
        (fun () ->
            restore ()
            build ())
        "format",
        (fun () ->
            run "dotnet" [ "tool"; "restore" ]
            run "dotnet" [ "fantomas"; "src"; "tests"; "bench"; "build.fsx" ])
    ]

match targets |> List.tryFind (fun (name, _) -> name = target) with
| Some(_, action) ->
    try
        action ()
    with ex ->
        eprintfn $"build.fsx {target}: {ex.Message}"
        exit 1
| None ->
    let known = targets |> List.map fst |> String.concat ", "
    eprintfn $"unknown target '{target}'; known: {known}"
    exit 2

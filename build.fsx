// WeChatFs build script: plain F# with named targets and their prerequisites.
//   dotnet fsi build.fsx demo      gateway + simulator on loopback, embedded store
//   dotnet fsi build.fsx test      every test (starts its own throwaway PostgreSQL); Expecto flags may
//                                  follow, e.g. `test --filter WeChatFs.Crypto` or `test --summary`
//   dotnet fsi build.fsx bench     benchmarks, printed side by side with their baselines
//   dotnet fsi build.fsx format    Fantomas over src, tests and this script
// Further arguments after the target are passed to the program (test, demo, serve, simulate, bench).

open System
open System.Diagnostics
open System.IO

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

/// Chromium and its driver for the browser tests (Debian packages), installed when missing.
let ensureChromium () =
    if not (File.Exists "/usr/bin/chromium" && File.Exists "/usr/bin/chromedriver") then
        printfn "=== installing Chromium (Debian packages chromium, chromium-driver)"
        run "apt-get" [ "update"; "-qq" ]
        run "apt-get" [ "install"; "-y"; "-qq"; "chromium"; "chromium-driver" ]

let testProject = Path.Combine(root, "tests", "WeChatFs.Tests")

/// Every test, in one Expecto program. Arguments after the target go to Expecto (`--filter`,
/// `--sequenced`, `--summary`, `--fscheck-max-tests`, ...); the program's last line is the
/// `tests: N passed, N failed, N skipped` that CI reads, computed from Expecto's own results.
let test () =
    ensurePostgres ()
    ensureChromium ()
    restore ()
    run "dotnet" [ "fantomas"; "--check"; "src"; "tests"; "bench"; "build.fsx" ]
    build ()

    let code =
        runIn
            root
            "dotnet"
            ([ "run"; "--project"; testProject; "-c"; "Release"; "--no-build"; "--" ]
             @ List.ofArray rest)

    if code <> 0 then
        exit code

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

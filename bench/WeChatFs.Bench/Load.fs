/// A closed-loop load generator on loopback: N connections, each sending its next request as soon as
/// the previous answer is in; latencies kept per request for percentiles.
module WeChatFs.Bench.Load

open System
open System.Diagnostics
open System.Net.Http
open System.Threading
open System.Threading.Tasks

type Result =
    {
        Name: string
        Requests: int
        Errors: int
        Seconds: float
        Latencies: float[]
        /// Bytes allocated in the whole process (server and load generator) per request.
        AllocatedPerRequest: float
        /// Garbage collections during the measured part, and their total pause.
        Collections: int
        PauseMs: float
        /// Processor time of the whole process per request, in microseconds: steadier than the
        /// rate when the machine's speed varies, and what the rate is made of when it is saturated.
        CpuMicrosPerRequest: float
    }

    member this.PerSecond = float this.Requests / this.Seconds

    member this.Percentile(p: float) =
        if this.Latencies.Length = 0 then
            nan
        else
            this.Latencies[min
                               (this.Latencies.Length - 1)
                               (int (ceil (p / 100.0 * float this.Latencies.Length)) - 1 |> max 0)]

/// Runs `send` from `connections` loops for `warmup` (not counted), then for `duration`. Each request
/// is built by `prepare` before its clock starts, so the figures are the server's, not the client's.
/// Also answers how much `counts` (two counters of the server under test) grew while measuring.
let runCounting
    (name: string)
    (connections: int)
    (warmup: TimeSpan)
    (duration: TimeSpan)
    (prepare: int -> 'request)
    (send: HttpClient -> 'request -> Task<bool>)
    (counts: unit -> int64 * int64)
    =
    task {
        use handler =
            new SocketsHttpHandler(
                MaxConnectionsPerServer = connections,
                PooledConnectionLifetime = TimeSpan.FromMinutes 10.
            )

        use client = new HttpClient(handler, Timeout = TimeSpan.FromSeconds 30.)
        let mutable measuring = false
        let mutable stopping = false
        let counter = ref 0

        let loop (worker: int) =
            task {
                let latencies = Collections.Generic.List<float>(100_000)
                let mutable errors = 0

                while not (Volatile.Read &stopping) do
                    let request = prepare (Interlocked.Increment counter)
                    let started = Stopwatch.GetTimestamp()

                    let! ok =
                        task {
                            try
                                return! send client request
                            with _ ->
                                return false
                        }

                    if Volatile.Read &measuring then
                        latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds)

                        if not ok then
                            errors <- errors + 1

                return latencies, errors
            }

        let workers = [| for w in 1..connections -> loop w |]
        do! Task.Delay warmup
        Volatile.Write(&measuring, true)
        let countsBefore = counts ()
        let allocatedBefore = GC.GetTotalAllocatedBytes false
        let collectionsBefore = GC.CollectionCount 0
        let pauseBefore = GC.GetTotalPauseDuration()
        let cpuBefore = Process.GetCurrentProcess().TotalProcessorTime
        let clock = Stopwatch.StartNew()
        do! Task.Delay duration
        Volatile.Write(&measuring, false)
        let seconds = clock.Elapsed.TotalSeconds
        let countsAfter = counts ()
        let allocated = GC.GetTotalAllocatedBytes false - allocatedBefore
        let collections = GC.CollectionCount 0 - collectionsBefore
        let pause = GC.GetTotalPauseDuration() - pauseBefore
        let cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore
        Volatile.Write(&stopping, true)
        let! results = Task.WhenAll workers
        let latencies = results |> Array.collect (fun (l, _) -> l.ToArray()) |> Array.sort

        return
            {
                Name = name
                Requests = latencies.Length
                Errors = results |> Array.sumBy snd
                Seconds = seconds
                Latencies = latencies
                AllocatedPerRequest = float allocated / float (max 1 latencies.Length)
                Collections = collections
                PauseMs = pause.TotalMilliseconds
                CpuMicrosPerRequest = cpu.TotalMicroseconds / float (max 1 latencies.Length)
            },
            (fst countsAfter - fst countsBefore, snd countsAfter - snd countsBefore)
    }

let runPrepared name connections warmup duration (prepare: int -> 'request) send =
    task {
        let! result, _ =
            runCounting name connections warmup duration prepare send (fun () -> 0L, 0L)

        return result
    }

let run name connections warmup duration (send: HttpClient -> int -> Task<bool>) =
    runPrepared name connections warmup duration id send

let header () =
    printfn
        "%-44s %8s %7s %7s %8s %6s %8s %6s %8s %8s  %s"
        "benchmark"
        "req/s"
        "p50 ms"
        "p99 ms"
        "p99.9 ms"
        "errors"
        "KB/req"
        "GCs"
        "GC ms"
        "CPU µs"
        "notes"

let print (r: Result) (notes: string) =
    printfn
        "%-44s %8.0f %7.2f %7.2f %8.2f %6d %8.1f %6d %8.0f %8.1f  %s"
        r.Name
        r.PerSecond
        (r.Percentile 50.0)
        (r.Percentile 99.0)
        (r.Percentile 99.9)
        r.Errors
        (r.AllocatedPerRequest / 1024.0)
        r.Collections
        r.PauseMs
        r.CpuMicrosPerRequest
        notes

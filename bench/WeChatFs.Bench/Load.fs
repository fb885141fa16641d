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
    }

    member this.PerSecond = float this.Requests / this.Seconds

    member this.Percentile(p: float) =
        if this.Latencies.Length = 0 then
            nan
        else
            this.Latencies[min
                               (this.Latencies.Length - 1)
                               (int (ceil (p / 100.0 * float this.Latencies.Length)) - 1 |> max 0)]

/// Runs `send` from `connections` loops for `warmup` (not counted), then for `duration`.
let run
    (name: string)
    (connections: int)
    (warmup: TimeSpan)
    (duration: TimeSpan)
    (send: HttpClient -> int -> Task<bool>)
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
                    let n = Interlocked.Increment counter
                    let started = Stopwatch.GetTimestamp()

                    let! ok =
                        task {
                            try
                                return! send client n
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
        let clock = Stopwatch.StartNew()
        do! Task.Delay duration
        Volatile.Write(&measuring, false)
        let seconds = clock.Elapsed.TotalSeconds
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
            }
    }

let header () =
    printfn "%-44s %10s %8s %8s %8s %7s  %s" "benchmark" "req/s" "p50 ms" "p99 ms" "p99.9 ms" "errors" "notes"

let print (r: Result) (notes: string) =
    printfn
        "%-44s %10.0f %8.2f %8.2f %8.2f %7d  %s"
        r.Name
        r.PerSecond
        (r.Percentile 50.0)
        (r.Percentile 99.0)
        (r.Percentile 99.9)
        r.Errors
        notes

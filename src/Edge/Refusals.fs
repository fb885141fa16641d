/// Logging of refused requests, cheap under a flood: each reason is written at most N times per
/// minute, in one short line; the rest are counted here (per reason, since start) for the metrics
/// to read, and the count of lines left out is reported when the next minute's first line is written.
module WeChatFs.Refusals

open System
open System.Collections.Concurrent
open System.Threading
open Microsoft.Extensions.Logging

/// Per reason: the current minute, lines written in it, lines left out in it.
type private Window =
    {
        mutable Minute: int64
        mutable Written: int
        mutable Suppressed: int
    }

type RefusalLog(logger: ILogger, perMinute: int, clock: TimeProvider) =
    let windows = ConcurrentDictionary<string, Window>()
    let refused = ConcurrentDictionary<string, int64>()
    let suppressed = ConcurrentDictionary<string, int64>()

    /// Keeps a caller's text short and on one line: a refusal line is at most about 200 characters.
    static member Short(text: string) =
        let text = if isNull text then "" else text

        let oneLine =
            String(text |> Seq.map (fun c -> if Char.IsControl c then ' ' else c) |> Array.ofSeq)

        if oneLine.Length > 120 then
            oneLine.Substring(0, 120) + "…"
        else
            oneLine

    /// One refused request: `reason` is a short stable name (the rate limit and the counters are per
    /// reason), `status` the answer, `detail` what was wrong (shortened).
    member _.Refused(reason: string, status: int, detail: string) =
        refused.AddOrUpdate(reason, 1L, fun _ n -> n + 1L) |> ignore
        let minute = clock.GetUtcNow().ToUnixTimeSeconds() / 60L

        let w =
            windows.GetOrAdd(
                reason,
                fun _ ->
                    {
                        Minute = minute
                        Written = 0
                        Suppressed = 0
                    }
            )

        let write, leftOut =
            lock w (fun () ->
                if w.Minute <> minute then
                    let left = w.Suppressed
                    w.Minute <- minute
                    w.Written <- 1
                    w.Suppressed <- 0
                    true, left
                elif w.Written < perMinute then
                    w.Written <- w.Written + 1
                    true, 0
                else
                    w.Suppressed <- w.Suppressed + 1
                    false, 0)

        if write then
            if leftOut > 0 then
                logger.LogWarning(
                    "refused {Reason} ({Status}): {Detail} [{LeftOut} more in the previous minute not logged]",
                    reason,
                    status,
                    RefusalLog.Short detail,
                    leftOut
                )
            else
                logger.LogWarning("refused {Reason} ({Status}): {Detail}", reason, status, RefusalLog.Short detail)
        else
            suppressed.AddOrUpdate(reason, 1L, fun _ n -> n + 1L) |> ignore

    /// Refusals per reason since start (logged or not).
    member _.RefusedCounts =
        refused :> Collections.Generic.IReadOnlyDictionary<string, int64>

    /// Refusals per reason whose log line was left out, since start: for the metrics.
    member _.SuppressedCounts =
        suppressed :> Collections.Generic.IReadOnlyDictionary<string, int64>

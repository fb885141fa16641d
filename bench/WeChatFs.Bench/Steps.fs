/// The request path's first steps timed one at a time on one thread, each beside what it replaced,
/// in alternating rounds of the same run: opening a push with its body read in place, against the
/// reader's way (a string of the body, a map of its fields, a string of the Encrypt field, and the
/// field decoded and decrypted into new arrays), and typing the opened message. Time and bytes
/// allocated per push, on the realistic pushes of the other benchmarks. Then the webhook body of a
/// first attempt, written as the UTF-8 it is sent as; and, first, the query's signature fields read in
/// place against ASP.NET Core's decoding of the whole query.
module WeChatFs.Bench.Steps

open System
open System.Diagnostics
open WeChatFs

let private token = "bench_token"

let private keys: Pushes.PushKeys =
    {
        Token = token
        AesKeys =
            [
                match Crypto.AesKey.create "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" with
                | Ok k -> k
                | Error e -> failwith $"{e}"
            ]
        ComponentAppId = Domain.ComponentAppId "wxbenchcomponent"
    }

/// A push as the edge hands it over: the query's signature fields and the body's bytes.
let private signedPush (query: string, body: string) : Pushes.SignedPush =
    // The bench's own query: digits and hex, nothing escaped.
    let field name =
        QueryString.tryPlainValue query name |> ValueOption.defaultValue ""

    {
        Timestamp = field "timestamp"
        Nonce = field "nonce"
        MsgSignature = field "msg_signature"
        Body = Text.Encoding.UTF8.GetBytes body
    }

/// Microseconds and bytes allocated per call of `step` over `inputs`, after a pass to warm it up.
let private measure (inputs: 'a[]) (step: 'a -> bool) =
    let pass () =
        for input in inputs do
            if not (step input) then
                failwith "a step failed on a good push"

    // Long enough for tiered compilation to settle on the step.
    for _ in 1..20 do
        pass ()

    let passes = 40
    let allocated = GC.GetAllocatedBytesForCurrentThread()
    let clock = Stopwatch.StartNew()

    for _ in 1..passes do
        pass ()

    let calls = float (passes * inputs.Length)
    clock.Elapsed.TotalMicroseconds / calls, float (GC.GetAllocatedBytesForCurrentThread() - allocated) / calls

let run (rounds: int) =
    let generator = Pushes.Generator(5, "gh_benchaccount")

    let encrypted =
        Array.init 2000 (fun _ ->
            Pushes.encrypt token keys.AesKeys.Head "wxbenchcomponent" "gh_benchaccount" (generator.Next()))

    let pushes = encrypted |> Array.map signedPush
    let queries = encrypted |> Array.map fst

    // The three signature fields: read in place, and as ASP.NET Core's query collection gives them
    // (the whole query decoded into a dictionary, as the request's Query does).
    let fieldsInPlace (query: string) =
        let read name =
            QueryString.tryPlainValue query name |> ValueOption.defaultValue ""

        (read "timestamp").Length
        + (read "nonce").Length
        + (read "msg_signature").Length
            >
            0

    let fieldsDecoded (query: string) =
        let q =
            Microsoft.AspNetCore.Http.QueryCollection(Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery query)

        (string q["timestamp"]).Length
        + (string q["nonce"]).Length
        + (string q["msg_signature"]).Length
            >
            0

    let plains =
        pushes
        |> Array.map (fun p ->
            match Pushes.openPush keys p with
            | Ok(plain, _) -> plain
            | Error e -> failwith $"{e}")

    let opened (r: Result<_, _>) = Result.isOk r

    let messages =
        plains
        |> Array.map (fun plain ->
            match Messages.parse plain with
            | Ok m -> plain, m
            | Error e -> failwith $"{e}")

    let received = DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero)

    // The webhook body of a first attempt and the request content it goes out as.
    let webhookBody (plain: string, m: Messages.Message) =
        use body =
            Messages.webhookBodyOf
                "0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"
                (Messages.kind m)
                (Domain.AuthorizerAppId "wxbenchaccount0001")
                None
                received
                m
                plain

        use content = new Net.Http.ReadOnlyMemoryContent(body.Memory)
        content.Headers.ContentType <- Net.Http.Headers.MediaTypeHeaderValue("application/json", "utf-8")
        content.Headers.ContentLength.HasValue

    let steps =
        [
            "the query's three fields, in place", (fun () -> measure queries fieldsInPlace)
            "the query's three fields, decoded (before)", (fun () -> measure queries fieldsDecoded)
            "open a push, in place", (fun () -> measure pushes (Pushes.openPush keys >> opened))
            "open a push, reader's way (before)", (fun () -> measure pushes (Pushes.openPushText keys >> opened))
            "type the message", (fun () -> measure plains (Messages.parse >> Result.isOk))
            "the webhook body, as sent", (fun () -> measure messages webhookBody)
        ]

    printfn "%-52s %8s %10s" "step (one thread, realistic pushes)" "µs" "B alloc"

    for round in 1..rounds do
        for name, step in steps do
            let micros, bytes = step ()
            printfn "%-52s %8.2f %10.0f" $"{name}, round {round}" micros bytes

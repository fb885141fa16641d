module WeChatFs.ErrorGuide

type Entry =
    {
        Code: int
        Meaning: string
        Action: string
        Retry: bool
    }

let all: Entry list = []

let tryFind (code: int) =
    all |> List.tryFind (fun e -> e.Code = code)

let explain (code: int) = $"{code}"

/// The full-network release check (全网发布, facts §6): which accounts are WeChat's test accounts,
/// and what each of their test pushes must be answered with. Pure.
module WeChatFs.ReleaseCheck

open WeChatFs.Wire
open WeChatFs.Messages

/// WeChat's five test groups: official account and mini program appids.
let releaseTestAppIds =
    set
        [
            "wx570bc396a51b8ff8"
            "wxd101a85aa106f53e"
            "wx9252c5e0bb1836fc"
            "wxc39235c15087f6f3"
            "wx8e1097c5bc82cde9"
            "wx7720d01d4b2a4500"
            "wx14550af28c71a144"
            "wx05d483572dcd5d8b"
            "wxa35b9c23cfe664eb"
            "wx5910277cae6fd970"
        ]

let isReleaseTestAccount (appid: string) = releaseTestAppIds.Contains appid

type ReleaseAction =
    /// Answer at once with this text.
    | PassiveText of string
    /// Answer empty at once; then api_query_auth with the code and a customer-service text.
    | QueryAuthThenSend of code: string
    | NotARelease

let private queryAuthPrefix = "QUERY_AUTH_CODE:"

let decideRelease (appid: string) (m: Message) =
    if not (isReleaseTestAccount appid) then
        NotARelease
    else
        match m.Body with
        | Text "TESTCOMPONENT_MSG_TYPE_TEXT" -> PassiveText "TESTCOMPONENT_MSG_TYPE_TEXT_callback"
        | Text t when t.StartsWith queryAuthPrefix -> QueryAuthThenSend(t.Substring queryAuthPrefix.Length)
        | _ when m.Header.MsgType = "event" ->
            match m.Header.Event with
            | Some e -> PassiveText(e + "from_callback")
            | None -> NotARelease
        | _ -> NotARelease

let releaseCustomText (code: string) = code + "_from_api"

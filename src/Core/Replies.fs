/// Passive replies (facts §5.3): the webhook's `{"reply": {...}}` answer read into a Reply, and a
/// Reply written as the plain reply XML that is then sealed for WeChat. Pure: strings in, values out.
module WeChatFs.Replies

open System
open System.Text.Json
open WeChatFs.Wire

type Article =
    {
        Title: string
        Description: string
        PicUrl: string
        Url: string
    }

/// A passive reply (facts §5.3).
type Reply =
    | TextReply of content: string
    | ImageReply of mediaId: string
    | VoiceReply of mediaId: string
    | VideoReply of mediaId: string * title: string * description: string
    | MusicReply of title: string * description: string * musicUrl: string * hqMusicUrl: string * thumbMediaId: string
    | NewsReply of Article list

type ReplyError =
    | NotJson
    | UnknownMsgType of string
    | MissingReplyField of string

let describeReplyError =
    function
    | NotJson -> "the webhook's answer is not JSON"
    | UnknownMsgType t -> $"reply msg_type '{t}' is not text, image, voice, video, music or news"
    | MissingReplyField f -> $"reply field {f} is missing"

/// The webhook's answer: `{"reply": {...}}` → Some reply; `{}`, no body or no `reply` → None.
let parseReply (answer: string) : Result<Reply option, ReplyError> =
    if String.IsNullOrWhiteSpace answer then
        Ok None
    else
        try
            use doc = JsonDocument.Parse answer

            match objProp "reply" doc.RootElement with
            | None -> Ok None
            | Some r ->
                let need name =
                    match stringProp name r with
                    | Some v -> Ok v
                    | None -> Error(MissingReplyField name)

                let maybe name =
                    stringProp name r |> Option.defaultValue ""

                match stringProp "msg_type" r with
                | None -> Error(MissingReplyField "msg_type")
                | Some "text" -> need "content" |> Result.map (TextReply >> Some)
                | Some "image" -> need "media_id" |> Result.map (ImageReply >> Some)
                | Some "voice" -> need "media_id" |> Result.map (VoiceReply >> Some)
                | Some "video" ->
                    need "media_id"
                    |> Result.map (fun m -> Some(VideoReply(m, maybe "title", maybe "description")))
                | Some "music" ->
                    need "thumb_media_id"
                    |> Result.map (fun thumb ->
                        Some(
                            MusicReply(
                                maybe "title",
                                maybe "description",
                                maybe "music_url",
                                maybe "hq_music_url",
                                thumb
                            )
                        ))
                | Some "news" ->
                    let articles =
                        arrayProp "articles" r
                        |> List.map (fun a ->
                            {
                                Title = stringProp "title" a |> Option.defaultValue ""
                                Description = stringProp "description" a |> Option.defaultValue ""
                                PicUrl = stringProp "pic_url" a |> Option.defaultValue ""
                                Url = stringProp "url" a |> Option.defaultValue ""
                            })

                    if articles.IsEmpty then
                        Error(MissingReplyField "articles")
                    else
                        Ok(Some(NewsReply articles))
                | Some other -> Error(UnknownMsgType other)
        with :? JsonException ->
            Error NotJson

/// CDATA that survives any text: a `]]>` inside is split across two sections.
let cdata (s: string) =
    "<![CDATA["
    + (if isNull s then "" else s.Replace("]]>", "]]]]><![CDATA[>"))
    + "]]>"

/// The plain reply XML: ToUserName is the sender (the user), FromUserName the account (facts §5.3).
let replyXml (toUser: string) (fromUser: string) (createTime: int64) (reply: Reply) =
    let msgType, body =
        match reply with
        | TextReply c -> "text", $"<Content>{cdata c}</Content>"
        | ImageReply m -> "image", $"<Image><MediaId>{cdata m}</MediaId></Image>"
        | VoiceReply m -> "voice", $"<Voice><MediaId>{cdata m}</MediaId></Voice>"
        | VideoReply(m, t, d) ->
            "video",
            $"<Video><MediaId>{cdata m}</MediaId><Title>{cdata t}</Title><Description>{cdata d}</Description></Video>"
        | MusicReply(t, d, url, hq, thumb) ->
            "music",
            $"<Music><Title>{cdata t}</Title><Description>{cdata d}</Description><MusicUrl>{cdata url}</MusicUrl><HQMusicUrl>{cdata hq}</HQMusicUrl><ThumbMediaId>{cdata thumb}</ThumbMediaId></Music>"
        | NewsReply articles ->
            let items =
                articles
                |> List.map (fun a ->
                    $"<item><Title>{cdata a.Title}</Title><Description>{cdata a.Description}</Description><PicUrl>{cdata a.PicUrl}</PicUrl><Url>{cdata a.Url}</Url></item>")
                |> String.concat ""

            "news", $"<ArticleCount>{articles.Length}</ArticleCount><Articles>{items}</Articles>"

    $"<xml><ToUserName>{cdata toUser}</ToUserName><FromUserName>{cdata fromUser}</FromUserName><CreateTime>{createTime}</CreateTime><MsgType>{cdata msgType}</MsgType>{body}</xml>"

/// The operator console's look: the page frame (navigation, sign-out, the "data as of" line), times
/// shown in the browser's time zone, small building blocks, and the pushes-per-minute chart drawn as
/// inline SVG on the server. Pure: values in, Giraffe.ViewEngine nodes out.
module WeChatFs.ConsoleViews

open System
open Giraffe.ViewEngine

/// One entry of the navigation: a page file adds itself with its title and path.
type NavItem = { Title: string; Path: string }

/// The anti-forgery field every form carries.
let csrfFieldName = "__csrf"

let csrfField (token: string) =
    input [ _type "hidden"; _name csrfFieldName; _value token ]

/// A POST form with its anti-forgery token.
let postForm (token: string) (action: string) (attrs: XmlAttribute list) (children: XmlNode list) =
    form ([ _method "post"; _action action ] @ attrs) (csrfField token :: children)

/// A time as UTC text, turned into the browser's local time by the page's script.
let time' (at: DateTimeOffset) =
    tag
        "time"
        [ attr "datetime" (at.UtcDateTime.ToString("o")) ]
        [ str (at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss") + " UTC") ]

let timeOpt (at: DateTimeOffset option) =
    match at with
    | Some t -> time' t
    | None -> str "—"

/// "3 h 5 min", "42 s": how long, for ages and time left.
let duration (span: TimeSpan) =
    let span = if span < TimeSpan.Zero then TimeSpan.Zero else span

    if span.TotalDays >= 1. then
        $"{int span.TotalDays} d {span.Hours} h"
    elif span.TotalHours >= 1. then
        $"{int span.TotalHours} h {span.Minutes} min"
    elif span.TotalMinutes >= 1. then
        $"{int span.TotalMinutes} min {span.Seconds} s"
    else
        $"{int span.TotalSeconds} s"

let badge (kind: string) (text: string) =
    span [ _class ("badge " + kind) ] [ str text ]

/// A status word with its colour: good (authorized, delivered), bad (dead, revoked), warn (the rest).
let statusBadge (status: string) =
    match status with
    | "authorized"
    | "delivered"
    | "ok" -> badge "good" status
    | "dead"
    | "revoked"
    | "needs_reauthorization" -> badge "bad" status
    | other -> badge "warn" other

/// A labelled definition list: label, value.
let facts (rows: (string * XmlNode) list) =
    dl [ _class "facts" ] [ for label, value in rows -> div [] [ dt [] [ str label ]; dd [] [ value ] ] ]

/// A table with a caption and column headers; wide tables scroll on a phone.
let dataTable (caption': string) (headers: string list) (rows: XmlNode list list) =
    div
        [ _class "scroll" ]
        [
            table
                []
                [
                    caption [] [ str caption' ]
                    thead [] [ tr [] [ for h in headers -> th [ attr "scope" "col" ] [ str h ] ] ]
                    tbody
                        []
                        [
                            if List.isEmpty rows then
                                yield tr [] [ td [ attr "colspan" (string headers.Length) ] [ str "Nothing to show." ] ]
                            else
                                for cells in rows -> tr [] [ for c in cells -> td [] [ c ] ]
                        ]
                ]
        ]

/// The pushes-per-minute chart: one bar per minute, the tallest reaching the top, with axis labels.
/// `points` are (unix minute, count), oldest first.
let pushChart (points: (int64 * int64) list) =
    let width, height = 720, 160
    let n = max 1 (List.length points)
    let peak = points |> List.map snd |> List.fold max 0L
    let barWidth = float width / float n
    let total = points |> List.sumBy snd

    let label =
        $"Pushes per minute over the last {n} minutes: {total} in all, at most {peak} in one minute"

    tag
        "svg"
        [
            attr "viewBox" $"0 0 {width} {height + 20}"
            attr "role" "img"
            attr "aria-label" label
            _class "chart"
            attr "preserveAspectRatio" "none"
        ]
        [
            tag "title" [] [ str label ]
            tag
                "line"
                [
                    attr "x1" "0"
                    attr "y1" (string height)
                    attr "x2" (string width)
                    attr "y2" (string height)
                    _class "axis"
                ]
                []
            for i, (minute, count) in List.indexed points do
                if count > 0L then
                    let h = float height * float count / float (max 1L peak)

                    tag
                        "rect"
                        [
                            attr "x" (sprintf "%.2f" (float i * barWidth))
                            attr "y" (sprintf "%.2f" (float height - h))
                            attr "width" (sprintf "%.2f" (max 0.5 (barWidth - 0.5)))
                            attr "height" (sprintf "%.2f" h)
                            attr "data-minute" (string minute)
                            attr "data-count" (string count)
                        ]
                        [ tag "title" [] [ str $"{count}" ] ]
            tag "text" [ attr "x" "0"; attr "y" (string (height + 16)); _class "tick" ] [ str $"{n} min ago" ]
            tag
                "text"
                [
                    attr "x" (string width)
                    attr "y" (string (height + 16))
                    attr "text-anchor" "end"
                    _class "tick"
                ]
                [ str "now" ]
            tag "text" [ attr "x" "4"; attr "y" "14"; _class "tick" ] [ str $"peak {peak}/min" ]
        ]

let private css =
    """
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#1b1b1b;background:#f6f7f9;line-height:1.45}
a{color:#0b57d0}header{background:#1e2a38;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem}
header a{color:#fff;text-decoration:none;padding:.3rem .1rem}header a[aria-current=page]{border-bottom:2px solid #7fd4a8}
header .brand{font-weight:700;margin-right:.5rem}main a[aria-current]{font-weight:700;text-decoration:none}header nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.2rem .9rem}
header form{margin-left:auto}main{max-width:72rem;margin:0 auto;padding:1rem}
h1{font-size:1.5rem;margin:.4rem 0 1rem}h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:.8rem}
.card{background:#fff;border:1px solid #d5d9de;border-radius:8px;padding:.8rem 1rem}
.facts div{display:flex;flex-wrap:wrap;gap:.2rem .8rem;padding:.15rem 0}.facts dt{font-weight:600;min-width:9rem}.facts dd{margin:0}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff}caption{text-align:left;font-weight:600;padding:.4rem 0}
th,td{border-bottom:1px solid #dde1e6;padding:.45rem .5rem;text-align:left;vertical-align:top}
.badge{display:inline-block;padding:0 .45rem;border-radius:4px;font-size:.9em}.good{background:#d7f5e3;color:#0c4a26}
.bad{background:#fde2e1;color:#7a1410}.warn{background:#fff1c9;color:#5c4300}
button,.button{background:#0b6b3a;color:#fff;border:0;border-radius:6px;padding:.5rem .9rem;font:inherit;cursor:pointer;text-decoration:none;display:inline-block}
button.secondary{background:#394b5f}header button{background:#394b5f;padding:.3rem .7rem}
label{display:block;font-weight:600;margin:.4rem 0 .2rem}input,select{font:inherit;padding:.4rem;border:1px solid #8a939d;border-radius:5px;max-width:100%}
.inline{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-end}.inline>div{display:flex;flex-direction:column}
.chart{width:100%;height:12rem;background:#fff;border:1px solid #d5d9de;border-radius:8px}.chart rect{fill:#2f7d55}.chart .axis{stroke:#66707a}
.chart .tick{font-size:12px;fill:#3d4650}.muted{color:#4f5963}.error{color:#8a1610;font-weight:600}
#stale{margin-top:2rem;color:#4f5963;font-size:.9em}#stale.old{color:#7a1410;font-weight:600}
.qr svg{width:14rem;height:14rem;background:#fff}code{background:#eceff3;padding:0 .25rem;border-radius:3px;word-break:break-all}
"""

/// Local times and the staleness line: small, and the page works without it.
let private localTimeScript =
    """
document.querySelectorAll('time[datetime]').forEach(function(t){var d=new Date(t.getAttribute('datetime'));if(!isNaN(d)){t.title=t.textContent;t.textContent=d.toLocaleString();}});
(function(){var s=document.getElementById('stale');if(!s)return;var at=new Date(s.getAttribute('data-rendered'));
function tick(){var m=Math.floor((Date.now()-at)/60000);if(m>=1){s.className='old';s.querySelector('.age').textContent=' This page is '+m+' min old; reload for current data.';}}
tick();setInterval(tick,15000);})();
"""

/// The whole page: navigation (with the current page marked), sign-out, the content, and when the
/// data was read.
let layout
    (items: NavItem list)
    (current: string)
    (csrf: string option)
    (renderedAt: DateTimeOffset)
    (title': string)
    (content: XmlNode list)
    =
    html
        [ _lang "en" ]
        [
            head
                []
                [
                    meta [ _charset "utf-8" ]
                    meta [ _name "viewport"; _content "width=device-width,initial-scale=1" ]
                    title [] [ str (title' + " · WeChatFs console") ]
                    tag "style" [] [ rawText css ]
                ]
            body
                []
                [
                    header
                        []
                        [
                            span [ _class "brand" ] [ str "WeChatFs" ]
                            match csrf with
                            | Some token ->
                                nav
                                    [ attr "aria-label" "Console" ]
                                    [
                                        ul
                                            []
                                            [
                                                for item in items ->
                                                    li
                                                        []
                                                        [
                                                            a
                                                                [
                                                                    _href item.Path
                                                                    if item.Path = current then
                                                                        attr "aria-current" "page"
                                                                ]
                                                                [ str item.Title ]
                                                        ]
                                            ]
                                    ]

                                postForm
                                    token
                                    "/console/sign-out"
                                    [ _id "sign-out" ]
                                    [ button [ _type "submit" ] [ str "Sign out" ] ]
                            | None -> ()
                        ]
                    main
                        []
                        [
                            h1 [] [ str title' ]
                            yield! content
                            p
                                [ _id "stale"; attr "data-rendered" (renderedAt.UtcDateTime.ToString("o")) ]
                                [ str "Data as of "; time' renderedAt; str "."; span [ _class "age" ] [] ]
                        ]
                    script [] [ rawText localTimeScript ]
                ]
        ]

let render (node: XmlNode) = RenderView.AsString.htmlDocument node

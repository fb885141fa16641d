/// Realistic pushes for the benchmarks: text messages of the size and content WeChat delivers to a
/// shop's account (Chinese with some ASCII, punctuation and emoji, 20 to 200 characters, from a few
/// hundred customers), so the encrypted body is about 900 bytes, as the independent push kit sends.
/// Short ASCII messages flattered the path: decryption, parsing and storage grow with the content.
module WeChatFs.Bench.Pushes

open System
open System.Text
open WeChatFs

let private chinese =
    [|
        "您好"
        "在吗"
        "想问一下"
        "这款还有现货吗"
        "大概几天能到"
        "订单号发您了"
        "物流好久没更新了"
        "辛苦了"
        "东西收到了很满意"
        "能开专票吗"
        "退款怎么操作"
        "收货地址填错了"
        "满减券显示不可用"
        "积分在哪里看"
        "人工客服"
        "周六上午去门店取"
        "下单时选错颜色了"
        "鞋码正常买就行吗"
        "钱已经付了"
        "付款一直失败"
        "好嘞"
        "可以的"
        "请尽快安排一下"
        "节假日开门吗"
        "最近的店在哪"
        "帮我预约一下"
        "运费怎么算"
        "再优惠点吧"
        "包裹到哪了"
        "收到的有破损"
        "换货要多久"
        "少发了一件"
        "活动截止到什么时候"
        "一直在你们家买"
        "手机号换了"
        "会员绑定不上"
        "二维码扫不出来"
        "页面一直在加载"
        "账号登录异常"
    |]

let private ascii =
    [|
        "OK"
        "iPad Air"
        "Wi-Fi"
        "VIP"
        "4G"
        "APP"
        "thx"
        "size M"
        "H5"
        "https://shop.example.cn/p/"
        "No."
        "SKU"
        "138****"
        "ID"
        "mail me@example.cn"
        "2026-12-01"
        "v1.8.0"
    |]

let private punctuation = [| "，"; "。"; "？"; "！"; " "; "、"; "~"; "……"; "?"; "," |]
let private emoji = [| "😄"; "👌"; "🙏"; "🤔"; "💯"; "🎁" |]

/// 20 to 200 characters (code points), mostly Chinese phrases.
let content (random: Random) =
    let target = random.Next(20, 201)
    let text = StringBuilder()
    let mutable length = 0

    while length < target do
        let roll = random.NextDouble()

        let pick (words: string[]) = words[random.Next words.Length]

        let word =
            if roll < 0.55 then pick chinese
            elif roll < 0.75 then pick ascii
            elif roll < 0.82 then string (random.Next(100, 99999))
            elif roll < 0.97 then pick punctuation
            else pick emoji

        text.Append word |> ignore
        length <- length + Seq.length (word.EnumerateRunes())

    // Cut at a code point, never inside a surrogate pair.
    let runes = text.ToString().EnumerateRunes() |> Seq.truncate target
    String.Join("", runes |> Seq.map string)

/// A generator of distinct text-message pushes: every call a new MsgId, 500 customers.
type Generator(seed: int, toUser: string) =
    let random = Random seed
    let letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    let openids =
        Array.init 500 (fun _ -> "o" + String(Array.init 27 (fun _ -> letters[random.Next letters.Length])))

    let msgIdBase = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 10_000L
    let mutable n = 0L

    /// The decrypted XML of the next push, laid out as WeChat sends it (one element a line). Safe
    /// to call from every connection of the load generator at once.
    member _.Next() =
        let n = Threading.Interlocked.Increment &n
        let now = DateTimeOffset.UtcNow.ToUnixTimeSeconds()

        let text, user =
            lock random (fun () ->
                (content random).Replace("]]>", "]]]]><![CDATA[>"), openids[random.Next openids.Length])

        $"<xml><ToUserName><![CDATA[{toUser}]]></ToUserName>\n<FromUserName><![CDATA[{user}]]></FromUserName>\n<CreateTime>{now}</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[{text}]]></Content>\n<MsgId>{msgIdBase + n}</MsgId>\n</xml>"

/// The push as WeChat sends it: encrypted for the component, signed, in its outer XML; the query and
/// the body.
let encrypt (token: string) (key: Crypto.AesKey) (componentAppId: string) (toUser: string) (plain: string) =
    let encrypted =
        Crypto.encrypt key componentAppId (Security.Cryptography.RandomNumberGenerator.GetBytes 16) plain

    let timestamp = string (DateTimeOffset.UtcNow.ToUnixTimeSeconds())
    let nonce = string (Random.Shared.Next(100_000_000, Int32.MaxValue))
    let signature = Crypto.msgSignature token timestamp nonce encrypted

    $"?timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={signature}",
    $"<xml><ToUserName><![CDATA[{toUser}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"

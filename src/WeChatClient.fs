module WeChatFs.WeChatClient

let internal placeholder = ()

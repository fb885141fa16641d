module WeChatFs.Config

let internal placeholder = ()

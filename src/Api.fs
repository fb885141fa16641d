module WeChatFs.Api

let internal placeholder = ()

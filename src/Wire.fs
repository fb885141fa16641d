module WeChatFs.Wire

let internal placeholder = ()

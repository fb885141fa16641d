module WeChatFs.ComponentTokens

let internal placeholder = ()

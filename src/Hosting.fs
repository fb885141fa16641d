module WeChatFs.Hosting

let internal placeholder = ()

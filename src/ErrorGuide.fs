module WeChatFs.ErrorGuide

let internal placeholder = ()

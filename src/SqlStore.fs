module WeChatFs.SqlStore

let internal placeholder = ()

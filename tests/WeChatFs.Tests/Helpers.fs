module WeChatFs.Tests.Helpers

let internal placeholder = ()

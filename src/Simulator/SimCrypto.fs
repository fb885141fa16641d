module WeChatFs.Simulator.SimCrypto

let internal placeholder = ()

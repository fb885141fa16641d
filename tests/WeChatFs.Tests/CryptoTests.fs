module WeChatFs.Tests.CryptoTests

open Xunit

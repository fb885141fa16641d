module WeChatFs.Tests.DomainTests

open Xunit

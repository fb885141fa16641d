module WeChatFs.Tests.SecretsTests

open Xunit

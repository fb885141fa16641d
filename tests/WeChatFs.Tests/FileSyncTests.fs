/// FileSync: what is written is there after a sync, and a file that cannot be synced apart from the
/// system (a character device) is not an error, as with FileStream.Flush(true).
module WeChatFs.Tests.FileSyncTests

open System.IO
open Expecto
open WeChatFs.Tests.Helpers

let tests =
    testList
        "FileSync"
        [
            testCase "a file written over in place and synced reads back as written"
            <| fun () ->
                let path = Path.Combine(tempFolder (), "log")

                do
                    use file =
                        new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read, 1)

                    file.Write(Array.create 4096 1uy, 0, 4096)
                    WeChatFs.FileSync.syncData file
                    file.Position <- 100L
                    file.Write(Array.create 10 2uy, 0, 10)
                    WeChatFs.FileSync.syncData file

                let bytes = File.ReadAllBytes path
                Expect.equal bytes.Length 4096 "the length"
                Expect.equal bytes[99..110] (Array.concat [ [| 1uy |]; Array.create 10 2uy; [| 1uy |] ]) "the bytes"

            testCase "a character device is synced as FileStream.Flush(true) does it: without an error"
            <| fun () ->
                if System.OperatingSystem.IsLinux() then
                    use devNull = new FileStream("/dev/null", FileMode.Open, FileAccess.Write)
                    devNull.WriteByte 1uy
                    WeChatFs.FileSync.syncData devNull
        ]

/// Making what was written to a file durable. Where the system has fdatasync it is used: it writes
/// the data and what is needed to read it back (the size, when the file grew), but not the time of
/// the last write. On ext4 an fsync of a file written over in place still commits the file system's
/// journal for that time alone, and so waits behind every other file's pending metadata: under load
/// the inbox's checkpoints held the intake log's fsync for 100-270 ms.
module WeChatFs.FileSync

open System
open System.IO
open System.Runtime.InteropServices

[<DllImport("libc", SetLastError = true)>]
extern int private fdatasync(int fd)

let private EINTR = 4
let private EINVAL = 22

/// fdatasync of the file (fsync where fdatasync is not to be had); raises IOException when the disk
/// refused, as FileStream.Flush(true) does.
let syncData (file: FileStream) =
    // Anything the stream itself holds goes to the system first.
    file.Flush()

    if OperatingSystem.IsLinux() then
        let handle = file.SafeFileHandle
        let mutable added = false
        handle.DangerousAddRef(&added)

        try
            let mutable result = fdatasync (int (handle.DangerousGetHandle()))

            while result <> 0 && Marshal.GetLastPInvokeError() = EINTR do
                result <- fdatasync (int (handle.DangerousGetHandle()))

            if result <> 0 then
                match Marshal.GetLastPInvokeError() with
                // A file system that cannot sync data alone: the whole file then.
                | errno when errno = EINVAL -> file.Flush true
                | errno -> raise (IOException($"fdatasync failed (errno {errno})", errno))
        finally
            if added then
                handle.DangerousRelease()
    else
        file.Flush true

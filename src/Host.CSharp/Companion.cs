using System.Diagnostics;
using System.Runtime.InteropServices;

namespace WeChatFs.Host;

/// <summary>`wechatfs demo` and `wechatfs simulate`: they need the simulator, which the production
/// executable does not carry, so they run wechatfs-demo when it is installed next to this
/// executable (a build of the solution puts it there), passing the arguments and the exit code on.</summary>
public static class Companion
{
    /// <summary>The companion executable's file name.</summary>
    public const string FileName = "wechatfs-demo.dll";

    /// <summary>Runs <paramref name="command"/> in wechatfs-demo; 2 with a hint when it is not installed.</summary>
    public static async Task<int> RunAsync(string command, string[] args)
    {
        var path = Path.Combine(AppContext.BaseDirectory, FileName);
        if (!File.Exists(path))
        {
            Console.Error.WriteLine(
                $"wechatfs {command} needs the simulator, which is not part of this installation " +
                $"({FileName} is not next to wechatfs). Build the solution, or run `dotnet fsi build.fsx {command}`.");
            return 2;
        }
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false };
        start.ArgumentList.Add(path);
        start.ArgumentList.Add(command);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var child = Process.Start(start) ?? throw new InvalidOperationException($"could not start {path}");
        // Ctrl+C reaches the child too (same console); wait for it to stop rather than leaving it behind.
        Console.CancelKeyPress += (_, e) => e.Cancel = true;
        // Stopped otherwise (a service manager's SIGTERM): stop the child, then return its exit code.
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            try
            {
                child.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It has exited already.
            }
        });
        await child.WaitForExitAsync();
        return child.ExitCode;
    }
}

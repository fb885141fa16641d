// wechatfs-demo: the commands that need the simulator, apart from the production executable.
//   wechatfs-demo demo        gateway + simulator on loopback, with an embedded store
//   wechatfs-demo simulate    the simulator alone
//   wechatfs-demo receiver    a webhook receiver that answers 204 at once (for bench/kit.sh)
// `wechatfs demo` and `wechatfs simulate` start this program when it is installed next to wechatfs.
using WeChatFs;
using WeChatFs.Host;

var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "demo";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;

try
{
    return command switch
    {
        "demo" => await Demo.RunAsync(rest),
        "simulate" => await SimulatorCommand.RunAsync(rest),
        "receiver" => await Receiver.RunAsync(rest),
        _ => Commands.Usage(2),
    };
}
catch (WeChatFsConfigurationException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 3;
}

/// <summary>The business system at its fastest: every delivery taken and answered 204 at once, so a
/// benchmark of the gateway with a webhook measures the gateway.</summary>
static class Receiver
{
    public static async Task<int> RunAsync(string[] args)
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder([.. args, "--hostBuilder:reloadConfigOnChange=false"]);
        builder.Logging.ClearProviders();
        var app = builder.Build();
        app.MapGet("/", () => "receiver");
        app.MapPost("/{**rest}", async (HttpContext ctx) =>
        {
            await ctx.Request.Body.CopyToAsync(Stream.Null);
            ctx.Response.StatusCode = 204;
        });
        await app.RunAsync();
        return 0;
    }
}

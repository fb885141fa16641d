using Microsoft.Extensions.Configuration;

namespace WeChatFs.Host;

/// <summary>The host's small commands: usage, explain, check-config.</summary>
public static class Commands
{
    public static int Usage(int code)
    {
        var text = """
            usage: wechatfs [command] [options]
              serve                 run the gateway (default); --urls http://127.0.0.1:5080
              demo                  gateway and simulator together on loopback, with an embedded store
              simulate              the WeChat simulator alone; --urls http://127.0.0.1:5081
              explain <errcode>     what a WeChat errcode means and what to do
              check-config          validate the configuration and exit
            configuration: appsettings.json, environment (WeChatFs__Component__AppId) or --WeChatFs:Component:AppId=...
            """;
        (code == 0 ? Console.Out : Console.Error).WriteLine(text);
        return code;
    }

    public static int Explain(string[] args)
    {
        if (args.Length == 0 || !int.TryParse(args[0], out var code))
        {
            Console.Error.WriteLine("usage: wechatfs explain <errcode>, e.g. wechatfs explain 40001");
            return 2;
        }
        Console.WriteLine(WeChatFsErrorGuide.Explain(code));
        return WeChatFsErrorGuide.IsKnown(code) ? 0 : 1;
    }

    public static int CheckConfig(string[] args)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile("appsettings.json", optional: true)
            .AddEnvironmentVariables()
            .AddCommandLine(args)
            .Build();
        var problems = WeChatFsConfiguration.Check(configuration);
        if (problems.Count == 0)
        {
            Console.WriteLine("configuration is valid");
            return 0;
        }
        foreach (var problem in problems)
        {
            Console.Error.WriteLine(problem);
        }
        return 3;
    }
}

// wechatfs-demo: the commands that need the simulator, apart from the production executable.
//   wechatfs-demo demo        gateway + simulator on loopback, with an embedded store
//   wechatfs-demo simulate    the simulator alone
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
        _ => Commands.Usage(2),
    };
}
catch (WeChatFsConfigurationException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 3;
}

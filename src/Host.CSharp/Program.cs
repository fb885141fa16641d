// wechatfs: the gateway's entry point.
//   wechatfs [serve] [--urls http://127.0.0.1:5080] [--WeChatFs:Key=value ...]   run the gateway
//   wechatfs demo                                                                gateway + simulator on loopback
//   wechatfs simulate                                                            the simulator alone
// demo and simulate run wechatfs-demo (src/Demo), which carries the simulator, when it is installed
// next to this executable; the gateway itself does not reference the simulator.
//   wechatfs explain <errcode>                                                   what a WeChat errcode means
//   wechatfs check-config                                                        validate the configuration
using WeChatFs;
using WeChatFs.Host;

var command = args.Length > 0 && !args[0].StartsWith('-') ? args[0] : "serve";
var rest = args.Length > 0 && !args[0].StartsWith('-') ? args[1..] : args;

try
{
    return command switch
    {
        "serve" => await Gateway.ServeAsync(rest),
        "demo" or "simulate" => await Companion.RunAsync(command, rest),
        "explain" => Commands.Explain(rest),
        "check-config" => Commands.CheckConfig(rest),
        "help" or "--help" or "-h" => Commands.Usage(0),
        _ => Commands.Usage(2),
    };
}
catch (WeChatFsConfigurationException ex)
{
    Console.Error.WriteLine(ex.Message);
    return 3;
}

using WeChatFs.Simulator;

namespace WeChatFs.Host;

/// <summary>The whole flow on one machine: the simulator stands in for WeChat, the gateway runs with an
/// embedded store, and the console says what to open.</summary>
public static class Demo
{
    public const string AdminKey = "demo-admin-key";

    static string Setting(string[] args, string name, string fallback)
    {
        var prefix = $"--{name}=";
        var given = args.FirstOrDefault(a => a.StartsWith(prefix, StringComparison.Ordinal));
        return given?.Substring(prefix.Length) ?? fallback;
    }

    public static SimulatorSettings SimulatorOptions(string gatewayUrl, TimeSpan ticketInterval, string simulatorUrl) =>
        new() { GatewayUrl = gatewayUrl, TicketInterval = ticketInterval, Url = simulatorUrl };

    public static async Task<int> RunAsync(string[] args)
    {
        var gatewayUrl = Setting(args, "gateway", "http://127.0.0.1:5080").TrimEnd('/');
        var simulatorUrl = Setting(args, "simulator", "http://127.0.0.1:5081").TrimEnd('/');
        var dataFolder = Setting(args, "data", Path.Combine("data", "demo"));

        var options = SimulatorOptions(gatewayUrl, TimeSpan.FromSeconds(30), simulatorUrl);
        await using var simulator = await SimulatorLauncher.StartAsync(options);

        var settings = new Dictionary<string, string?>
        {
            ["urls"] = gatewayUrl,
            ["WeChatFs:Component:AppId"] = options.ComponentAppId,
            ["WeChatFs:Component:AppSecret"] = options.ComponentAppSecret,
            ["WeChatFs:Component:Token"] = options.Token,
            ["WeChatFs:Component:EncodingAesKey"] = options.EncodingAesKey,
            ["WeChatFs:Component:CheckInterval"] = "00:00:05",
            ["WeChatFs:PublicBaseUrl"] = gatewayUrl,
            ["WeChatFs:WeChat:ApiBaseUrl"] = simulatorUrl,
            ["WeChatFs:WeChat:MpBaseUrl"] = simulatorUrl,
            ["WeChatFs:WeChat:OpenBaseUrl"] = simulatorUrl,
            ["WeChatFs:WeChat:PayBaseUrl"] = simulator.PayBaseUrl,
            ["WeChatFs:WeChat:PayServerCaCertificate"] = simulator.PayCaFile,
            ["WeChatFs:Storage:ConnectionString"] = $"Data Source={Path.Combine(dataFolder, "wechatfs.db")}",
            ["WeChatFs:Admin:ApiKey"] = AdminKey,
            // Web pages on behalf of accounts: two menu destinations, both the simulator's stand-in business page.
            ["WeChatFs:OAuth:FuncKeys:member:TargetUrl"] = $"{simulatorUrl}/sim/business-page",
            ["WeChatFs:OAuth:FuncKeys:member:Scope"] = "snsapi_userinfo",
            ["WeChatFs:OAuth:FuncKeys:member:Description"] = "member card (asks for the profile)",
            ["WeChatFs:OAuth:FuncKeys:home:TargetUrl"] = $"{simulatorUrl}/sim/business-page?page=home",
            ["WeChatFs:OAuth:FuncKeys:home:Scope"] = "snsapi_base",
            ["WeChatFs:VerificationFiles:MP_verify_demo.txt"] = "demo",
            // The walk-through opens the start page with a bare ?tenant=; a deployment uses the
            // signed links of POST /api/authorization-links instead.
            ["WeChatFs:Authorization:AllowUnsignedTenant"] = "true",
        };
        var gateway = Gateway.Build(args.Where(a => !a.StartsWith("--gateway=") && !a.StartsWith("--simulator=") && !a.StartsWith("--data=")).ToArray(), settings, jsonLogs: false);
        await gateway.StartAsync();

        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new("Bearer", AdminKey);
        // The simulator is new on every run, and its push at start came before the gateway listened.
        // Its ticket goes to the gateway now: a store kept from an earlier run holds that run's ticket
        // and token, which this simulator rejects, and the first call heals with this ticket rather
        // than failing until the next scheduled push.
        await PushTicketAsync(http, simulatorUrl);
        var token = await WaitForTokenAsync(http, gatewayUrl, TimeSpan.FromSeconds(20));

        const string messageExample = """{"appid":"wxsimoa00000000001","msg_type":"text","fields":{"Content":"hello","MsgId":"1"}}""";
        Console.WriteLine($"""

            WeChatFs demo: the gateway and a simulated WeChat, on this machine only.
              gateway    {gatewayUrl}   admin key: {AdminKey}
              simulator  {simulatorUrl}   (stands in for WeChat; open it to see the simulated accounts)
              store      {Path.GetFullPath(dataFolder)}
              console    {gatewayUrl}/console   (sign in with the admin key)
              API docs   {gatewayUrl}/docs   ({gatewayUrl}/openapi/v1.json)
              metrics    {gatewayUrl}/metrics   (Prometheus text; the admin key as bearer)

              component token: {token}

            Try:
              curl -H "Authorization: Bearer {AdminKey}" {gatewayUrl}/api/component/status
              curl -H "Authorization: Bearer {AdminKey}" {gatewayUrl}/api/component/access-token
              open {gatewayUrl}/wechat/component/authorize?tenant=demo-shop in a browser, authorize an account,
              then: curl -H "Authorization: Bearer {AdminKey}" {gatewayUrl}/api/authorizers
              send it a message as WeChat would:
                curl -X POST {simulatorUrl}/sim/messages -d '{messageExample}'
              run WeChat's full-network release check: curl -X POST {simulatorUrl}/sim/release-test
              once wxsimoa00000000001 is authorized, open its menu page as a follower would:
                {gatewayUrl}/wechat/oauth/wxsimoa00000000001/member?state=hello
              and resolve the wxTkId the business page shows:
                curl -H "Authorization: Bearer {AdminKey}" {gatewayUrl}/api/oauth/tracking-tokens/<wxTkId>
              send a cash red packet: see "Cash red packets" in the README (WeChat Pay is simulated at {simulator.PayBaseUrl})

            Ctrl+C stops both.
            """);

        await gateway.WaitForShutdownAsync();
        return 0;
    }

    static async Task PushTicketAsync(HttpClient http, string simulatorUrl)
    {
        for (var attempt = 0; attempt < 20; attempt++)
        {
            try
            {
                using var response = await http.PostAsync($"{simulatorUrl}/sim/push-ticket", null);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(250);
        }
    }

    static async Task<string> WaitForTokenAsync(HttpClient http, string gatewayUrl, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var response = await http.GetAsync($"{gatewayUrl}/api/component/access-token");
                if (response.IsSuccessStatusCode)
                {
                    using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                    return $"valid until {doc.RootElement.GetProperty("expires_at").GetString()}";
                }
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(250);
        }
        return "not yet (no ticket arrived; see /api/component/status)";
    }
}

/// <summary>The simulator alone, for a gateway running elsewhere.</summary>
public static class SimulatorCommand
{
    public static async Task<int> RunAsync(string[] args)
    {
        var url = args.SkipWhile(a => a != "--urls").Skip(1).FirstOrDefault() ?? "http://127.0.0.1:5081";
        var gateway = args.SkipWhile(a => a != "--gateway").Skip(1).FirstOrDefault() ?? "http://127.0.0.1:5080";
        var options = Demo.SimulatorOptions(gateway.TrimEnd('/'), TimeSpan.FromMinutes(10), url);
        await using var simulator = await SimulatorLauncher.StartAsync(options);
        Console.WriteLine($"WeChatFs simulator on {simulator.BaseUrl}, pushing to {gateway}; component appid {options.ComponentAppId}. Ctrl+C stops it.");
        var done = new TaskCompletionSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; done.TrySetResult(); };
        await done.Task;
        return 0;
    }
}

// A shop's own web app with the gateway inside it: AddWeChatFs with options, MapWeChatFs with a
// convention attached, and WeChat called with tokens from IWeChatFsTokens.
// Settings (environment or command line): Sample:ComponentAppId, Sample:ComponentAppSecret,
// Sample:Token, Sample:EncodingAesKey, Sample:WeChatBaseUrl, Sample:DataFolder, Sample:AdminApiKey.
using System.Net.Http.Json;
using System.Text.Json;
using WeChatFs;

var builder = WebApplication.CreateBuilder(args);

// AddWeChatFs leaves logging alone; request lines carry authorization codes, so keep them out.
builder.Logging.AddWeChatFsLogFilters();

var sample = builder.Configuration.GetSection("Sample");
var weChatBaseUrl = sample["WeChatBaseUrl"] ?? "https://api.weixin.qq.com";
try
{
    AddGateway(builder.Services);
}
catch (WeChatFsConfigurationException ex)
{
    // The same messages as `wechatfs check-config`: key, problem, fix.
    Console.Error.WriteLine(ex.Message);
    return 3;
}

void AddGateway(IServiceCollection services) => services.AddWeChatFs(options =>
{
    options.ComponentAppId = sample["ComponentAppId"];
    options.ComponentAppSecret = sample["ComponentAppSecret"];
    options.Token = sample["Token"];
    options.EncodingAesKey = sample["EncodingAesKey"];
    options.ApiBaseUrl = weChatBaseUrl;
    options.MpBaseUrl = weChatBaseUrl;
    options.PublicBaseUrl = sample["PublicBaseUrl"];
    options.ConnectionString = $"Data Source={Path.Combine(sample["DataFolder"] ?? "data", "wechatfs.db")}";
    options.AdminApiKey = sample["AdminApiKey"];
    options.CheckInterval = TimeSpan.FromMilliseconds(200);
});
builder.Services.AddHttpClient("wechat", http => http.BaseAddress = new Uri(weChatBaseUrl));

var app = builder.Build();

// The gateway's endpoints are a route group: conventions apply to all of them.
app.MapWeChatFs().Add(endpoint => endpoint.Metadata.Add(new SampleTag("wechatfs")));
app.Use(async (context, next) =>
{
    if (context.GetEndpoint()?.Metadata.GetMetadata<SampleTag>() is { } tag)
    {
        context.Response.Headers["X-Sample-Group"] = tag.Name;
    }
    await next(context);
});

// The component token's expiry, never the token itself.
app.MapGet("/sample/component-token", async (IWeChatFsTokens tokens, CancellationToken cancellationToken) =>
{
    var token = await tokens.GetComponentAccessTokenAsync(cancellationToken);
    return Results.Json(new { expires_at = token.ExpiresAt, length = token.Token.Length });
});

// WeChat called directly with the component token: how many accounts have authorized the platform.
app.MapGet("/sample/authorizer-count", async (IWeChatFsTokens tokens, IHttpClientFactory clients, IConfiguration configuration, CancellationToken cancellationToken) =>
{
    var token = await tokens.GetComponentAccessTokenAsync(cancellationToken);
    var http = clients.CreateClient("wechat");
    var response = await http.PostAsJsonAsync(
        $"/cgi-bin/component/api_get_authorizer_list?component_access_token={Uri.EscapeDataString(token.Token)}",
        new { component_appid = configuration["Sample:ComponentAppId"], offset = 0, count = 100 },
        cancellationToken);
    using var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken));
    var root = answer.RootElement;
    if (root.TryGetProperty("errcode", out var errcode) && errcode.GetInt32() != 0)
    {
        return Results.Problem(statusCode: 502, detail: $"WeChat answered errcode {errcode.GetInt32()}");
    }
    return Results.Json(new { total_count = root.GetProperty("total_count").GetInt32() });
});

// An authorizer's token, with the failure as the exception explains it.
app.MapGet("/sample/authorizers/{appid}/token", async (string appid, IWeChatFsTokens tokens, CancellationToken cancellationToken) =>
{
    try
    {
        var token = await tokens.GetAuthorizerAccessTokenAsync(appid, cancellationToken);
        return Results.Json(new { expires_at = token.ExpiresAt });
    }
    catch (WeChatFsTokenException ex)
    {
        int? errcode = ex.Errcode;
        return Results.Json(
            new { failure = ex.Failure.ToString(), errcode, message = ex.Message },
            statusCode: ex.Failure == WeChatFsTokenFailure.UnknownAuthorizer ? 404 : 409);
    }
});

await app.RunAsync();
return 0;

/// <summary>Endpoint metadata the sample attaches to the gateway's group.</summary>
sealed record SampleTag(string Name);

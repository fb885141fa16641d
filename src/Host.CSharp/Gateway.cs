namespace WeChatFs.Host;

/// <summary>The gateway as C# teams host it: AddWeChatFs + MapWeChatFs on a plain WebApplication.</summary>
public static class Gateway
{
    /// <summary>A gateway web application, configured from <paramref name="args"/>, the environment and
    /// appsettings.json, then <paramref name="overrides"/>.</summary>
    /// <param name="args">Command-line arguments (--urls, --WeChatFs:Key=value).</param>
    /// <param name="overrides">Settings that win over every other source.</param>
    /// <param name="jsonLogs">One JSON object per log line, with the request id in its scopes (serve);
    /// the demo keeps readable console lines.</param>
    public static WebApplication Build(string[] args, IDictionary<string, string?>? overrides = null, bool jsonLogs = true)
    {
        // Configuration is read and validated once, at start; a reload watcher would add nothing but
        // cost: it watches the content root recursively, where the SQLite store usually lives, and
        // wakes on every write to it.
        var builder = WebApplication.CreateBuilder([.. args, "--hostBuilder:reloadConfigOnChange=false"]);
        if (overrides is not null)
        {
            builder.Configuration.AddInMemoryCollection(overrides);
        }
        builder.Logging.ClearProviders();
        if (jsonLogs)
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            });
        }
        else
        {
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        }
        // Request lines carry authorization codes in query strings, and the HTTP client's lines carry
        // tokens: keep them out of the logs. AddWeChatFs leaves logging to the host; every host must
        // do the same (README, "Hosting it in your own app").
        builder.Logging.AddWeChatFsLogFilters();
        // The request scope comes from the middleware below, without the Activity that ASP.NET Core
        // starts with its own (RequestScope says why).
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        builder.Services.AddWeChatFs(builder.Configuration);
        var app = builder.Build();
        var requests = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("WeChatFs.Requests");
        app.Use(async (context, next) =>
        {
            // The same id as the request's log scope, so a caller can quote it.
            var id = context.TraceIdentifier;
            context.Response.Headers["X-Request-Id"] = id;
            using (requests.BeginScope(new RequestScope(id, context.Request.Path.Value ?? "")))
            {
                await next(context);
            }
        });
        app.MapWeChatFs();
        return app;
    }

    /// <summary>Runs the gateway until the process is stopped.</summary>
    public static async Task<int> ServeAsync(string[] args)
    {
        var app = Build(args);
        await app.RunAsync();
        return 0;
    }
}

using System.Collections;

namespace WeChatFs.Host;

/// <summary>The log scope of one request: its id (the response's X-Request-Id) and path, under the
/// names ASP.NET Core's own request scope uses, so every line logged while the request runs can be
/// tied to it.</summary>
/// <remarks>ASP.NET Core opens its scope only while the category
/// Microsoft.AspNetCore.Hosting.Diagnostics is on, and then also starts an Activity for every
/// request, with trace ids and two more changes of the async-local context: the gateway turns that
/// category off and opens this scope instead.</remarks>
public sealed class RequestScope(string requestId, string path) : IReadOnlyList<KeyValuePair<string, object?>>
{
    /// <inheritdoc/>
    public int Count => 2;

    /// <inheritdoc/>
    public KeyValuePair<string, object?> this[int index] =>
        index switch
        {
            0 => new("RequestId", requestId),
            1 => new("RequestPath", path),
            _ => throw new ArgumentOutOfRangeException(nameof(index)),
        };

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        yield return this[0];
        yield return this[1];
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>As ASP.NET Core writes its request scope in a text line.</summary>
    public override string ToString() => $"RequestPath:{path} RequestId:{requestId}";
}

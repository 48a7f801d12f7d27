using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Alora.Server;

/// <summary>An error in OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with its HTTP status.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1710", Justification = "OpenAI calls it an error object; the name says what the client receives")]
public sealed class ApiError(int status, string message, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public string Type => Status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        429 or 503 => "server_overloaded",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static ApiError BadField(string field, string message) => new(400, $"{field}: {message}", field, "invalid_value");

    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message,
            ["type"] = Type,
            ["param"] = Param,
            ["code"] = Code ?? Status.ToString(System.Globalization.CultureInfo.InvariantCulture),
        },
    };

    public async Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        response.ContentType = "application/json";
        await response.WriteAsync(ToJson().ToJsonString(JsonDefaults.Options)).ConfigureAwait(false);
    }
}

internal static class JsonDefaults
{
    public static readonly JsonSerializerOptions Options = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}

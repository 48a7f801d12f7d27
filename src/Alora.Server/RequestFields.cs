using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Server;

/// <summary>Reads a JSON request body field by field; a wrong field is a 400 that names it, what was expected and what came.</summary>
internal sealed class RequestFields(JsonObject body)
{
    public JsonObject Body { get; } = body;

    public static async Task<RequestFields> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        // Read whole (Kestrel bounds the body's size), so bytes System.Text.Json would only reject when a string is
        // read (invalid UTF-8, half a surrogate pair) are a 400 here rather than an exception deep in a handler.
        using var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (Alora.Formats.Utf8Text.DescribeInvalid(bytes) is { } bad) throw new ApiError(400, $"the request body cannot be read: {bad}", null, "invalid_json");
        JsonNode? node;
        try { node = JsonNode.Parse(bytes, documentOptions: Alora.Formats.Utf8Text.StrictJson); }
        catch (JsonException e) { throw new ApiError(400, $"the request body is not valid JSON: {e.Message}", null, "invalid_json"); }
        return node is JsonObject body ? new RequestFields(body)
            : throw new ApiError(400, $"the request body must be a JSON object, found {Describe(node)}", null, "invalid_json");
    }

    public static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "an array",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => $"the string {Truncate(v.ToJsonString())}",
        _ => Truncate(node.ToJsonString()),
    };

    private static string Truncate(string text) => text.Length <= 60 ? text : text[..57] + "...";

    public bool Has(string name) => Body.TryGetPropertyValue(name, out var node) && node is not null;

    public JsonNode? Node(string name) => Body.TryGetPropertyValue(name, out var node) ? node : null;

    public string RequiredString(string name)
        => OptionalString(name) ?? throw ApiError.BadField(name, "is required");

    public string? OptionalString(string name)
    {
        var node = Node(name);
        if (node is null) return null;
        return node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw ApiError.BadField(name, $"expected a string, found {Describe(node)}");
    }

    public bool? OptionalBool(string name)
    {
        var node = Node(name);
        if (node is null) return null;
        return node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>()
            : throw ApiError.BadField(name, $"expected true or false, found {Describe(node)}");
    }

    public double? OptionalNumber(string name, double min, double max)
    {
        var node = Node(name);
        if (node is null) return null;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) throw ApiError.BadField(name, $"expected a number, found {Describe(node)}");
        double value = double.Parse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture);
        if (value < min || value > max || double.IsNaN(value)) throw ApiError.BadField(name, $"must be between {min} and {max}, found {value}");
        return value;
    }

    public long? OptionalInteger(string name, long min, long max)
    {
        var node = Node(name);
        if (node is null) return null;
        // Read the number's JSON text: a value parsed from the body and one built in code (an int, say) both have it.
        long value;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) throw ApiError.BadField(name, $"expected an integer, found {Describe(node)}");
        string text = v.ToJsonString();
        if (!long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out value))
        {
            if (double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double real) && real == Math.Floor(real) && Math.Abs(real) < 9e15)
                value = (long)real;
            else throw ApiError.BadField(name, $"expected an integer, found {Describe(node)}");
        }
        if (value < min || value > max) throw ApiError.BadField(name, $"must be between {min} and {max}, found {value}");
        return value;
    }

    /// <summary>OpenAI's stop: a string or an array of up to 16 strings.</summary>
    public IReadOnlyList<string> StopStrings(string name)
    {
        var node = Node(name);
        switch (node)
        {
            case null: return [];
            case JsonValue v when v.GetValueKind() == JsonValueKind.String: return [v.GetValue<string>()];
            case JsonArray array:
                var stops = new List<string>();
                for (int i = 0; i < array.Count; i++)
                    stops.Add(array[i] is JsonValue s && s.GetValueKind() == JsonValueKind.String ? s.GetValue<string>()
                        : throw ApiError.BadField($"{name}[{i}]", $"expected a string, found {Describe(array[i])}"));
                return stops;
            default: throw ApiError.BadField(name, $"expected a string or an array of strings, found {Describe(node)}");
        }
    }

    public JsonObject? OptionalObject(string name)
    {
        var node = Node(name);
        return node switch
        {
            null => null,
            JsonObject o => o,
            _ => throw ApiError.BadField(name, $"expected an object, found {Describe(node)}"),
        };
    }

    /// <summary>Token ids: an array of integers in [0, vocabulary).</summary>
    public static int[] TokenIds(string name, JsonArray array, int vocabSize)
    {
        var ids = new int[array.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            if (array[i] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue(out int id))
                throw ApiError.BadField($"{name}[{i}]", $"expected a token id (an integer), found {Describe(array[i])}");
            if ((uint)id >= (uint)vocabSize) throw ApiError.BadField($"{name}[{i}]", $"token id {id} is outside the vocabulary [0, {vocabSize})");
            ids[i] = id;
        }
        return ids;
    }
}

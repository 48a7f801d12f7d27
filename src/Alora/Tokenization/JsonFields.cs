using System.Text.Json;

namespace Alora.Tokenization;

/// <summary>Typed reads of JSON fields with errors that name the file, the field, what was expected and what was found.</summary>
internal static class JsonFields
{
    public static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"the string \"{Truncate(value.GetString()!)}\"",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => $"the boolean {value.GetRawText()}",
        JsonValueKind.Null => "null",
        JsonValueKind.Array => $"an array of {value.GetArrayLength()} items",
        JsonValueKind.Object => "an object",
        _ => value.ValueKind.ToString(),
    };

    private static string Truncate(string text) => text.Length > 60 ? text[..60] + "…" : text;

    public static JsonElement? Optional(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public static JsonElement Required(JsonElement obj, string name, string where) =>
        Optional(obj, name) ?? throw new InvalidDataException($"{where}: missing field '{name}'.");

    public static string RequiredString(JsonElement obj, string name, string where)
    {
        var value = Required(obj, name, where);
        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw new InvalidDataException($"{where}.{name}: expected a string, found {Describe(value)}.");
    }

    public static string? OptionalString(JsonElement obj, string name, string where)
    {
        var value = Optional(obj, name);
        if (value == null) return null;
        return value.Value.ValueKind == JsonValueKind.String ? value.Value.GetString() : throw new InvalidDataException($"{where}.{name}: expected a string, found {Describe(value.Value)}.");
    }

    public static bool Bool(JsonElement obj, string name, bool fallback, string where)
    {
        var value = Optional(obj, name);
        if (value == null) return fallback;
        return value.Value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"{where}.{name}: expected true or false, found {Describe(value.Value)}."),
        };
    }

    public static int Int(JsonElement obj, string name, int fallback, string where)
    {
        var value = Optional(obj, name);
        if (value == null) return fallback;
        return value.Value.ValueKind == JsonValueKind.Number && value.Value.TryGetInt32(out int result)
            ? result
            : throw new InvalidDataException($"{where}.{name}: expected an integer, found {Describe(value.Value)}.");
    }

    public static JsonElement Array(JsonElement obj, string name, string where)
    {
        var value = Required(obj, name, where);
        return value.ValueKind == JsonValueKind.Array ? value : throw new InvalidDataException($"{where}.{name}: expected an array, found {Describe(value)}.");
    }
}

using System.Text.Json.Nodes;
using Alora.Formats;

namespace Alora.Models;

/// <summary>The parts of generation_config.json that change what generation does: its end-of-sequence ids.</summary>
public static class GenerationConfig
{
    /// <summary>eos_token_id of generation_config.json (an id or a list), or none if the file is absent.</summary>
    public static IReadOnlyList<int> ReadEosTokenIds(string modelFolder)
    {
        string path = Path.Combine(modelFolder, "generation_config.json");
        if (!File.Exists(path)) return [];
        JsonNode? root;
        string text = File.ReadAllText(path);
        if (Formats.Utf8Text.DescribeInvalid(text) is { } bad) throw new ModelFormatException($"{path}: {bad}");
        try { root = JsonNode.Parse(text, documentOptions: Formats.Utf8Text.StrictJson); }
        catch (System.Text.Json.JsonException e) { throw new ModelFormatException($"{path}: not valid JSON: {e.Message}", e); }
        if (root is not JsonObject config)
            throw new ModelFormatException($"{path}: expected a JSON object, found {root?.ToJsonString() ?? "null"}");
        return config["eos_token_id"] switch
        {
            null => [],
            JsonArray a => a.Select((x, i) => x is JsonValue v && v.TryGetValue<int>(out int id) ? id
                : throw new ModelFormatException($"{path}: eos_token_id[{i}] should be a token id, found {x?.ToJsonString() ?? "null"}")).ToArray(),
            JsonValue v when v.TryGetValue<int>(out int id) => [id],
            var other => throw new ModelFormatException($"{path}: eos_token_id should be an id or a list of ids, found {other.ToJsonString()}"),
        };
    }
}

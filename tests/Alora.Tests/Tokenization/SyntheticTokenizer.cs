using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>
/// Small tokenizer.json files written for one test: a character-level BPE over printable ASCII
/// (id = code point) plus '▁' (id 128), so the ids spell out exactly how the text was cut.
/// </summary>
internal static class SyntheticTokenizer
{
    public const int Metaspace = 128;

    public static JsonObject Json(JsonArray? addedTokens = null, JsonNode? normalizer = null, JsonNode? preTokenizer = null,
        JsonNode? postProcessor = null, JsonNode? decoder = null, JsonArray? merges = null, Dictionary<string, int>? extraVocab = null)
    {
        var vocab = new JsonObject();
        for (int c = 32; c < 127; c++) vocab[((char)c).ToString()] = c;
        vocab["\u2581"] = Metaspace;
        vocab["<unk>"] = 0;
        foreach (var (token, id) in extraVocab ?? []) vocab[token] = id;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = addedTokens ?? [],
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = postProcessor,
            ["decoder"] = decoder,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = "<unk>", ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = vocab, ["merges"] = merges ?? [],
            },
        };
    }

    public static JsonObject Added(int id, string content, bool special = true, bool normalized = false, bool lstrip = false, bool rstrip = false, bool singleWord = false) => new()
    {
        ["id"] = id, ["content"] = content, ["special"] = special, ["normalized"] = normalized,
        ["lstrip"] = lstrip, ["rstrip"] = rstrip, ["single_word"] = singleWord,
    };

    public static Tokenizer Load(JsonObject json, TempFolder folder, string? tokenizerConfig = null)
    {
        string path = folder.File("tokenizer.json");
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        string? configPath = null;
        if (tokenizerConfig != null)
        {
            configPath = folder.File("tokenizer_config.json");
            File.WriteAllText(configPath, tokenizerConfig);
        }
        return Tokenizer.FromTokenizerJson(path, configPath);
    }

    /// <summary>The ids of a string under the identity mapping of this vocabulary (one id per character).</summary>
    public static int[] Chars(string text) => text.Select(c => c == '\u2581' ? Metaspace : (int)c).ToArray();
}

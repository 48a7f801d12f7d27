using System.Text.Json;

namespace Alora.Tokenization;

/// <summary>
/// What transformers reads beside tokenizer.json: tokenizer_config.json (special token names, add_bos_token,
/// clean_up_tokenization_spaces, tokenizer_class), with special_tokens_map.json and added_tokens.json as fallbacks.
/// </summary>
internal sealed record TokenizerConfig
{
    public string? TokenizerClass { get; init; }
    public string? BosToken { get; init; }
    public string? EosToken { get; init; }
    public string? UnknownToken { get; init; }
    public string? PadToken { get; init; }
    public IReadOnlyList<string> AdditionalSpecialTokens { get; init; } = [];
    public bool? AddBosToken { get; init; }
    public bool? AddEosToken { get; init; }
    public bool CleanUpTokenizationSpaces { get; init; }
    /// <summary>Tokens from added_tokens_decoder / added_tokens.json, merged in when tokenizer.json lacks them.</summary>
    public IReadOnlyList<AddedToken> ExtraAddedTokens { get; init; } = [];

    public static TokenizerConfig Empty { get; } = new();

    /// <summary>Reads tokenizer_config.json and, where present beside it, special_tokens_map.json and added_tokens.json.</summary>
    public static TokenizerConfig Load(string configPath)
    {
        var config = ParseFile(configPath);
        string folder = Path.GetDirectoryName(Path.GetFullPath(configPath))!;
        string specialMapPath = Path.Combine(folder, "special_tokens_map.json");
        if (File.Exists(specialMapPath))
        {
            var map = ParseFile(specialMapPath);
            config = config with
            {
                BosToken = config.BosToken ?? map.BosToken,
                EosToken = config.EosToken ?? map.EosToken,
                UnknownToken = config.UnknownToken ?? map.UnknownToken,
                PadToken = config.PadToken ?? map.PadToken,
                AdditionalSpecialTokens = config.AdditionalSpecialTokens.Count > 0 ? config.AdditionalSpecialTokens : map.AdditionalSpecialTokens,
            };
        }
        string addedTokensPath = Path.Combine(folder, "added_tokens.json");
        if (File.Exists(addedTokensPath)) config = config with { ExtraAddedTokens = [.. config.ExtraAddedTokens, .. ParseAddedTokensJson(addedTokensPath, config)] };
        return config;
    }

    private static JsonDocument ReadJson(string path)
    {
        try
        {
            byte[] bytes = File.ReadAllBytes(path);
            if (Formats.Utf8Text.DescribeInvalid(bytes) is { } bad) throw new InvalidDataException($"{path}: {bad}.");
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message}).", e);
        }
    }

    private static TokenizerConfig ParseFile(string path)
    {
        using var document = ReadJson(path);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object, found {JsonFields.Describe(root)}.");
        var additional = new List<string>();
        if (JsonFields.Optional(root, "additional_special_tokens") is { ValueKind: JsonValueKind.Array } list)
        {
            int index = 0;
            foreach (var item in list.EnumerateArray())
                additional.Add(TokenContent(item, $"{path}: additional_special_tokens[{index++}]") ?? "");
        }
        var extra = new List<AddedToken>();
        if (JsonFields.Optional(root, "added_tokens_decoder") is { ValueKind: JsonValueKind.Object } decoder)
        {
            foreach (var entry in decoder.EnumerateObject())
            {
                string where = $"{path}: added_tokens_decoder['{entry.Name}']";
                if (!int.TryParse(entry.Name, System.Globalization.CultureInfo.InvariantCulture, out int id) || id < 0)
                    throw new InvalidDataException($"{where}: expected a non-negative integer key, found \"{entry.Name}\".");
                bool special = JsonFields.Bool(entry.Value, "special", false, where);
                extra.Add(new AddedToken(id, JsonFields.RequiredString(entry.Value, "content", where), special,
                    JsonFields.Bool(entry.Value, "normalized", !special, where), JsonFields.Bool(entry.Value, "lstrip", false, where),
                    JsonFields.Bool(entry.Value, "rstrip", false, where), JsonFields.Bool(entry.Value, "single_word", false, where)));
            }
        }
        return new TokenizerConfig
        {
            TokenizerClass = JsonFields.Optional(root, "tokenizer_class") is { ValueKind: JsonValueKind.String } c ? c.GetString() : null,
            BosToken = TokenContent(JsonFields.Optional(root, "bos_token"), $"{path}: bos_token"),
            EosToken = TokenContent(JsonFields.Optional(root, "eos_token"), $"{path}: eos_token"),
            UnknownToken = TokenContent(JsonFields.Optional(root, "unk_token"), $"{path}: unk_token"),
            PadToken = TokenContent(JsonFields.Optional(root, "pad_token"), $"{path}: pad_token"),
            AdditionalSpecialTokens = additional,
            AddBosToken = JsonFields.Optional(root, "add_bos_token") is null ? null : JsonFields.Bool(root, "add_bos_token", false, path),
            AddEosToken = JsonFields.Optional(root, "add_eos_token") is null ? null : JsonFields.Bool(root, "add_eos_token", false, path),
            CleanUpTokenizationSpaces = JsonFields.Bool(root, "clean_up_tokenization_spaces", false, path),
            ExtraAddedTokens = extra,
        };
    }

    /// <summary>A special token given as a string or as {"content": …}.</summary>
    private static string? TokenContent(JsonElement? value, string where)
    {
        if (value is not { } v) return null;
        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => JsonFields.RequiredString(v, "content", where),
            _ => throw new InvalidDataException($"{where}: expected a string or {{\"content\": …}}, found {JsonFields.Describe(v)}."),
        };
    }

    private static List<AddedToken> ParseAddedTokensJson(string path, TokenizerConfig config)
    {
        using var document = ReadJson(path);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected an object of token -> id, found {JsonFields.Describe(root)}.");
        var specials = new HashSet<string>(config.AdditionalSpecialTokens, StringComparer.Ordinal);
        foreach (var name in new[] { config.BosToken, config.EosToken, config.UnknownToken, config.PadToken }) if (name != null) specials.Add(name);
        var tokens = new List<AddedToken>();
        foreach (var entry in root.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
                throw new InvalidDataException($"{path}: token '{entry.Name}': expected a non-negative integer id, found {JsonFields.Describe(entry.Value)}.");
            bool special = specials.Contains(entry.Name);
            tokens.Add(new AddedToken(id, entry.Name, special, Normalized: !special));
        }
        return tokens;
    }
}

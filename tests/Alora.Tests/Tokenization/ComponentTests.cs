using System.Text.Json.Nodes;

namespace Alora.Tests.Tokenization;

/// <summary>Pre-tokenizers, normalizers, decoders and post-processors that the fixture tokenizers do not all use.</summary>
public class ComponentTests
{
    private static readonly Dictionary<string, int> SplitVocab = new() { ["a-"] = 301, ["-b"] = 302, ["--"] = 303, ["12"] = 304 };
    private static JsonArray SplitMerges() => ["a -", "- b", "- -", "1 2"];

    private static int[] Encode(string text, JsonNode? preTokenizer = null, JsonNode? normalizer = null, JsonArray? added = null)
    {
        using var folder = new TempFolder();
        var json = SyntheticTokenizer.Json(addedTokens: added?.DeepClone().AsArray(), preTokenizer: preTokenizer?.DeepClone(), normalizer: normalizer?.DeepClone(), merges: SplitMerges(), extraVocab: SplitVocab);
        return SyntheticTokenizer.Load(json, folder).Encode(text, addSpecialTokens: false);
    }

    private static JsonObject Split(string behavior, string literal = "-", bool invert = false) => new()
    {
        ["type"] = "Split", ["pattern"] = new JsonObject { ["String"] = literal }, ["behavior"] = behavior, ["invert"] = invert,
    };

    [Fact]
    public void WithoutPreTokenizerMergesCrossDelimiters() => Assert.Equal([301, 'b'], Encode("a-b"));

    [Fact]
    public void SplitRemoved() => Assert.Equal(['a', 'b'], Encode("a-b", Split("Removed")));

    [Fact]
    public void SplitIsolated() => Assert.Equal(['a', '-', 'b'], Encode("a-b", Split("Isolated")));

    [Fact]
    public void SplitMergedWithPrevious() => Assert.Equal([301, 'b'], Encode("a-b", Split("MergedWithPrevious")));

    [Fact]
    public void SplitMergedWithNext() => Assert.Equal(['a', 302], Encode("a-b", Split("MergedWithNext")));

    [Fact]
    public void SplitContiguous() => Assert.Equal(['a', 303, 'b'], Encode("a--b", Split("Contiguous")));

    [Fact]
    public void SplitRegexInverted()
    {
        // Inverted: the matches ("a", "b" runs of letters) are the pieces kept apart from the rest.
        var split = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "[a-z]+" }, ["behavior"] = "Removed", ["invert"] = true };
        Assert.Equal(['a', 'b'], Encode("a-b", split));
    }

    [Fact]
    public void WhitespaceAndPunctuationPreTokenizers()
    {
        // "a-b" merges to "a-" + "b" as one word; split apart, the merge cannot happen.
        Assert.Equal(['a', '-', 'b', 'c'], Encode("a-b c", new JsonObject { ["type"] = "Whitespace" }));
        Assert.Equal([301, 'b', 'c'], Encode("a-b  c", new JsonObject { ["type"] = "WhitespaceSplit" }));
        Assert.Equal(['a', '-', 'b'], Encode("a-b", new JsonObject { ["type"] = "Punctuation", ["behavior"] = "Isolated" }));
        Assert.Equal([301, 'b'], Encode("a-b", new JsonObject { ["type"] = "Punctuation", ["behavior"] = "MergedWithPrevious" }));
        Assert.Equal(['a', 'e', 'b'], Encode("a\u00E9b", normalizer: new JsonObject
        {
            ["type"] = "Sequence",
            ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "NFD" }, new JsonObject { ["type"] = "StripAccents" }),
        }));
    }

    [Fact]
    public void DigitsIndividualOrTogether()
    {
        Assert.Equal(['x', '1', '2', '3'], Encode("x123", new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }));
        Assert.Equal(['x', 304, '3'], Encode("x123", new JsonObject { ["type"] = "Digits", ["individual_digits"] = false }));
    }

    [Fact]
    public void MetaspacePrependSchemes()
    {
        var added = new JsonArray(SyntheticTokenizer.Added(200, "<m>"));
        JsonObject Meta(string scheme) => new() { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = scheme, ["split"] = true };
        Assert.Equal([128, 'a', 128, 'b'], Encode("a b", Meta("always")));
        Assert.Equal([128, 'a', 200, 128, 'b'], Encode("a<m>b", Meta("always"), added: added));
        Assert.Equal([128, 'a', 200, 'b'], Encode("a<m>b", Meta("first"), added: added.DeepClone().AsArray()));
        Assert.Equal(['a', 128, 'b'], Encode("a b", Meta("never")));
    }

    [Fact]
    public void Normalizers()
    {
        Assert.Equal(['f', 'i'], Encode("\uFB01", normalizer: new JsonObject { ["type"] = "NFKC" }));
        // 'İ' lower-cases to "i" + U+0307 (not in this vocabulary: the unknown token, id 0).
        Assert.Equal(['a', 'i', 0, 'b'], Encode("Aİb", normalizer: new JsonObject { ["type"] = "Lowercase" }));
        Assert.Equal(['a'], Encode("  a \t", normalizer: new JsonObject { ["type"] = "Strip", ["strip_left"] = true, ["strip_right"] = true }));
        var sequence = new JsonObject
        {
            ["type"] = "Sequence",
            ["normalizers"] = new JsonArray(
                new JsonObject { ["type"] = "Lowercase" },
                new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["Regex"] = " +" }, ["content"] = "_" },
                new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" }),
        };
        Assert.Equal([128, 'a', '_', 'b'], Encode("A   B", normalizer: sequence));
        Assert.Empty(Encode("", normalizer: sequence));
    }

    [Fact]
    public void ByteFallbackThenUnknownTokens()
    {
        using var folder = new TempFolder();
        var json = SyntheticTokenizer.Json(extraVocab: new Dictionary<string, int> { ["<0xC3>"] = 400, ["<0xA9>"] = 401 });
        json["model"]!["byte_fallback"] = true;
        json["model"]!["fuse_unk"] = true;
        var tokenizer = SyntheticTokenizer.Load(json, folder);
        // 'é' is C3 A9: both byte tokens exist. '€' has no byte tokens here: unknown, and a run of them fuses.
        Assert.Equal(['a', 400, 401, 'b', 0, 'c'], tokenizer.Encode("aéb€€c", addSpecialTokens: false));
        using var other = new TempFolder();
        json = SyntheticTokenizer.Json();
        json["model"]!["fuse_unk"] = false;
        Assert.Equal(['b', 0, 0, 'c'], SyntheticTokenizer.Load(json, other).Encode("b€€c", addSpecialTokens: false));
    }

    [Fact]
    public void SentencePieceDecoders()
    {
        using var folder = new TempFolder();
        var decoder = new JsonObject
        {
            ["type"] = "Sequence",
            ["decoders"] = new JsonArray(
                new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "\u2581" }, ["content"] = " " },
                new JsonObject { ["type"] = "ByteFallback" },
                new JsonObject { ["type"] = "Fuse" },
                new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
        };
        var bytes = new Dictionary<string, int> { ["<0xE2>"] = 400, ["<0x82>"] = 401, ["<0xAC>"] = 402 };
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(decoder: decoder, extraVocab: bytes), folder);
        Assert.Equal("a €", tokenizer.Decode([128, 'a', 128, 400, 401, 402]));
        // A cut-off character: each invalid sequence becomes U+FFFD.
        Assert.Equal("a\uFFFD", tokenizer.Decode([128, 'a', 400, 401]));
    }

    [Fact]
    public void MetaspaceDecoderDropsTheFirstSpaceOnly()
    {
        using var folder = new TempFolder();
        var decoder = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "always", ["split"] = true };
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(decoder: decoder), folder);
        Assert.Equal("a b", tokenizer.Decode([128, 'a', 128, 'b']));
    }

    private const string LlamaTemplate = """
        {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
        """;

    private static JsonArray BosEos() => [SyntheticTokenizer.Added(1, "<s>"), SyntheticTokenizer.Added(2, "</s>")];

    [Fact]
    public void TemplateAddsBosOnlyWithSpecialTokens()
    {
        using var folder = new TempFolder();
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: BosEos(), postProcessor: JsonNode.Parse(LlamaTemplate)), folder);
        Assert.Equal([1, 'h', 'i'], tokenizer.Encode("hi"));
        Assert.Equal(['h', 'i'], tokenizer.Encode("hi", addSpecialTokens: false));
    }

    [Fact]
    public void LlamaTokenizerConfigRebuildsTheTemplateFromAddBosAndAddEos()
    {
        using var folder = new TempFolder();
        const string config = """{"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false, "add_eos_token": true}""";
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: BosEos(), postProcessor: JsonNode.Parse(LlamaTemplate)), folder, config);
        Assert.Equal(['h', 'i', 2], tokenizer.Encode("hi"));
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
    }

    [Fact]
    public void AddBosTokenAddsBosWhenThePostProcessorDoesNot()
    {
        using var folder = new TempFolder();
        const string config = """{"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "add_bos_token": true}""";
        var byteLevelPost = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true };
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: BosEos(), postProcessor: byteLevelPost), folder, config);
        Assert.Equal([1, 'h', 'i'], tokenizer.Encode("hi"));
        // The template already adds it: not twice.
        using var other = new TempFolder();
        var templated = SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: BosEos(), postProcessor: JsonNode.Parse(LlamaTemplate)), other, config);
        Assert.Equal([1, 'h', 'i'], templated.Encode("hi"));
    }

    [Fact]
    public void CleanUpTokenizationSpacesFollowsTransformers()
    {
        Assert.Equal("Hello, world. Isn't it? Yes!", Alora.Tokenization.Tokenizer.CleanUpTokenizationSpaces("Hello , world . Is n't it ? Yes !"));
    }
}

using System.Text.RegularExpressions;
using Alora.Formats;

namespace Alora.Tokenization;

public sealed partial class Tokenizer
{
    /// <summary>A Hugging Face model folder: tokenizer.json, with tokenizer_config.json (and special_tokens_map.json, added_tokens.json) when present.</summary>
    public static Tokenizer FromModelFolder(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"Model folder not found: {folder}");
        string json = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(json) && File.Exists(json + ".gz")) json += ".gz";
        if (!File.Exists(json))
            throw new FileNotFoundException($"{folder}: no tokenizer.json (Alora reads the fast-tokenizer file; a folder with only tokenizer.model needs converting first).", json);
        string config = Path.Combine(folder, "tokenizer_config.json");
        return FromTokenizerJson(json, File.Exists(config) ? config : null);
    }

    /// <summary>A tokenizer.json file, with an optional tokenizer_config.json for special tokens, add_bos_token and clean-up.</summary>
    public static Tokenizer FromTokenizerJson(string path, string? tokenizerConfigPath = null)
    {
        var pipeline = TokenizerJson.Load(path);
        var config = tokenizerConfigPath != null ? TokenizerConfig.Load(tokenizerConfigPath) : TokenizerConfig.Empty;
        return new Tokenizer(pipeline, config);
    }

    /// <summary>A folder (see <see cref="FromModelFolder"/>) or a .gguf file.</summary>
    public static Tokenizer Load(string modelPath)
    {
        if (Directory.Exists(modelPath)) return FromModelFolder(modelPath);
        if (File.Exists(modelPath))
        {
            if (modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            {
                using var gguf = GgufFile.Open(modelPath);
                return FromGguf(gguf);
            }
            if (Path.GetFileName(modelPath) is "tokenizer.json" or "tokenizer.json.gz")
            {
                string config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath))!, "tokenizer_config.json");
                return FromTokenizerJson(modelPath, File.Exists(config) ? config : null);
            }
            throw new ArgumentException($"{modelPath}: expected a model folder, a tokenizer.json or a .gguf file.", nameof(modelPath));
        }
        throw new FileNotFoundException($"Model path not found: {modelPath}", modelPath);
    }

    /// <summary>The tokenizer stored in a GGUF file's metadata.</summary>
    public static Tokenizer FromGguf(GgufFile gguf) => FromGgufVocabulary(GgufVocabulary.Read(gguf));

    /// <summary>Builds the tokenizer llama.cpp would run for a GGUF vocabulary.</summary>
    public static Tokenizer FromGgufVocabulary(GgufVocabulary vocabulary)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        return vocabulary.Model switch
        {
            "llama" => GgufTokenizers.SentencePiece(vocabulary),
            "gpt2" => GgufTokenizers.ByteLevelBpe(vocabulary),
            _ => throw new NotSupportedException($"{vocabulary.Source}: tokenizer.ggml.model '{vocabulary.Model}' is not supported; expected 'llama' (SentencePiece) or 'gpt2' (byte-level BPE)."),
        };
    }
}

/// <summary>Pipelines equivalent to llama.cpp's tokenizers for GGUF vocabularies.</summary>
internal static class GgufTokenizers
{
    public static Tokenizer SentencePiece(GgufVocabulary v)
    {
        var scores = v.Scores ?? throw new InvalidDataException($"{v.Source}: a 'llama' vocabulary needs 'tokenizer.ggml.scores'.");
        int unknownId = v.UnknownId ?? Array.FindIndex(v.Tokens, t => t == "<unk>");
        var model = new SentencePieceModel(v.Tokens, scores, unknownId);
        bool addSpacePrefix = v.AddSpacePrefix ?? true;
        var escapeSpaces = new ReplaceNormalizer(" ", null, "\u2581");
        Normalizer normalizer = addSpacePrefix ? new SequenceNormalizer([new PrependNormalizer("\u2581"), escapeSpaces]) : escapeSpaces;
        var decoderSteps = new List<Decoder> { new ReplaceDecoder(new ReplaceNormalizer("\u2581", null, " ")), new ByteFallbackDecoder(), new FuseDecoder() };
        if (addSpacePrefix) decoderSteps.Add(new StripDecoder(' ', 1, 0));
        var pipeline = new TokenizerPipeline(normalizer, null, false, model, Template(v, addBosByDefault: true), new SequenceDecoder(decoderSteps), AddedTokens(v));
        return new Tokenizer(pipeline, Config(v));
    }

    public static Tokenizer ByteLevelBpe(GgufVocabulary v)
    {
        var merges = v.Merges ?? throw new InvalidDataException($"{v.Source}: a 'gpt2' vocabulary needs 'tokenizer.ggml.merges'.");
        var vocab = new Dictionary<string, int>(v.Tokens.Length, StringComparer.Ordinal);
        for (int id = 0; id < v.Tokens.Length; id++) vocab.TryAdd(v.Tokens[id], id);
        var pairs = new List<(string, string)>(merges.Length);
        for (int i = 0; i < merges.Length; i++)
        {
            int space = merges[i].IndexOf(' ', StringComparison.Ordinal);
            if (space <= 0) throw new InvalidDataException($"{v.Source}: tokenizer.ggml.merges[{i}]: expected \"left right\", found \"{merges[i]}\".");
            pairs.Add((merges[i][..space], merges[i][(space + 1)..]));
        }
        string pre = v.PreTokenizer ?? "default";
        var (pattern, ignoreMerges) = PreTokenizerPattern(pre, v.Source);
        var model = new BpeModel(vocab, pairs, new BpeOptions(IgnoreMerges: ignoreMerges), $"{v.Source}: tokenizer.ggml");
        var split = new SplitPreTokenizer(new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant), SplitBehavior.Isolated, invert: false);
        var byteLevel = new ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: false) { MapsBytes = false };
        var pipeline = new TokenizerPipeline(null, new SequencePreTokenizer([split, byteLevel]), true, model,
            Template(v, addBosByDefault: false), new ByteLevelDecoder(), AddedTokens(v));
        return new Tokenizer(pipeline, Config(v));
    }

    // llama.cpp's pre-tokenizer regexes for the tokenizer.ggml.pre names Alora knows; ignore_merges as llama.cpp sets it.
    private static (string Pattern, bool IgnoreMerges) PreTokenizerPattern(string pre, string source) => pre switch
    {
        "default" or "gpt2" or "gpt-2" => (ByteLevelPreTokenizer.Gpt2Pattern, false),
        "llama3" or "llama-bpe" or "llama-v3" => (PreTokenizerPatterns.Llama3, true),
        "qwen2" => (PreTokenizerPatterns.Qwen2, false),
        "refact" => (@"\p{N}|" + ByteLevelPreTokenizer.Gpt2Pattern, false),
        _ => throw new NotSupportedException($"{source}: tokenizer.ggml.pre '{pre}' is not supported; known: default, gpt2, llama3, llama-bpe, qwen2, refact."),
    };

    private static TemplatePostProcessor Template(GgufVocabulary v, bool addBosByDefault)
    {
        var items = new List<int[]?>();
        if ((v.AddBos ?? addBosByDefault) && v.BosId is int bos) items.Add([bos]);
        items.Add(null);
        if ((v.AddEos ?? false) && v.EosId is int eos) items.Add([eos]);
        return new TemplatePostProcessor(items);
    }

    // Control and unknown pieces are special tokens matched in raw text (llama.cpp's parse_special);
    // user-defined pieces are matched too but are not special.
    private static List<AddedToken> AddedTokens(GgufVocabulary v)
    {
        var tokens = new List<AddedToken>();
        for (int id = 0; id < v.Tokens.Length; id++)
        {
            var type = v.TypeOf(id);
            if (type is GgufTokenType.Control or GgufTokenType.Unknown) tokens.Add(new AddedToken(id, v.Tokens[id], Special: true));
            else if (type == GgufTokenType.UserDefined) tokens.Add(new AddedToken(id, v.Tokens[id], Special: false));
        }
        return tokens;
    }

    private static TokenizerConfig Config(GgufVocabulary v) => new()
    {
        BosToken = v.BosId is int b ? v.Tokens[b] : null,
        EosToken = v.EosId is int e ? v.Tokens[e] : null,
        UnknownToken = v.UnknownId is int u ? v.Tokens[u] : null,
        PadToken = v.PaddingId is int p ? v.Tokens[p] : null,
    };
}

/// <summary>The Split regexes of well-known byte-level tokenizers, as their tokenizer.json files spell them.</summary>
internal static class PreTokenizerPatterns
{
    public const string Llama3 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Qwen2 = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
}

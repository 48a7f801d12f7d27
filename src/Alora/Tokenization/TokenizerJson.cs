using System.Text.Json;
using System.Text.RegularExpressions;

namespace Alora.Tokenization;

/// <summary>Reads Hugging Face tokenizer.json into a <see cref="TokenizerPipeline"/>.</summary>
internal static class TokenizerJson
{
    /// <summary>The largest tokenizer.json a .gz may expand to (the largest real ones are tens of MB): a gzip bomb stops here.</summary>
    public const long MaxDecompressedBytes = 1L << 30;

    public static TokenizerPipeline Load(string path) => Load(path, MaxDecompressedBytes);

    internal static TokenizerPipeline Load(string path, long maxDecompressedBytes)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Tokenizer file not found: {path}", path);
        JsonDocument document;
        try
        {
            byte[] bytes;
            if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
            {
                // Large vocabularies are sometimes shipped gzipped (tokenizer.json.gz).
                using var file = File.OpenRead(path);
                using var gzip = new System.IO.Compression.GZipStream(file, System.IO.Compression.CompressionMode.Decompress);
                // A gzip bomb (a few MB that expand to many GB) stops at the cap instead of allocating what it asks for.
                long limit = maxDecompressedBytes;
                using var buffer = new MemoryStream();
                var chunk = new byte[81920];
                try
                {
                    for (int read; (read = gzip.Read(chunk, 0, chunk.Length)) > 0;)
                    {
                        if (buffer.Length + read > limit)
                            throw new InvalidDataException($"{path}: the gzip stream expands past {limit:N0} bytes (from {file.Length:N0} compressed bytes); no tokenizer.json is that large.");
                        buffer.Write(chunk, 0, read);
                    }
                }
                catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal)) { throw new InvalidDataException($"{path}: not a valid gzip stream ({e.Message}).", e); }
                bytes = buffer.ToArray();
            }
            else
            {
                bytes = File.ReadAllBytes(path);
            }
            if (Formats.Utf8Text.DescribeInvalid(bytes) is { } bad) throw new InvalidDataException($"{path}: {bad}.");
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message}).", e);
        }
        using (document) return Parse(document.RootElement, path);
    }

    public static TokenizerPipeline Parse(JsonElement root, string file)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{file}: expected a JSON object at the top level, found {JsonFields.Describe(root)}.");
        var model = ParseModel(JsonFields.Required(root, "model", file), $"{file}: model");
        var normalizer = JsonFields.Optional(root, "normalizer") is { } n ? ParseNormalizer(n, $"{file}: normalizer") : null;
        var preTokenizer = JsonFields.Optional(root, "pre_tokenizer") is { } p ? ParsePreTokenizer(p, $"{file}: pre_tokenizer") : null;
        var postProcessor = JsonFields.Optional(root, "post_processor") is { } pp ? ParsePostProcessor(pp, $"{file}: post_processor", model) : null;
        var decoder = JsonFields.Optional(root, "decoder") is { } d ? ParseDecoder(d, $"{file}: decoder") : null;
        var addedTokens = ParseAddedTokens(root, file);

        bool mapBytesBeforeModel = false;
        var last = preTokenizer is SequencePreTokenizer sequence && sequence.Steps.Count > 0 ? sequence.Steps[^1] : preTokenizer;
        if (last is ByteLevelPreTokenizer byteLevel)
        {
            byteLevel.MapsBytes = false;
            mapBytesBeforeModel = true;
        }
        return new TokenizerPipeline(normalizer, preTokenizer, mapBytesBeforeModel, model, postProcessor, decoder, addedTokens);
    }

    private static string TypeOf(JsonElement component, string where)
    {
        if (component.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: expected an object, found {JsonFields.Describe(component)}.");
        return JsonFields.RequiredString(component, "type", where);
    }

    private static List<AddedToken> ParseAddedTokens(JsonElement root, string file)
    {
        var tokens = new List<AddedToken>();
        if (JsonFields.Optional(root, "added_tokens") is not { } list) return tokens;
        if (list.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{file}: added_tokens: expected an array, found {JsonFields.Describe(list)}.");
        int index = 0;
        foreach (var item in list.EnumerateArray())
        {
            string where = $"{file}: added_tokens[{index++}]";
            var idElement = JsonFields.Required(item, "id", where);
            if (idElement.ValueKind != JsonValueKind.Number || !idElement.TryGetInt32(out int id) || id < 0)
                throw new InvalidDataException($"{where}.id: expected a non-negative integer, found {JsonFields.Describe(idElement)}.");
            tokens.Add(new AddedToken(
                id,
                JsonFields.RequiredString(item, "content", where),
                JsonFields.Bool(item, "special", false, where),
                JsonFields.Bool(item, "normalized", !JsonFields.Bool(item, "special", false, where), where),
                JsonFields.Bool(item, "lstrip", false, where),
                JsonFields.Bool(item, "rstrip", false, where),
                JsonFields.Bool(item, "single_word", false, where)));
        }
        return tokens;
    }

    private static TokenizerModel ParseModel(JsonElement model, string where)
    {
        if (model.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: expected an object, found {JsonFields.Describe(model)}.");
        // Old files leave out the type of a BPE model; its merges tell what it is.
        string type = JsonFields.OptionalString(model, "type", where) ?? (JsonFields.Optional(model, "merges") != null ? "BPE" : "(missing)");
        if (type != "BPE")
            throw new NotSupportedException($"{where}: unsupported model type '{type}'; Alora supports BPE models (byte-level and SentencePiece-style).");

        var vocabElement = JsonFields.Required(model, "vocab", where);
        if (vocabElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}.vocab: expected an object of token -> id, found {JsonFields.Describe(vocabElement)}.");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id))
                throw new InvalidDataException($"{where}.vocab['{entry.Name}']: expected an integer id, found {JsonFields.Describe(entry.Value)}.");
            vocab[entry.Name] = id;
        }

        var merges = new List<(string, string)>();
        if (JsonFields.Optional(model, "merges") is { } mergesElement)
        {
            if (mergesElement.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{where}.merges: expected an array, found {JsonFields.Describe(mergesElement)}.");
            int index = 0;
            foreach (var merge in mergesElement.EnumerateArray())
            {
                merges.Add(ParseMerge(merge, $"{where}.merges[{index}]"));
                index++;
            }
        }

        var dropout = JsonFields.Optional(model, "dropout");
        if (dropout is { ValueKind: JsonValueKind.Number } d && d.GetDouble() != 0)
            throw new NotSupportedException($"{where}.dropout: BPE dropout {d.GetRawText()} makes encoding random; Alora encodes deterministically and needs dropout null or 0.");

        var options = new BpeOptions(
            UnknownToken: JsonFields.OptionalString(model, "unk_token", where),
            FuseUnknown: JsonFields.Bool(model, "fuse_unk", false, where),
            ByteFallback: JsonFields.Bool(model, "byte_fallback", false, where),
            IgnoreMerges: JsonFields.Bool(model, "ignore_merges", false, where),
            ContinuingSubwordPrefix: JsonFields.OptionalString(model, "continuing_subword_prefix", where) ?? "",
            EndOfWordSuffix: JsonFields.OptionalString(model, "end_of_word_suffix", where) ?? "");
        return new BpeModel(vocab, merges, options, where);
    }

    private static (string, string) ParseMerge(JsonElement merge, string where)
    {
        if (merge.ValueKind == JsonValueKind.String)
        {
            string text = merge.GetString()!;
            int space = text.IndexOf(' ', StringComparison.Ordinal);
            if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                throw new InvalidDataException($"{where}: expected \"left right\" (two tokens separated by one space), found \"{text}\".");
            return (text[..space], text[(space + 1)..]);
        }
        if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
            && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            return (merge[0].GetString()!, merge[1].GetString()!);
        throw new InvalidDataException($"{where}: expected \"left right\" or [\"left\", \"right\"], found {JsonFields.Describe(merge)}.");
    }

    /// <summary>A {"String": …} or {"Regex": …} pattern as a .NET regex.</summary>
    private static Regex ParsePattern(JsonElement component, string where)
    {
        var pattern = JsonFields.Required(component, "pattern", where);
        if (JsonFields.OptionalString(pattern, "String", where + ".pattern") is { } literal)
            return new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant);
        if (JsonFields.OptionalString(pattern, "Regex", where + ".pattern") is { } regex)
        {
            try
            {
                return new Regex(RegexDialect.ToDotNet(regex), RegexOptions.CultureInvariant | RegexOptions.Compiled);
            }
            catch (ArgumentException e)
            {
                throw new NotSupportedException($"{where}.pattern: the regex \"{regex}\" is not accepted by .NET ({e.Message}).", e);
            }
        }
        throw new InvalidDataException($"{where}.pattern: expected {{\"String\": …}} or {{\"Regex\": …}}, found {JsonFields.Describe(pattern)}.");
    }

    private static ReplaceNormalizer ParseReplace(JsonElement component, string where)
    {
        var pattern = JsonFields.Required(component, "pattern", where);
        string content = JsonFields.RequiredString(component, "content", where);
        if (JsonFields.OptionalString(pattern, "String", where + ".pattern") is { } literal) return new ReplaceNormalizer(literal, null, content);
        return new ReplaceNormalizer(null, ParsePattern(component, where), content);
    }

    private static Normalizer ParseNormalizer(JsonElement component, string where)
    {
        string type = TypeOf(component, where);
        return type switch
        {
            "NFC" => new UnicodeFormNormalizer(System.Text.NormalizationForm.FormC),
            "NFD" => new UnicodeFormNormalizer(System.Text.NormalizationForm.FormD),
            "NFKC" => new UnicodeFormNormalizer(System.Text.NormalizationForm.FormKC),
            "NFKD" => new UnicodeFormNormalizer(System.Text.NormalizationForm.FormKD),
            "Prepend" => new PrependNormalizer(JsonFields.RequiredString(component, "prepend", where)),
            "Replace" => ParseReplace(component, where),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(JsonFields.Bool(component, "strip_left", true, where), JsonFields.Bool(component, "strip_right", true, where)),
            "StripAccents" => new StripAccentsNormalizer(),
            "Sequence" => new SequenceNormalizer(ParseList(component, "normalizers", where, ParseNormalizer)),
            _ => throw new NotSupportedException($"{where}: unsupported normalizer type '{type}'; supported: NFC, NFD, NFKC, NFKD, Prepend, Replace, Lowercase, Strip, StripAccents, Sequence."),
        };
    }

    private static PreTokenizer ParsePreTokenizer(JsonElement component, string where)
    {
        string type = TypeOf(component, where);
        return type switch
        {
            "ByteLevel" => new ByteLevelPreTokenizer(JsonFields.Bool(component, "add_prefix_space", true, where), JsonFields.Bool(component, "use_regex", true, where)),
            "Split" => new SplitPreTokenizer(ParsePattern(component, where), Splitter.Parse(JsonFields.RequiredString(component, "behavior", where), where + ".behavior"), JsonFields.Bool(component, "invert", false, where)),
            "Metaspace" => new MetaspacePreTokenizer(ParseReplacement(component, where), ParsePrependScheme(component, where), JsonFields.Bool(component, "split", true, where)),
            "Digits" => new DigitsPreTokenizer(JsonFields.Bool(component, "individual_digits", false, where)),
            "Sequence" => new SequencePreTokenizer(ParseList(component, "pretokenizers", where, ParsePreTokenizer)),
            // Whitespace keeps runs of word characters and runs of other non-space characters.
            "Whitespace" => new SplitPreTokenizer(new Regex(@"\w+|[^\w\s]+", RegexOptions.Compiled | RegexOptions.CultureInvariant), SplitBehavior.Removed, invert: true),
            "WhitespaceSplit" => CharacterClassPreTokenizer.WhitespaceSplit(),
            "Punctuation" => CharacterClassPreTokenizer.Punctuation(Splitter.Parse(JsonFields.OptionalString(component, "behavior", where) ?? "Isolated", where + ".behavior")),
            _ => throw new NotSupportedException($"{where}: unsupported pre-tokenizer type '{type}'; supported: ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, Sequence."),
        };
    }

    private static char ParseReplacement(JsonElement component, string where)
    {
        string replacement = JsonFields.OptionalString(component, "replacement", where) ?? "\u2581";
        return replacement.Length == 1 ? replacement[0] : throw new InvalidDataException($"{where}.replacement: expected one character, found \"{replacement}\".");
    }

    private static PrependScheme ParsePrependScheme(JsonElement component, string where)
    {
        // Older files say add_prefix_space instead of prepend_scheme.
        string? scheme = JsonFields.OptionalString(component, "prepend_scheme", where);
        if (scheme == null) return JsonFields.Bool(component, "add_prefix_space", true, where) ? PrependScheme.Always : PrependScheme.Never;
        return scheme switch
        {
            "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            _ => throw new InvalidDataException($"{where}.prepend_scheme: expected \"always\", \"first\" or \"never\", found \"{scheme}\"."),
        };
    }

    private static PostProcessor ParsePostProcessor(JsonElement component, string where, TokenizerModel model)
    {
        string type = TypeOf(component, where);
        switch (type)
        {
            case "ByteLevel":
                return new IdentityPostProcessor();
            case "Sequence":
                return new SequencePostProcessor(ParseList(component, "processors", where, (c, w) => ParsePostProcessor(c, w, model)));
            case "TemplateProcessing":
                return ParseTemplate(component, where);
            case "BertProcessing":
            case "RobertaProcessing":
            {
                int[] Pair(string name)
                {
                    var pair = JsonFields.Array(component, name, where);
                    if (pair.GetArrayLength() != 2 || !pair[1].TryGetInt32(out int id))
                        throw new InvalidDataException($"{where}.{name}: expected [token, id], found {JsonFields.Describe(pair)}.");
                    return [id];
                }
                return new TemplatePostProcessor([Pair("cls"), null, Pair("sep")]);
            }
            default:
                throw new NotSupportedException($"{where}: unsupported post-processor type '{type}'; supported: TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence.");
        }
    }

    private static TemplatePostProcessor ParseTemplate(JsonElement component, string where)
    {
        var specials = new Dictionary<string, int[]>(StringComparer.Ordinal);
        if (JsonFields.Optional(component, "special_tokens") is { } map)
        {
            if (map.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}.special_tokens: expected an object, found {JsonFields.Describe(map)}.");
            foreach (var entry in map.EnumerateObject())
            {
                var ids = JsonFields.Array(entry.Value, "ids", $"{where}.special_tokens['{entry.Name}']");
                specials[entry.Name] = ids.EnumerateArray().Select(x => x.TryGetInt32(out int id) ? id
                    : throw new InvalidDataException($"{where}.special_tokens['{entry.Name}'].ids: expected integers, found {JsonFields.Describe(x)}.")).ToArray();
            }
        }
        var items = new List<int[]?>();
        int index = 0;
        foreach (var item in JsonFields.Array(component, "single", where).EnumerateArray())
        {
            string itemWhere = $"{where}.single[{index++}]";
            if (JsonFields.Optional(item, "Sequence") != null) { items.Add(null); continue; }
            if (JsonFields.Optional(item, "SpecialToken") is { } special)
            {
                string name = JsonFields.RequiredString(special, "id", itemWhere + ".SpecialToken");
                items.Add(specials.TryGetValue(name, out var ids) ? ids
                    : throw new InvalidDataException($"{itemWhere}: special token '{name}' is not listed in {where}.special_tokens."));
                continue;
            }
            throw new InvalidDataException($"{itemWhere}: expected {{\"Sequence\": …}} or {{\"SpecialToken\": …}}, found {item.GetRawText()}.");
        }
        return new TemplatePostProcessor(items);
    }

    private static Decoder ParseDecoder(JsonElement component, string where)
    {
        string type = TypeOf(component, where);
        return type switch
        {
            "ByteLevel" => new ByteLevelDecoder(),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(ParseStripContent(component, where), JsonFields.Int(component, "start", 0, where), JsonFields.Int(component, "stop", 0, where)),
            "Replace" => new ReplaceDecoder(ParseReplace(component, where)),
            "Metaspace" => new MetaspaceDecoder(ParseReplacement(component, where), ParsePrependScheme(component, where) != PrependScheme.Never),
            "Sequence" => new SequenceDecoder(ParseList(component, "decoders", where, ParseDecoder)),
            _ => throw new NotSupportedException($"{where}: unsupported decoder type '{type}'; supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence."),
        };
    }

    private static char ParseStripContent(JsonElement component, string where)
    {
        string content = JsonFields.RequiredString(component, "content", where);
        return content.Length == 1 ? content[0] : throw new InvalidDataException($"{where}.content: expected one character, found \"{content}\".");
    }

    private static List<T> ParseList<T>(JsonElement component, string name, string where, Func<JsonElement, string, T> parse)
    {
        var list = new List<T>();
        int index = 0;
        foreach (var item in JsonFields.Array(component, name, where).EnumerateArray())
            list.Add(parse(item, $"{where}.{name}[{index++}]"));
        return list;
    }
}

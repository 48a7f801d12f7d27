using System.Buffers;
using System.Text;

namespace Alora.Tokenization;

/// <summary>
/// A Hugging Face-compatible tokenizer: added tokens, normalizer, pre-tokenizer, BPE model and
/// post-processor on the way in; decoder and transformers' clean-up on the way out. Thread-safe.
/// </summary>
public sealed partial class Tokenizer
{
    private readonly TokenizerPipeline _pipeline;
    private readonly AddedVocabulary _addedVocabulary;
    private readonly PostProcessor? _postProcessor;
    private readonly string?[] _idToToken;          // [VocabSize] model tokens, then added tokens over them
    private readonly Dictionary<string, int> _addedByContent;
    private readonly bool[] _isSpecial;             // [VocabSize]
    private readonly bool _cleanUpTokenizationSpaces;

    internal Tokenizer(TokenizerPipeline pipeline, TokenizerConfig config)
    {
        _pipeline = pipeline;
        var added = new List<AddedToken>(pipeline.AddedTokens);
        var seen = new HashSet<int>(added.Select(t => t.Id));
        foreach (var extra in config.ExtraAddedTokens) if (seen.Add(extra.Id)) added.Add(extra);
        _addedVocabulary = new AddedVocabulary(added, pipeline.Normalizer);

        int idCount = Math.Max(pipeline.Model.IdCount, added.Count == 0 ? 0 : added.Max(t => t.Id) + 1);
        _idToToken = new string?[idCount];
        for (int id = 0; id < pipeline.Model.IdCount; id++) _idToToken[id] = pipeline.Model.IdToToken(id);
        _addedByContent = new Dictionary<string, int>(StringComparer.Ordinal);
        _isSpecial = new bool[idCount];
        foreach (var token in added)
        {
            _idToToken[token.Id] = token.Content;
            _addedByContent[token.Content] = token.Id;
            if (token.Special) _isSpecial[token.Id] = true;
        }

        BosTokenId = config.BosToken != null ? TokenToId(config.BosToken) : null;
        EosTokenId = config.EosToken != null ? TokenToId(config.EosToken) : null;
        foreach (var name in new[] { config.BosToken, config.EosToken, config.UnknownToken, config.PadToken }.Concat(config.AdditionalSpecialTokens))
            if (name != null && TokenToId(name) is int specialId) _isSpecial[specialId] = true;

        _postProcessor = ResolvePostProcessor(pipeline.PostProcessor, config, BosTokenId, EosTokenId);
        _cleanUpTokenizationSpaces = config.CleanUpTokenizationSpaces;
    }

    /// <summary>Number of ids: one more than the largest id of the model or of an added token.</summary>
    public int VocabSize => _idToToken.Length;

    public int? BosTokenId { get; }

    public int? EosTokenId { get; }

    public string? IdToToken(int id) => id >= 0 && id < _idToToken.Length ? _idToToken[id] : null;

    public int? TokenToId(string token) => _addedByContent.TryGetValue(token, out int id) ? id : _pipeline.Model.TokenToId(token);

    public bool IsSpecial(int id) => id >= 0 && id < _isSpecial.Length && _isSpecial[id];

    /// <summary>Added tokens (special or not), in the order tokenizer.json lists them.</summary>
    public IReadOnlyList<AddedToken> AddedTokens => _addedVocabulary.Tokens;

    /// <summary>
    /// transformers' LlamaTokenizer(Fast) rebuilds its template from add_bos_token/add_eos_token (defaults
    /// true/false); other classes keep tokenizer.json's post-processor and only gain a BOS or EOS the
    /// config explicitly asks for and the template lacks.
    /// </summary>
    private static PostProcessor? ResolvePostProcessor(PostProcessor? fromJson, TokenizerConfig config, int? bosId, int? eosId)
    {
        bool llamaLike = config.TokenizerClass is "LlamaTokenizer" or "LlamaTokenizerFast" or "CodeLlamaTokenizer" or "CodeLlamaTokenizerFast" or "GemmaTokenizer" or "GemmaTokenizerFast";
        if (llamaLike)
        {
            bool addBos = config.AddBosToken ?? true, addEos = config.AddEosToken ?? false;
            var items = new List<int[]?>();
            if (addBos && bosId is int bos) items.Add([bos]);
            items.Add(null);
            if (addEos && eosId is int eos) items.Add([eos]);
            return new TemplatePostProcessor(items);
        }
        var probe = fromJson?.Process([]) ?? [];
        var result = fromJson;
        if (config.AddBosToken == true && bosId is int b && (probe.Count == 0 || probe[0] != b))
            result = Then(result, new TemplatePostProcessor([[b], null]));
        if (config.AddEosToken == true && eosId is int e && (probe.Count == 0 || probe[^1] != e))
            result = Then(result, new TemplatePostProcessor([null, [e]]));
        return result;
    }

    private static PostProcessor Then(PostProcessor? first, PostProcessor next) => first is null ? next : new SequencePostProcessor([first, next]);

    /// <summary>
    /// Token ids of <paramref name="text"/>. With <paramref name="addSpecialTokens"/> the post-processor adds
    /// what the model expects (e.g. BOS), as transformers' <c>tokenizer(text)</c>; special-token strings in
    /// the text are matched as tokens either way.
    /// </summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        var pieces = new List<Piece>();
        char[]? buffer = null;
        try
        {
            foreach (var section in _addedVocabulary.SplitAndNormalize(text))
            {
                if (section.IsToken) { ids.Add(section.TokenId); continue; }
                pieces.Clear();
                pieces.Add(Piece.Whole(section.Text));
                _pipeline.PreTokenizer?.PreTokenize(pieces, section.StartsText);
                foreach (var piece in pieces)
                {
                    if (!_pipeline.MapBytesBeforeModel)
                    {
                        _pipeline.Model.Tokenize(piece.Span, ids);
                        continue;
                    }
                    int needed = piece.Length * 3;
                    if (buffer == null || buffer.Length < needed)
                    {
                        if (buffer != null) ArrayPool<char>.Shared.Return(buffer);
                        buffer = ArrayPool<char>.Shared.Rent(Math.Max(needed, 256));
                    }
                    int length = ByteLevelAlphabet.EncodeInto(piece.Span, buffer);
                    _pipeline.Model.Tokenize(buffer.AsSpan(0, length), ids);
                }
            }
        }
        finally
        {
            if (buffer != null) ArrayPool<char>.Shared.Return(buffer);
        }
        if (addSpecialTokens && _postProcessor != null) ids = _postProcessor.Process(ids);
        return ids.ToArray();
    }

    /// <summary>Text of <paramref name="ids"/>, as transformers' <c>tokenizer.decode(ids, skip_special_tokens)</c>.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false) => Decode(ids, skipSpecialTokens, _cleanUpTokenizationSpaces);

    /// <summary>Whether decoding applies transformers' clean-up (tokenizer_config.json's clean_up_tokenization_spaces).</summary>
    public bool CleansUpTokenizationSpaces => _cleanUpTokenizationSpaces;

    /// <summary>As <see cref="Decode(ReadOnlySpan{int}, bool)"/>, choosing the clean-up explicitly (transformers' clean_up_tokenization_spaces argument).</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens, bool cleanUpTokenizationSpaces)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            string token = IdToToken(id) ?? throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id {id} is not in the vocabulary (ids are 0..{VocabSize - 1}).");
            if (skipSpecialTokens && _isSpecial[id]) continue;
            tokens.Add(token);
        }
        string text = _pipeline.Decoder != null ? string.Concat(_pipeline.Decoder.DecodeChain(tokens)) : string.Join(' ', tokens);
        return cleanUpTokenizationSpaces ? CleanUpTokenizationSpaces(text) : text;
    }

    /// <summary>transformers' clean_up_tokenization: removes the space tokenizers of old put before punctuation and contractions.</summary>
    public static string CleanUpTokenizationSpaces(string text)
    {
        var builder = new StringBuilder(text);
        builder.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
            .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");
        return builder.ToString();
    }

    /// <summary>A decoder for generated ids one at a time; it never returns half a character.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);
}

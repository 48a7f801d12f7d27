using System.Collections.Concurrent;

namespace Alora.Tokenization;

/// <summary>Settings of a BPE model besides its vocabulary and merges (tokenizer.json "model" fields).</summary>
internal sealed record BpeOptions(
    string? UnknownToken = null,
    bool FuseUnknown = false,
    bool ByteFallback = false,
    bool IgnoreMerges = false,
    string ContinuingSubwordPrefix = "",
    string EndOfWordSuffix = "");

/// <summary>
/// Byte-pair encoding as tokenizers does it: a piece starts as one symbol per character (or its
/// &lt;0xNN&gt; bytes under byte fallback, or the unknown token), then the adjacent pair with the lowest
/// merge rank is merged until no ranked pair is left (leftmost first on equal ranks).
/// </summary>
internal sealed class BpeModel : TokenizerModel
{
    // Words longer than this are not cached: SentencePiece-style models see whole texts as one word.
    private const int MaxCachedWordLength = 256;
    private const int MaxCacheEntries = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly string?[] _idToToken;
    // Id of each single BMP character that is a token, or -1. [65536]; null when a prefix/suffix is in use.
    private readonly int[]? _charIds;
    // (left id << 32 | right id) -> (rank << 32 | merged id)
    private readonly Dictionary<long, long> _merges;
    // Id of the token "<0xNN>" for each byte, or -1. [256]
    private readonly int[] _byteIds;
    private readonly int _unknownId;
    private readonly BpeOptions _options;
    // True when a piece may be cut before every '▁' that follows another character without changing the
    // result: no token holds such a pair, so no merge can cross that point (SentencePiece vocabularies).
    // Long SentencePiece texts, which have no pre-tokenizer, then become cacheable words.
    private readonly bool _splitsBeforeMetaspace;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    [ThreadStatic] private static BpeWord? t_word;

    /// <param name="merges">Merge rules in rank order, as pairs of token strings.</param>
    /// <param name="source">File name for error messages.</param>
    public BpeModel(Dictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges, BpeOptions options, string source)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _options = options;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();

        int idCount = 0;
        foreach (var id in vocab.Values)
        {
            if (id < 0) throw new InvalidDataException($"{source}: model.vocab has a negative id {id}.");
            idCount = Math.Max(idCount, id + 1);
        }
        _idToToken = new string?[idCount];
        foreach (var (token, id) in vocab) _idToToken[id] = token;

        if (options.ContinuingSubwordPrefix.Length == 0 && options.EndOfWordSuffix.Length == 0)
        {
            _charIds = new int[65536];
            Array.Fill(_charIds, -1);
            foreach (var (token, id) in vocab) if (token.Length == 1) _charIds[token[0]] = id;
        }

        _byteIds = new int[256];
        for (int b = 0; b < 256; b++) _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int byteId) ? byteId : -1;

        _unknownId = -1;
        if (options.UnknownToken != null)
        {
            if (!vocab.TryGetValue(options.UnknownToken, out _unknownId))
                throw new InvalidDataException($"{source}: model.unk_token '{options.UnknownToken}' is not in model.vocab.");
        }

        _splitsBeforeMetaspace = !options.IgnoreMerges && options.ContinuingSubwordPrefix.Length == 0 && options.EndOfWordSuffix.Length == 0
            && vocab.ContainsKey("\u2581") && !vocab.Keys.Any(HasMetaspaceAfterOtherCharacter);

        _merges = new Dictionary<long, long>(merges.Count);
        int prefixLength = options.ContinuingSubwordPrefix.Length;
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (!vocab.TryGetValue(left, out int leftId))
                throw new InvalidDataException($"{source}.merges[{rank}] '{left} {right}': token '{left}' is not in model.vocab.");
            if (!vocab.TryGetValue(right, out int rightId))
                throw new InvalidDataException($"{source}.merges[{rank}] '{left} {right}': token '{right}' is not in model.vocab.");
            // The right part loses its continuing-subword prefix when the two are joined.
            string merged = left + (prefixLength > 0 && right.StartsWith(options.ContinuingSubwordPrefix, StringComparison.Ordinal) ? right[prefixLength..] : right);
            if (!vocab.TryGetValue(merged, out int mergedId))
                throw new InvalidDataException($"{source}.merges[{rank}] '{left} {right}': the merged token '{merged}' is not in model.vocab.");
            // A repeated pair takes its later rank: tokenizers and transformers.js both build a map, where the last insert wins.
            _merges[PairKey(leftId, rightId)] = ((long)rank << 32) | (uint)mergedId;
        }
    }

    private static bool HasMetaspaceAfterOtherCharacter(string token)
    {
        for (int i = 1; i < token.Length; i++) if (token[i] == '\u2581' && token[i - 1] != '\u2581') return true;
        return false;
    }

    public override int IdCount => _idToToken.Length;

    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public override string? IdToToken(int id) => id >= 0 && id < _idToToken.Length ? _idToToken[id] : null;

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    public override void Tokenize(ReadOnlySpan<char> piece, List<int> output)
    {
        if (piece.IsEmpty) return;
        if (_options.IgnoreMerges && _vocabBySpan.TryGetValue(piece, out int wholeId))
        {
            output.Add(wholeId);
            return;
        }
        if (_splitsBeforeMetaspace && piece.Length > 1)
        {
            int wordStart = 0;
            for (int i = 1; i < piece.Length; i++)
            {
                if (piece[i] != '\u2581' || piece[i - 1] == '\u2581') continue;
                TokenizeWord(piece[wordStart..i], output);
                wordStart = i;
            }
            TokenizeWord(piece[wordStart..], output);
            return;
        }
        TokenizeWord(piece, output);
    }

    private void TokenizeWord(ReadOnlySpan<char> piece, List<int> output)
    {
        bool cacheable = piece.Length <= MaxCachedWordLength;
        if (cacheable && _cacheBySpan.TryGetValue(piece, out var cached))
        {
            output.AddRange(cached);
            return;
        }
        var word = t_word ??= new BpeWord();
        BuildSymbols(piece, word);
        word.MergeAll(_merges);
        int start = output.Count;
        word.AppendIds(output);
        if (cacheable && _cache.Count < MaxCacheEntries)
            _cache.TryAdd(piece.ToString(), output.GetRange(start, output.Count - start).ToArray());
    }

    /// <summary>One initial symbol per character; byte tokens or the unknown token for characters not in the vocabulary.</summary>
    private void BuildSymbols(ReadOnlySpan<char> piece, BpeWord word)
    {
        word.Reset(piece.Length * 4);
        int pendingUnknown = 0; // characters folded into a pending unknown token (fuse_unk)
        for (int i = 0; i < piece.Length;)
        {
            int width = char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]) ? 2 : 1;
            var scalar = piece.Slice(i, width);
            bool isFirst = i == 0, isLast = i + width == piece.Length;
            i += width;

            // With a continuing-subword prefix or end-of-word suffix, the symbol's text includes them,
            // for the lookup and for byte fallback alike (as tokenizers does).
            string? decorated = _charIds == null ? Decorate(scalar, isFirst, isLast) : null;
            int id = decorated == null ? LookupSymbol(scalar) : (_vocab.TryGetValue(decorated, out int decoratedId) ? decoratedId : -1);
            if (id >= 0)
            {
                FlushUnknown(word, ref pendingUnknown);
                word.Add(id);
                continue;
            }
            // tokenizers adds byte tokens without first adding a pending unknown token, which then lands after them.
            if (_options.ByteFallback && TryAddBytes(decorated ?? scalar, word)) continue;
            if (_unknownId < 0) continue; // no unk token: the character is dropped, as tokenizers does
            if (pendingUnknown > 0 && !_options.FuseUnknown) FlushUnknown(word, ref pendingUnknown);
            pendingUnknown++;
        }
        FlushUnknown(word, ref pendingUnknown);
    }

    private void FlushUnknown(BpeWord word, ref int pendingUnknown)
    {
        if (pendingUnknown == 0) return;
        word.Add(_unknownId);
        pendingUnknown = 0;
    }

    private int LookupSymbol(ReadOnlySpan<char> scalar)
    {
        if (scalar.Length == 1) return _charIds![scalar[0]];
        return _vocabBySpan.TryGetValue(scalar, out int pairId) ? pairId : -1;
    }

    private string Decorate(ReadOnlySpan<char> scalar, bool isFirst, bool isLast)
    {
        string text = scalar.ToString();
        if (!isFirst) text = _options.ContinuingSubwordPrefix + text;
        if (isLast) text += _options.EndOfWordSuffix;
        return text;
    }

    private bool TryAddBytes(ReadOnlySpan<char> text, BpeWord word)
    {
        Span<byte> bytes = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(text.Length)];
        int count = System.Text.Encoding.UTF8.GetBytes(text, bytes);
        for (int b = 0; b < count; b++) if (_byteIds[bytes[b]] < 0) return false;
        for (int b = 0; b < count; b++) word.Add(_byteIds[bytes[b]]);
        return true;
    }
}

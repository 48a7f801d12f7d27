namespace Alora.Tokenization;

/// <summary>
/// SentencePiece BPE as llama.cpp runs it on a GGUF "llama" vocabulary: start from single characters,
/// repeatedly merge the adjacent pair whose joined text is the highest-scoring piece (leftmost on ties),
/// then spell each final symbol as its piece, or by re-splitting it along the merges that built it,
/// or as &lt;0xNN&gt; byte pieces, or the unknown piece.
/// </summary>
internal sealed class SentencePieceModel : TokenizerModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly int[] _byteIds; // [256] id of "<0xNN>", or -1
    private readonly int _unknownId;

    public SentencePieceModel(string[] pieces, float[] scores, int unknownId)
    {
        _pieces = pieces;
        _scores = scores;
        _unknownId = unknownId;
        _vocab = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        // llama.cpp keeps the first id of a piece that appears twice.
        for (int id = 0; id < pieces.Length; id++) _vocab.TryAdd(pieces[id], id);
        _vocabBySpan = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _byteIds = new int[256];
        for (int b = 0; b < 256; b++) _byteIds[b] = _vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
    }

    public override int IdCount => _pieces.Length;

    public override int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public override string? IdToToken(int id) => id >= 0 && id < _pieces.Length ? _pieces[id] : null;

    public override void Tokenize(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty) return;
        // Symbols: [start, length] in text, linked list prev/next. [symbols]
        int capacity = text.Length;
        var start = new int[capacity];
        var length = new int[capacity];
        var prev = new int[capacity];
        var next = new int[capacity];
        int count = 0;
        for (int i = 0; i < text.Length;)
        {
            int width = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            start[count] = i; length[count] = width; prev[count] = count - 1; next[count] = -1;
            if (count > 0) next[count - 1] = count;
            count++;
            i += width;
        }

        // Max-heap on score, then leftmost: PriorityQueue is a min-heap, so the key is (-score, left).
        var queue = new PriorityQueue<(int Left, int Right, int Size), (float, int)>();
        var builtFrom = new Dictionary<long, int>(); // (start << 32 | length) -> length of the left part it was merged from
        for (int i = 1; i < count; i++) TryAddBigram(text, i - 1, i, start, length, queue, builtFrom);
        while (queue.TryDequeue(out var bigram, out _))
        {
            int left = bigram.Left, right = bigram.Right;
            // Stale: one side was merged away, or grew, since this pair was queued.
            if (length[left] == 0 || length[right] == 0 || length[left] + length[right] != bigram.Size) continue;
            length[left] += length[right];
            length[right] = 0;
            next[left] = next[right];
            if (next[right] >= 0) prev[next[right]] = left;
            TryAddBigram(text, prev[left], left, start, length, queue, builtFrom);
            TryAddBigram(text, left, next[left], start, length, queue, builtFrom);
        }

        for (int i = 0; i >= 0 && i < count; i = next[i]) Resegment(text, start[i], length[i], builtFrom, output);
    }

    private void TryAddBigram(ReadOnlySpan<char> text, int left, int right, int[] start, int[] length,
        PriorityQueue<(int Left, int Right, int Size), (float, int)> queue, Dictionary<long, int> builtFrom)
    {
        if (left < 0 || right < 0) return;
        int size = length[left] + length[right];
        if (!_vocabBySpan.TryGetValue(text.Slice(start[left], size), out int id)) return;
        queue.Enqueue((left, right, size), (-_scores[id], left));
        builtFrom[((long)start[left] << 32) | (uint)size] = length[left];
    }

    /// <summary>Spells the text [from, from + size) as pieces: itself, its two merge parts, or its bytes.</summary>
    private void Resegment(ReadOnlySpan<char> text, int from, int size, Dictionary<long, int> builtFrom, List<int> output)
    {
        var piece = text.Slice(from, size);
        if (_vocabBySpan.TryGetValue(piece, out int id))
        {
            output.Add(id);
            return;
        }
        if (builtFrom.TryGetValue(((long)from << 32) | (uint)size, out int leftSize))
        {
            Resegment(text, from, leftSize, builtFrom, output);
            Resegment(text, from + leftSize, size - leftSize, builtFrom, output);
            return;
        }
        Span<byte> bytes = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(size)];
        int byteCount = System.Text.Encoding.UTF8.GetBytes(piece, bytes);
        for (int b = 0; b < byteCount; b++)
        {
            int byteId = _byteIds[bytes[b]] >= 0 ? _byteIds[bytes[b]] : _unknownId;
            if (byteId >= 0) output.Add(byteId); // neither a byte piece nor an unknown piece: llama.cpp would fail; the byte is dropped
        }
    }
}

using Alora.Models;

namespace Alora.Inference;

/// <summary>
/// Tokens to append to a caller-held <see cref="KvSequence"/>: they take positions Sequence.Length onward.
/// With an adapter, rows at positions ≥ <paramref name="AdapterStart"/> are adapted (see <see cref="ForwardChunk"/>).
/// </summary>
public sealed record SequenceChunk(KvSequence Sequence, ReadOnlyMemory<int> Tokens, LogitRows Logits = LogitRows.Last,
    ForwardAdapter? Adapter = null, int AdapterStart = 0)
{
    public int LogitRowCount => Logits switch { LogitRows.All => Tokens.Length, LogitRows.Last => Tokens.Length > 0 ? 1 : 0, _ => 0 };
}

/// <summary>
/// The forward pass over caller-held sequences: reserves each sequence's blocks (all sequences, before the
/// pass), runs <see cref="DecoderModel.Forward(IReadOnlyList{ForwardChunk}, KvPool, Span{float})"/> on their
/// block tables, then records what was computed. The serving engine does the same with its own block manager.
/// </summary>
public static class SequenceForward
{
    /// <summary>A reference-counted KV cache able to hold <paramref name="tokenCapacity"/> tokens for this model.</summary>
    public static PagedKvCache CreateCache(this DecoderModel model, int tokenCapacity, int blockSize = 16)
        => new(KvPool.ForModel(model.Config, tokenCapacity, blockSize));

    [ThreadStatic] private static List<ForwardChunk>? t_chunks;
    [ThreadStatic] private static HashSet<KvSequence>? t_distinct;

    /// <summary>
    /// Appends each chunk's tokens to its sequence's cache and writes the requested logits, chunk by chunk in
    /// order, into <paramref name="logits"/> [R, V]. Returns R.
    /// </summary>
    public static int Forward(this DecoderModel model, IReadOnlyList<SequenceChunk> chunks, Span<float> logits)
    {
        if (chunks.Count == 0) return 0;
        var distinct = t_distinct ??= [];
        var forward = t_chunks ??= [];
        distinct.Clear();
        forward.Clear();
        var cache = chunks[0].Sequence.Cache;
        for (int i = 0; i < chunks.Count; i++)
        {
            var chunk = chunks[i];
            if (!distinct.Add(chunk.Sequence)) throw new ArgumentException("a sequence appears twice in one forward batch", nameof(chunks));
            if (chunk.Sequence.Cache != cache) throw new ArgumentException("all sequences of one forward batch must share one KV cache", nameof(chunks));
        }
        for (int i = 0; i < chunks.Count; i++) chunks[i].Sequence.PrepareAppend(chunks[i].Tokens.Length);
        for (int i = 0; i < chunks.Count; i++)
        {
            var chunk = chunks[i];
            forward.Add(new ForwardChunk(chunk.Sequence.BlockTableMemory, chunk.Sequence.Length, chunk.Tokens, chunk.Logits, chunk.Adapter, chunk.AdapterStart));
        }
        int rows = model.Forward(forward, cache.Pool, logits);
        for (int i = 0; i < chunks.Count; i++) chunks[i].Sequence.CommitAppend(chunks[i].Tokens.Span, chunks[i].Adapter, chunks[i].AdapterStart);
        forward.Clear();
        return rows;
    }
}

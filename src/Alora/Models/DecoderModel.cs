using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Models;

// Legend: M = rows in a micro-batch, D = hidden, F = intermediate, V = vocab, Hq/Hkv = heads, Dh = head size,
// Dq = Hq·Dh, Dkv = Hkv·Dh, S = sequences in the micro-batch, R = rows that want logits.

/// <summary>Which logits a chunk of tokens wants back.</summary>
public enum LogitRows { None, Last, All }

/// <summary>
/// Tokens to append to one sequence in a forward pass. They take positions <paramref name="StartPosition"/>
/// onward; their keys and values go into the slots that <paramref name="BlockTable"/> (block ids, read only,
/// one per <c>BlockSize</c> positions) names, which must already cover every position up to the last token.
/// With an adapter, rows at positions ≥ <paramref name="AdapterStart"/> are adapted (0: every row, a LoRA;
/// an aLoRA's activation start otherwise); the others are computed by the base model alone.
/// </summary>
public readonly record struct ForwardChunk(ReadOnlyMemory<int> BlockTable, int StartPosition, ReadOnlyMemory<int> Tokens,
    LogitRows Logits = LogitRows.Last, ForwardAdapter? Adapter = null, int AdapterStart = 0)
{
    public int LogitRowCount => Logits switch { LogitRows.All => Tokens.Length, LogitRows.Last => Tokens.Length > 0 ? 1 : 0, _ => 0 };
}

/// <summary>
/// The decoder forward pass of the Llama family (Llama, Mistral, Qwen2, Granite) over a flat batch of token
/// rows from any number of sequences, with a paged KV cache. Work buffers live in one slab sized for
/// <see cref="MaxBatchTokens"/> rows; longer inputs run as consecutive micro-batches. Not thread-safe: one
/// owner (the engine loop) calls it.
/// </summary>
public sealed unsafe class DecoderModel : IDisposable, IDecoderBlockOps
{
    private readonly NativeSlab _workspace;
    private readonly float* _hidden;        // [M, D] the residual stream
    private readonly float* _normed;        // [M, D]
    private readonly float* _query;         // [M, Dq]
    private readonly float* _key;           // [M, Dkv]
    private readonly float* _value;         // [M, Dkv]
    private readonly float* _attention;     // [M, Dq]
    private readonly float* _projected;     // [M, D] o_proj / down_proj output
    private readonly float* _gate;          // [M, F]
    private readonly float* _up;            // [M, F]
    private readonly int* _rowToken;        // [M]
    private readonly int* _rowPosition;     // [M]
    private readonly int* _rowSequence;     // [M]
    private readonly int* _logitSourceRow;  // [M]
    private NativeSlab? _blockTableSlab;
    private int* _blockTables;              // [S, maxBlocks]
    private long _blockTableCapacity;

    public DecoderModel(ModelWeights weights, int maxBatchTokens = 256)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchTokens, 1);
        Weights = weights;
        Config = weights.Config;
        MaxBatchTokens = maxBatchTokens;
        RopeTable = Config.CreateRopeTable();
        var c = Config;
        long m = maxBatchTokens;
        long floats = m * (3L * c.HiddenSize + 2L * c.QueryDim + 2L * c.KeyValueDim + 2L * c.IntermediateSize);
        _workspace = new NativeSlab(floats * 4 + 4 * m * sizeof(int) + 16 * NativeSlab.Alignment, "forward workspace");
        _hidden = _workspace.TakeFloats(m * c.HiddenSize, "hidden");
        _normed = _workspace.TakeFloats(m * c.HiddenSize, "normed");
        _query = _workspace.TakeFloats(m * c.QueryDim, "query");
        _key = _workspace.TakeFloats(m * c.KeyValueDim, "key");
        _value = _workspace.TakeFloats(m * c.KeyValueDim, "value");
        _attention = _workspace.TakeFloats(m * c.QueryDim, "attention");
        _projected = _workspace.TakeFloats(m * c.HiddenSize, "projected");
        _gate = _workspace.TakeFloats(m * c.IntermediateSize, "gate");
        _up = _workspace.TakeFloats(m * c.IntermediateSize, "up");
        _rowToken = (int*)_workspace.Take(m * sizeof(int), "row token");
        _rowPosition = (int*)_workspace.Take(m * sizeof(int), "row position");
        _rowSequence = (int*)_workspace.Take(m * sizeof(int), "row sequence");
        _logitSourceRow = (int*)_workspace.Take(m * sizeof(int), "logit rows");
    }

    public ModelWeights Weights { get; }
    public ModelConfig Config { get; }
    public RopeTable RopeTable { get; }
    public int MaxBatchTokens { get; }
    public int VocabSize => Config.VocabSize;

    /// <summary>
    /// Computes each chunk's tokens, writing their keys and values into <paramref name="pool"/> at the slots
    /// its block table names, and writes the requested logits, chunk by chunk in order, into
    /// <paramref name="logits"/> [R, V]. Returns R. The caller owns block allocation: nothing here allocates
    /// or frees a block, so a caller can reserve blocks for a whole step before it and commit them after.
    /// </summary>
    public int Forward(IReadOnlyList<ForwardChunk> chunks, KvPool pool, Span<float> logits)
    {
        // One owner (the engine thread) calls this; the lock only turns a second caller's misuse into waiting
        // instead of a corrupted workspace. Uncontended, it costs nanoseconds.
        lock (_workspace) return ForwardLocked(chunks, pool, logits);
    }

    private int ForwardLocked(IReadOnlyList<ForwardChunk> chunks, KvPool pool, Span<float> logits)
    {
        // Validation and bookkeeping reuse fields, so a decode step allocates nothing.
        if (pool.LayerCount != Config.LayerCount || pool.Layout.KeyValueHeads != Config.KeyValueHeadCount || pool.Layout.HeadDim != Config.HeadDim)
            throw new ArgumentException(
                $"the KV pool holds {pool.LayerCount} layers of {pool.Layout.KeyValueHeads}×{pool.Layout.HeadDim} keys/values; this model needs {Config.LayerCount} of {Config.KeyValueHeadCount}×{Config.HeadDim}", nameof(pool));
        int totalLogitRows = 0;
        for (int i = 0; i < chunks.Count; i++)
        {
            var chunk = chunks[i];
            totalLogitRows += chunk.LogitRowCount;
            ArgumentOutOfRangeException.ThrowIfNegative(chunk.StartPosition);
            long needed = ((long)chunk.StartPosition + chunk.Tokens.Length + pool.BlockSize - 1) / pool.BlockSize;
            if (chunk.BlockTable.Length < needed)
                throw new ArgumentException($"chunk {i}: positions up to {chunk.StartPosition + chunk.Tokens.Length - 1} need {needed} blocks, its block table has {chunk.BlockTable.Length}", nameof(chunks));
            foreach (int block in chunk.BlockTable.Span)
                if ((uint)block >= (uint)pool.BlockCount)
                    throw new ArgumentOutOfRangeException(nameof(chunks), $"chunk {i}: block id {block} is outside the pool [0, {pool.BlockCount})");
            foreach (int id in chunk.Tokens.Span)
                if ((uint)id >= (uint)VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(chunks), $"token id {id} is outside the vocabulary [0, {VocabSize})");
        }
        if (logits.Length < (long)totalLogitRows * VocabSize)
            throw new ArgumentException($"logits buffer holds {logits.Length} floats, {totalLogitRows} rows × {VocabSize} needed", nameof(logits));

        // Split into micro-batches of at most MaxBatchTokens rows; a chunk may span several.
        var done = _chunkProgress;
        done.Clear();
        for (int i = 0; i < chunks.Count; i++) done.Add(0);
        int logitRow = 0, next = 0;
        fixed (float* logitsBase = logits)
        {
            while (next < chunks.Count)
            {
                _micro.Clear();
                int rows = 0;
                for (int i = next; i < chunks.Count && rows < MaxBatchTokens; i++)
                {
                    var chunk = chunks[i];
                    int take = Math.Min(chunk.Tokens.Length - done[i], MaxBatchTokens - rows);
                    bool finishes = done[i] + take == chunk.Tokens.Length;
                    _micro.Add(new MicroChunk(chunk, done[i], take, chunk.Logits == LogitRows.All || (chunk.Logits == LogitRows.Last && finishes)));
                    done[i] += take;
                    rows += take;
                }
                while (next < chunks.Count && done[next] == chunks[next].Tokens.Length) next++;
                if (_micro.Count > 0) logitRow += RunMicroBatch(_micro, pool, logitsBase + (long)logitRow * VocabSize);
            }
        }
        return logitRow;
    }

    private readonly record struct MicroChunk(ForwardChunk Chunk, int Start, int Count, bool WantLogits);
    /// <summary>Rows [RowStart, RowStart + RowCount) of the micro-batch take <see cref="Adapter"/>.</summary>
    private readonly record struct AdapterSegment(int RowStart, int RowCount, ForwardAdapter Adapter);
    private readonly List<AdapterSegment> _segments = [];
    private NativeSlab? _loraSlab;
    private float* _loraScratch;      // [M, r] x·Aᵀ of one segment
    private int _loraScratchRank;
    private NativeSlab? _doraSlab;
    private float* _doraLora;         // [M, out] a DoRA segment's side path
    private float* _doraScale;        // [out] g = m / n of one projection
    private readonly List<int> _chunkProgress = [];
    private readonly List<MicroChunk> _micro = [];

    private int RunMicroBatch(List<MicroChunk> micro, KvPool pool, float* logits)
    {
        var c = Config;
        int m = 0, logitRowCount = 0, maxBlocks = 0;
        _segments.Clear();
        for (int s = 0; s < micro.Count; s++)
        {
            var (chunk, start, count, wantLogits) = micro[s];
            int firstPosition = chunk.StartPosition + start;
            if (chunk.Adapter is { } adapter)
            {
                if (adapter.LayerCount != c.LayerCount)
                    throw new ArgumentException($"adapter '{adapter.Name}' has {adapter.LayerCount} layers, the model {c.LayerCount} (wrong base model?)", nameof(micro));
                int firstAdapted = (int)Math.Clamp((long)chunk.AdapterStart - firstPosition, 0, count);
                if (firstAdapted < count)
                {
                    _segments.Add(new AdapterSegment(m + firstAdapted, count - firstAdapted, adapter));
                    EnsureLoraScratch(adapter.MaxRank);
                    if (adapter.HasDora) EnsureDoraScratch();
                }
            }
            maxBlocks = Math.Max(maxBlocks, (firstPosition + count + pool.BlockSize - 1) / pool.BlockSize);
            var tokens = chunk.Tokens.Span.Slice(start, count);
            for (int t = 0; t < count; t++, m++)
            {
                _rowToken[m] = tokens[t];
                _rowPosition[m] = firstPosition + t;
                _rowSequence[m] = s;
                if (wantLogits && (chunk.Logits == LogitRows.All || t == count - 1)) _logitSourceRow[logitRowCount++] = m;
            }
        }
        EnsureBlockTableCapacity((long)micro.Count * maxBlocks);
        for (int s = 0; s < micro.Count; s++)
        {
            var table = micro[s].Chunk.BlockTable.Span;
            table[..Math.Min(table.Length, maxBlocks)].CopyTo(new Span<int>(_blockTables + (long)s * maxBlocks, maxBlocks));
        }

        Embedding.Lookup(_hidden, Weights.Embedding, _rowToken, m);
        if (c.EmbeddingMultiplier != 1f) Elementwise.Scale(_hidden, c.EmbeddingMultiplier, (long)m * c.HiddenSize);

        RunLayers(pool, m, maxBlocks);

        if (logitRowCount == 0) return 0;
        for (int r = 0; r < logitRowCount; r++)
        {
            long bytes = (long)c.HiddenSize * sizeof(float);
            Buffer.MemoryCopy(_hidden + (long)_logitSourceRow[r] * c.HiddenSize, _normed + (long)r * c.HiddenSize, bytes, bytes);
        }
        Elementwise.RmsNorm(_normed, _normed, Weights.FinalNorm, logitRowCount, c.HiddenSize, c.RmsNormEps);
        Gemm.MatMul(logits, _normed, Weights.LmHead, logitRowCount);
        if (c.LogitsScaling != 1f) Elementwise.Scale(logits, 1f / c.LogitsScaling, (long)logitRowCount * c.VocabSize);
        return logitRowCount;
    }

    // The micro-batch that IDecoderBlockOps' calls work on (set by RunMicroBatch; no allocation per step).
    private KvPool? _stepPool;
    private int _stepRows, _stepMaxBlocks;

    private void RunLayers(KvPool pool, int m, int maxBlocks)
    {
        var c = Config;
        _stepPool = pool;
        _stepRows = m;
        _stepMaxBlocks = maxBlocks;
        // In place: the residual stream is both each layer's input and its output, and silu(gate)·up overwrites gate.
        var buffers = new DecoderBlockBuffers
        {
            Normed1 = _normed, Query = _query, Key = _key, Value = _value, Attention = _attention, Middle = _hidden,
            Normed2 = _normed, Gate = _gate, Up = _up, Activation = _gate, Projected = _projected,
        };
        try
        {
            for (int layer = 0; layer < c.LayerCount; layer++)
                DecoderBlock.Forward(this, c, Weights.Layers[layer], layer, buffers, _hidden, _hidden, _rowPosition, RopeTable, m);
        }
        finally { _stepPool = null; }
    }

    void IDecoderBlockOps.Project(float* y, float* x, in WeightMatrix weight, float* bias, int layer, Projection projection)
        => Linear(y, x, weight, bias, _stepRows, layer, projection);

    /// <summary>Writes the rows' keys and values into their cache slots, then attends over each row's block table.</summary>
    void IDecoderBlockOps.Attend(int layer, float* output, float* logSumExp, float* query, float* key, float* value)
    {
        var c = Config;
        var cache = _stepPool!;
        WriteKeyValues(cache, layer, key, value, _stepRows, _stepMaxBlocks);
        Attention.Forward(new Attention.Problem
        {
            Output = output,
            Query = query,
            KeyBlocks = cache.KeyBlocks(layer),
            ValueBlocks = cache.ValueBlocks(layer),
            BlockTables = _blockTables,
            MaxBlocksPerSequence = _stepMaxBlocks,
            RowSequence = _rowSequence,
            RowPosition = _rowPosition,
            RowCount = _stepRows,
            HeadCount = c.HeadCount,
            KeyValueHeadCount = c.KeyValueHeadCount,
            HeadDim = c.HeadDim,
            BlockSize = cache.BlockSize,
            Scale = c.AttentionScale,
            SlidingWindow = c.SlidingWindow ?? 0,
        });
    }

    /// <summary>
    /// y[M, out] = x[M, in]·Wᵀ + bias for every row (one GEMM with the frozen weight), then for each adapter
    /// segment y[rows] += s·(x[rows]·Aᵀ)·Bᵀ: base, LoRA and aLoRA rows of different adapters share one batch.
    /// </summary>
    private void Linear(float* y, float* x, in WeightMatrix weight, float* bias, int m, int layer, Projection projection)
    {
        Gemm.MatMul(y, x, weight, m);
        if (bias != null)
            for (int i = 0; i < m; i++) Elementwise.Add(y + (long)i * weight.Rows, bias, weight.Rows);
        foreach (var segment in _segments)
        {
            if (segment.Adapter.Get(layer, projection) is not { } delta) continue;
            float* rowsIn = x + (long)segment.RowStart * weight.Cols;
            float* rowsOut = y + (long)segment.RowStart * weight.Rows;
            Gemm.MatMul(_loraScratch, rowsIn, delta.A, segment.RowCount);                 // [rows, r]
            if (delta.Router is { } router)   // Arrow: each row scales its experts' blocks by its own routing weights
                for (int i = 0; i < segment.RowCount; i++) router.ScaleRow(_loraScratch + (long)i * delta.Rank, rowsIn + (long)i * weight.Cols);
            else
                for (int i = 0; i < segment.RowCount; i++) Elementwise.Scale(_loraScratch + (long)i * delta.Rank, delta.Scaling, delta.Rank);
            if (!delta.IsDora)
            {
                Gemm.MatMul(rowsOut, _loraScratch, delta.B, segment.RowCount, accumulate: true);   // += [rows, out]
                continue;
            }
            // DoRA (PEFT's eval-mode forward): y += (g − 1)·(y − bias) + g·s·(x·Aᵀ)·Bᵀ, g = m / ‖W + s·B·A‖.
            Gemm.MatMul(_doraLora, _loraScratch, delta.B, segment.RowCount);                 // [rows, out]
            Dora.Scales(_doraScale, delta.Magnitude, segment.Adapter.DoraNorms(layer, projection, weight), weight.Rows);
            for (int i = 0; i < segment.RowCount; i++)
                Dora.CombineRow(rowsOut + (long)i * weight.Rows, _doraLora + (long)i * weight.Rows, _doraScale, bias, weight.Rows);
        }
    }

    private void EnsureDoraScratch()
    {
        if (_doraSlab is not null) return;
        var c = Config;
        long widest = Math.Max(Math.Max(c.QueryDim, c.KeyValueDim), Math.Max(c.HiddenSize, c.IntermediateSize));
        _doraSlab = new NativeSlab(((long)MaxBatchTokens + 1) * widest * sizeof(float) + 2 * NativeSlab.Alignment, "dora scratch");
        _doraLora = _doraSlab.TakeFloats((long)MaxBatchTokens * widest, "s·(x·Aᵀ)·Bᵀ");
        _doraScale = _doraSlab.TakeFloats(widest, "m / n");
    }

    private void EnsureLoraScratch(int rank)
    {
        if (rank <= _loraScratchRank) return;
        _loraSlab?.Dispose();
        _loraSlab = new NativeSlab((long)MaxBatchTokens * rank * sizeof(float), "lora scratch");
        _loraScratch = _loraSlab.TakeFloats((long)MaxBatchTokens * rank, "x·Aᵀ");
        _loraScratchRank = rank;
    }

    /// <summary>Scatters this micro-batch's keys and values into their cache slots (<see cref="KvBlockLayout"/>).</summary>
    private void WriteKeyValues(KvPool pool, int layer, float* key, float* value, int m, int maxBlocks)
    {
        var layout = pool.Layout;
        int dkv = Config.KeyValueDim;
        float* keys = pool.KeyBlocks(layer), values = pool.ValueBlocks(layer);
        for (int i = 0; i < m; i++)
        {
            int position = _rowPosition[i];
            int block = _blockTables[(long)_rowSequence[i] * maxBlocks + position / layout.BlockSize];
            layout.Write(keys + block * layout.BlockFloats, values + block * layout.BlockFloats, position % layout.BlockSize,
                key + (long)i * dkv, value + (long)i * dkv);
        }
    }

    private void EnsureBlockTableCapacity(long entries)
    {
        if (entries <= _blockTableCapacity) return;
        long capacity = Math.Max(entries, _blockTableCapacity * 2);
        _blockTableSlab?.Dispose();
        _blockTableSlab = new NativeSlab(capacity * sizeof(int), "block tables");
        _blockTables = (int*)_blockTableSlab.Take(capacity * sizeof(int), "block tables");
        _blockTableCapacity = capacity;
    }

    public void Dispose()
    {
        _workspace.Dispose();
        _blockTableSlab?.Dispose();
        _loraSlab?.Dispose();
        _doraSlab?.Dispose();
    }
}

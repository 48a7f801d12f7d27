using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = rows (tokens of any sequences), S = distinct sequences, Hq/Hkv = query/key-value heads,
// G = Hq/Hkv (queries per KV head), Dh = head size, B = tokens per KV block, T = positions attended.
//
// Cache layout, per layer: keys [N, Hkv, Dh, B] (each block's keys stored transposed, so the scores of one
// query against B keys are Dh broadcast-FMAs over a B-wide vector, with no horizontal sums) and values
// [N, Hkv, B, Dh] (each key's value row contiguous, for the weighted sum).

/// <summary>
/// Causal grouped-query attention of a flat batch of rows over a paged KV cache. Row i belongs to
/// sequence rowSequence[i] at position rowPosition[i] and attends to that sequence's positions
/// [lo, p] (lo = 0, or p − window + 1 with a sliding window). Its keys/values must already be in the cache.
/// </summary>
public static unsafe class Attention
{
    public readonly struct Problem
    {
        public float* Output { get; init; }          // [M, Hq*Dh]
        public float* Query { get; init; }           // [M, Hq*Dh], RoPE applied
        public float* KeyBlocks { get; init; }       // [blocks, Hkv, Dh, B]
        public float* ValueBlocks { get; init; }     // [blocks, Hkv, B, Dh]
        public int* BlockTables { get; init; }       // [S, MaxBlocksPerSequence]
        public int MaxBlocksPerSequence { get; init; }
        public int* RowSequence { get; init; }       // [M]
        public int* RowPosition { get; init; }       // [M]
        public int RowCount { get; init; }
        public int HeadCount { get; init; }
        public int KeyValueHeadCount { get; init; }
        public int HeadDim { get; init; }
        public int BlockSize { get; init; }
        public float Scale { get; init; }
        public int SlidingWindow { get; init; }      // 0: none

        internal int FirstPosition(int position) => SlidingWindow > 0 ? Math.Max(0, position - SlidingWindow + 1) : 0;

        internal int Block(int sequence, int position) => BlockTables[(long)sequence * MaxBlocksPerSequence + position / BlockSize];

        internal KvBlockLayout Layout => new(KeyValueHeadCount, HeadDim, BlockSize);

        /// <summary>[Dh, B] keys of one block and KV head.</summary>
        internal float* KeyTile(int block, int kvHead) => KeyBlocks + block * Layout.BlockFloats + Layout.KeyTileOffset(kvHead);

        /// <summary>[B, Dh] values of one block and KV head.</summary>
        internal float* ValueTile(int block, int kvHead) => ValueBlocks + block * Layout.BlockFloats + Layout.ValueTileOffset(kvHead);
    }

    public static void Forward(in Problem problem)
    {
        var task = new RowTask { P = problem };
        WorkerPool.Shared.For(problem.RowCount * problem.KeyValueHeadCount, ref task);
    }

    private struct RowTask : IParallelTask
    {
        public Problem P;
        public void Execute(int index)
        {
            int row = index / P.KeyValueHeadCount, kvHead = index % P.KeyValueHeadCount;
            if (Vector512.IsHardwareAccelerated && P.BlockSize % 16 == 0) RowVector512(P, row, kvHead);
            else if (Vector256.IsHardwareAccelerated && P.BlockSize % 8 == 0) RowVector256(P, row, kvHead);
            else RowScalar(P, row, kvHead);
        }
    }

    /// <summary>
    /// One (row, KV head), Vector512. For each of the G queries, the keys are walked 64 at a time (four
    /// chunks of 16, each inside one block): each chunk's 16 scores come from Dh broadcast-FMAs over the
    /// transposed key tile; one online-softmax update (running max and sum) per 64 keys rescales the
    /// output, which accumulates the weighted values in registers. No buffer of length T.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowVector512(in Problem p, int row, int kvHead)
    {
        const int Chunk = 16, ChunksPerStep = 4;
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim, blockSize = p.BlockSize;
        int sequence = p.RowSequence[row], position = p.RowPosition[row];
        int first = p.FirstPosition(position);
        bool wideRows = dh % 16 == 0;
        int vectorsPerRow = dh / 16;
        Vector512<float>* accumulator = stackalloc Vector512<float>[Math.Max(1, vectorsPerRow)];  // [Dh/16]
        float* weights = stackalloc float[Chunk * ChunksPerStep];                               // [64]
        Vector512<float>* scores = stackalloc Vector512<float>[ChunksPerStep];
        Vector512<float>* validLanes = stackalloc Vector512<float>[ChunksPerStep];
        float** valueTiles = stackalloc float*[ChunksPerStep];
        int* lows = stackalloc int[ChunksPerStep];
        int* highs = stackalloc int[ChunksPerStep];
        var lane = Vector512.Create(0f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var scale = Vector512.Create(p.Scale);
        var negativeInfinity = Vector512.Create(float.NegativeInfinity);
        var floor = Vector512.Create(-87f);   // below this, e^x is subnormal (slow on x86) and negligible: it becomes 0

        for (int g = 0; g < group; g++)
        {
            int head = kvHead * group + g;
            float* q = p.Query + ((long)row * p.HeadCount + head) * dh;
            float* o = p.Output + ((long)row * p.HeadCount + head) * dh;
            float runningMax = float.NegativeInfinity, runningSum = 0;
            if (wideRows) for (int v = 0; v < vectorsPerRow; v++) accumulator[v] = Vector512<float>.Zero;
            else new Span<float>(o, dh).Clear();

            for (int stepStart = first / Chunk * Chunk; stepStart <= position; stepStart += Chunk * ChunksPerStep)
            {
                int chunks = Math.Min(ChunksPerStep, (position - stepStart) / Chunk + 1);
                var stepMax = negativeInfinity;
                for (int c = 0; c < chunks; c++)
                {
                    int chunkStart = stepStart + c * Chunk;
                    int block = p.Block(sequence, chunkStart);
                    int slot = chunkStart % blockSize;
                    float* keys = p.KeyTile(block, kvHead) + slot;                // column `slot` of [Dh, B]
                    valueTiles[c] = p.ValueTile(block, kvHead) + (long)slot * dh;  // rows slot.. of [B, Dh]
                    lows[c] = Math.Max(first - chunkStart, 0);
                    highs[c] = Math.Min(position - chunkStart, Chunk - 1);
                    // Four partial sums break the FMA dependency chain over d.
                    Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
                    int d = 0;
                    for (; d + 4 <= dh; d += 4)
                    {
                        float* k = keys + (long)d * blockSize;
                        acc0 = Vector512.FusedMultiplyAdd(Vector512.Create(q[d]), Vector512.Load(k), acc0);
                        acc1 = Vector512.FusedMultiplyAdd(Vector512.Create(q[d + 1]), Vector512.Load(k + blockSize), acc1);
                        acc2 = Vector512.FusedMultiplyAdd(Vector512.Create(q[d + 2]), Vector512.Load(k + 2 * blockSize), acc2);
                        acc3 = Vector512.FusedMultiplyAdd(Vector512.Create(q[d + 3]), Vector512.Load(k + 3 * blockSize), acc3);
                    }
                    for (; d < dh; d++) acc0 = Vector512.FusedMultiplyAdd(Vector512.Create(q[d]), Vector512.Load(keys + (long)d * blockSize), acc0);
                    var valid = Vector512.GreaterThanOrEqual(lane, Vector512.Create((float)lows[c])) & Vector512.LessThanOrEqual(lane, Vector512.Create((float)highs[c]));
                    validLanes[c] = valid;
                    scores[c] = Vector512.ConditionalSelect(valid, ((acc0 + acc1) + (acc2 + acc3)) * scale, negativeInfinity);
                    stepMax = Vector512.Max(stepMax, scores[c]);
                }
                float newMax = MathF.Max(runningMax, ToScalarMax(stepMax));
                var shift = Vector512.Create(newMax);
                var sum = Vector512<float>.Zero;
                for (int c = 0; c < chunks; c++)
                {
                    var shifted = Vector512.ConditionalSelect(validLanes[c], scores[c] - shift, Vector512<float>.Zero);
                    var keep = validLanes[c] & Vector512.GreaterThan(shifted, floor);
                    var e = Vector512.ConditionalSelect(keep, VectorMath.Exp(Vector512.Max(shifted, floor)), Vector512<float>.Zero);
                    sum += e;
                    e.Store(weights + c * Chunk);
                }
                float correction = MathF.Exp(runningMax - newMax);   // 0 on the first step
                runningSum = runningSum * correction + Vector512.Sum(sum);
                runningMax = newMax;

                if (wideRows)
                {
                    // Output vectors are loaded once per step, accumulated in registers over its keys, stored once.
                    var scaleBy = Vector512.Create(correction);
                    int v = 0;
                    for (; v + 4 <= vectorsPerRow; v += 4)
                    {
                        Vector512<float> o0 = accumulator[v] * scaleBy, o1 = accumulator[v + 1] * scaleBy, o2 = accumulator[v + 2] * scaleBy, o3 = accumulator[v + 3] * scaleBy;
                        for (int c = 0; c < chunks; c++)
                        {
                            float* w = weights + c * Chunk;
                            for (int t = lows[c]; t <= highs[c]; t++)
                            {
                                var wt = Vector512.Create(w[t]);
                                float* valueRow = valueTiles[c] + (long)t * dh + v * 16;
                                o0 = Vector512.FusedMultiplyAdd(wt, Vector512.Load(valueRow), o0);
                                o1 = Vector512.FusedMultiplyAdd(wt, Vector512.Load(valueRow + 16), o1);
                                o2 = Vector512.FusedMultiplyAdd(wt, Vector512.Load(valueRow + 32), o2);
                                o3 = Vector512.FusedMultiplyAdd(wt, Vector512.Load(valueRow + 48), o3);
                            }
                        }
                        accumulator[v] = o0; accumulator[v + 1] = o1; accumulator[v + 2] = o2; accumulator[v + 3] = o3;
                    }
                    for (; v < vectorsPerRow; v++)
                    {
                        var o0 = accumulator[v] * scaleBy;
                        for (int c = 0; c < chunks; c++)
                            for (int t = lows[c]; t <= highs[c]; t++)
                                o0 = Vector512.FusedMultiplyAdd(Vector512.Create(weights[c * Chunk + t]), Vector512.Load(valueTiles[c] + (long)t * dh + v * 16), o0);
                        accumulator[v] = o0;
                    }
                }
                else
                {
                    if (correction != 1f) Elementwise.Scale(o, correction, dh);
                    for (int c = 0; c < chunks; c++)
                        for (int t = lows[c]; t <= highs[c]; t++) Elementwise.Axpy(o, weights[c * Chunk + t], valueTiles[c] + (long)t * dh, dh);
                }
            }
            float inverse = 1f / runningSum;
            if (wideRows) for (int v = 0; v < vectorsPerRow; v++) (accumulator[v] * inverse).Store(o + v * 16);
            else Elementwise.Scale(o, inverse, dh);
        }
    }

    /// <summary>
    /// One (row, KV head), Vector256. For each of the G queries, the keys are walked 64 at a time (four
    /// chunks of 16, each inside one block): each chunk's 16 scores come from Dh broadcast-FMAs over the
    /// transposed key tile; one online-softmax update (running max and sum) per 64 keys rescales the
    /// output, which accumulates the weighted values in registers. No buffer of length T.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowVector256(in Problem p, int row, int kvHead)
    {
        const int Chunk = 8, ChunksPerStep = 8;
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim, blockSize = p.BlockSize;
        int sequence = p.RowSequence[row], position = p.RowPosition[row];
        int first = p.FirstPosition(position);
        bool wideRows = dh % 8 == 0;
        int vectorsPerRow = dh / 8;
        Vector256<float>* accumulator = stackalloc Vector256<float>[Math.Max(1, vectorsPerRow)];  // [Dh/8]
        float* weights = stackalloc float[Chunk * ChunksPerStep];                               // [64]
        Vector256<float>* scores = stackalloc Vector256<float>[ChunksPerStep];
        Vector256<float>* validLanes = stackalloc Vector256<float>[ChunksPerStep];
        float** valueTiles = stackalloc float*[ChunksPerStep];
        int* lows = stackalloc int[ChunksPerStep];
        int* highs = stackalloc int[ChunksPerStep];
        var lane = Vector256.Create(0f, 1, 2, 3, 4, 5, 6, 7);
        var scale = Vector256.Create(p.Scale);
        var negativeInfinity = Vector256.Create(float.NegativeInfinity);
        var floor = Vector256.Create(-87f);   // below this, e^x is subnormal (slow on x86) and negligible: it becomes 0

        for (int g = 0; g < group; g++)
        {
            int head = kvHead * group + g;
            float* q = p.Query + ((long)row * p.HeadCount + head) * dh;
            float* o = p.Output + ((long)row * p.HeadCount + head) * dh;
            float runningMax = float.NegativeInfinity, runningSum = 0;
            if (wideRows) for (int v = 0; v < vectorsPerRow; v++) accumulator[v] = Vector256<float>.Zero;
            else new Span<float>(o, dh).Clear();

            for (int stepStart = first / Chunk * Chunk; stepStart <= position; stepStart += Chunk * ChunksPerStep)
            {
                int chunks = Math.Min(ChunksPerStep, (position - stepStart) / Chunk + 1);
                var stepMax = negativeInfinity;
                for (int c = 0; c < chunks; c++)
                {
                    int chunkStart = stepStart + c * Chunk;
                    int block = p.Block(sequence, chunkStart);
                    int slot = chunkStart % blockSize;
                    float* keys = p.KeyTile(block, kvHead) + slot;                // column `slot` of [Dh, B]
                    valueTiles[c] = p.ValueTile(block, kvHead) + (long)slot * dh;  // rows slot.. of [B, Dh]
                    lows[c] = Math.Max(first - chunkStart, 0);
                    highs[c] = Math.Min(position - chunkStart, Chunk - 1);
                    // Four partial sums break the FMA dependency chain over d.
                    Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
                    int d = 0;
                    for (; d + 4 <= dh; d += 4)
                    {
                        float* k = keys + (long)d * blockSize;
                        acc0 = Vector256.FusedMultiplyAdd(Vector256.Create(q[d]), Vector256.Load(k), acc0);
                        acc1 = Vector256.FusedMultiplyAdd(Vector256.Create(q[d + 1]), Vector256.Load(k + blockSize), acc1);
                        acc2 = Vector256.FusedMultiplyAdd(Vector256.Create(q[d + 2]), Vector256.Load(k + 2 * blockSize), acc2);
                        acc3 = Vector256.FusedMultiplyAdd(Vector256.Create(q[d + 3]), Vector256.Load(k + 3 * blockSize), acc3);
                    }
                    for (; d < dh; d++) acc0 = Vector256.FusedMultiplyAdd(Vector256.Create(q[d]), Vector256.Load(keys + (long)d * blockSize), acc0);
                    var valid = Vector256.GreaterThanOrEqual(lane, Vector256.Create((float)lows[c])) & Vector256.LessThanOrEqual(lane, Vector256.Create((float)highs[c]));
                    validLanes[c] = valid;
                    scores[c] = Vector256.ConditionalSelect(valid, ((acc0 + acc1) + (acc2 + acc3)) * scale, negativeInfinity);
                    stepMax = Vector256.Max(stepMax, scores[c]);
                }
                float newMax = MathF.Max(runningMax, ToScalarMax(stepMax));
                var shift = Vector256.Create(newMax);
                var sum = Vector256<float>.Zero;
                for (int c = 0; c < chunks; c++)
                {
                    var shifted = Vector256.ConditionalSelect(validLanes[c], scores[c] - shift, Vector256<float>.Zero);
                    var keep = validLanes[c] & Vector256.GreaterThan(shifted, floor);
                    var e = Vector256.ConditionalSelect(keep, VectorMath.Exp(Vector256.Max(shifted, floor)), Vector256<float>.Zero);
                    sum += e;
                    e.Store(weights + c * Chunk);
                }
                float correction = MathF.Exp(runningMax - newMax);   // 0 on the first step
                runningSum = runningSum * correction + Vector256.Sum(sum);
                runningMax = newMax;

                if (wideRows)
                {
                    // Output vectors are loaded once per step, accumulated in registers over its keys, stored once.
                    var scaleBy = Vector256.Create(correction);
                    int v = 0;
                    for (; v + 4 <= vectorsPerRow; v += 4)
                    {
                        Vector256<float> o0 = accumulator[v] * scaleBy, o1 = accumulator[v + 1] * scaleBy, o2 = accumulator[v + 2] * scaleBy, o3 = accumulator[v + 3] * scaleBy;
                        for (int c = 0; c < chunks; c++)
                        {
                            float* w = weights + c * Chunk;
                            for (int t = lows[c]; t <= highs[c]; t++)
                            {
                                var wt = Vector256.Create(w[t]);
                                float* valueRow = valueTiles[c] + (long)t * dh + v * 8;
                                o0 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(valueRow), o0);
                                o1 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(valueRow + 8), o1);
                                o2 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(valueRow + 16), o2);
                                o3 = Vector256.FusedMultiplyAdd(wt, Vector256.Load(valueRow + 24), o3);
                            }
                        }
                        accumulator[v] = o0; accumulator[v + 1] = o1; accumulator[v + 2] = o2; accumulator[v + 3] = o3;
                    }
                    for (; v < vectorsPerRow; v++)
                    {
                        var o0 = accumulator[v] * scaleBy;
                        for (int c = 0; c < chunks; c++)
                            for (int t = lows[c]; t <= highs[c]; t++)
                                o0 = Vector256.FusedMultiplyAdd(Vector256.Create(weights[c * Chunk + t]), Vector256.Load(valueTiles[c] + (long)t * dh + v * 8), o0);
                        accumulator[v] = o0;
                    }
                }
                else
                {
                    if (correction != 1f) Elementwise.Scale(o, correction, dh);
                    for (int c = 0; c < chunks; c++)
                        for (int t = lows[c]; t <= highs[c]; t++) Elementwise.Axpy(o, weights[c * Chunk + t], valueTiles[c] + (long)t * dh, dh);
                }
            }
            float inverse = 1f / runningSum;
            if (wideRows) for (int v = 0; v < vectorsPerRow; v++) (accumulator[v] * inverse).Store(o + v * 8);
            else Elementwise.Scale(o, inverse, dh);
        }
    }

    private static float ToScalarMax(Vector256<float> v)
    {
        var n = Vector128.Max(v.GetLower(), v.GetUpper());
        return MathF.Max(MathF.Max(n[0], n[1]), MathF.Max(n[2], n[3]));
    }

    private static float ToScalarMax(Vector512<float> v)
    {
        var m = Vector256.Max(v.GetLower(), v.GetUpper());
        var n = Vector128.Max(m.GetLower(), m.GetUpper());
        return MathF.Max(MathF.Max(n[0], n[1]), MathF.Max(n[2], n[3]));
    }

    /// <summary>The same block-wise online softmax in scalar code (any block size; no vector hardware).</summary>
    private static void RowScalar(in Problem p, int row, int kvHead)
    {
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim, blockSize = p.BlockSize;
        int sequence = p.RowSequence[row], position = p.RowPosition[row];
        int first = p.FirstPosition(position);
        float* query = p.Query + ((long)row * p.HeadCount + kvHead * group) * dh;
        float* output = p.Output + ((long)row * p.HeadCount + kvHead * group) * dh;
        float* runningMax = stackalloc float[group];
        float* runningSum = stackalloc float[group];
        float* scores = stackalloc float[blockSize];
        for (int g = 0; g < group; g++)
        {
            runningMax[g] = float.NegativeInfinity;
            runningSum[g] = 0;
            new Span<float>(output + g * dh, dh).Clear();
        }
        for (int start = first; start <= position;)
        {
            int end = Math.Min(position + 1, (start / blockSize + 1) * blockSize);   // keys [start, end) share a block
            int block = p.Block(sequence, start);
            float* keys = p.KeyTile(block, kvHead);
            float* values = p.ValueTile(block, kvHead);
            int slot0 = start % blockSize, n = end - start;
            for (int g = 0; g < group; g++)
            {
                float* q = query + g * dh;
                float blockMax = float.NegativeInfinity;
                for (int t = 0; t < n; t++)
                {
                    float dot = 0;
                    for (int d = 0; d < dh; d++) dot += q[d] * keys[(long)d * blockSize + slot0 + t];
                    scores[t] = dot * p.Scale;
                    blockMax = MathF.Max(blockMax, scores[t]);
                }
                float newMax = MathF.Max(runningMax[g], blockMax);
                float correction = MathF.Exp(runningMax[g] - newMax);
                float* o = output + g * dh;
                float sum = runningSum[g] * correction;
                for (int d = 0; d < dh; d++) o[d] *= correction;
                for (int t = 0; t < n; t++)
                {
                    float w = MathF.Exp(scores[t] - newMax);
                    sum += w;
                    float* v = values + (long)(slot0 + t) * dh;
                    for (int d = 0; d < dh; d++) o[d] += w * v[d];
                }
                runningMax[g] = newMax;
                runningSum[g] = sum;
            }
            start = end;
        }
        for (int g = 0; g < group; g++)
        {
            float inv = 1f / runningSum[g];
            for (int d = 0; d < dh; d++) output[g * dh + d] *= inv;
        }
    }

    /// <summary>Scalar reference twin: scores for all T positions, a two-pass softmax, then the weighted sum.</summary>
    public static void ForwardReference(in Problem p)
    {
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim, blockSize = p.BlockSize;
        for (int row = 0; row < p.RowCount; row++)
        {
            int sequence = p.RowSequence[row], position = p.RowPosition[row];
            int first = p.FirstPosition(position), count = position - first + 1;
            var scores = new float[count];
            for (int h = 0; h < p.HeadCount; h++)
            {
                int kvHead = h / group;
                float* q = p.Query + ((long)row * p.HeadCount + h) * dh;
                for (int t = 0; t < count; t++)
                {
                    int pos = first + t;
                    float* k = p.KeyTile(p.Block(sequence, pos), kvHead);
                    float dot = 0;
                    for (int d = 0; d < dh; d++) dot += q[d] * k[(long)d * blockSize + pos % blockSize];
                    scores[t] = dot * p.Scale;
                }
                fixed (float* s = scores) Elementwise.SoftmaxReference(s, count);
                float* o = p.Output + ((long)row * p.HeadCount + h) * dh;
                for (int d = 0; d < dh; d++)
                {
                    float acc = 0;
                    for (int t = 0; t < count; t++)
                    {
                        int pos = first + t;
                        acc += scores[t] * p.ValueTile(p.Block(sequence, pos), kvHead)[(long)(pos % blockSize) * dh + d];
                    }
                    o[d] = acc;
                }
            }
        }
    }
}

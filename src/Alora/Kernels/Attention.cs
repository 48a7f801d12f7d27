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
            if (Vector512.IsHardwareAccelerated && P.BlockSize % 16 == 0) RowVector<Vector512<float>, Vector512Ops>(P, row, kvHead);
            else if (Vector256.IsHardwareAccelerated && P.BlockSize % 8 == 0) RowVector<Vector256<float>, Vector256Ops>(P, row, kvHead);
            else RowScalar(P, row, kvHead);
        }
    }

    /// <summary>
    /// One (row, KV head), for any vector width W (16 lanes for Vector512, 8 for Vector256). For each of the G
    /// queries, the keys are walked 64 at a time (64 / W chunks of W, each inside one block): each chunk's W scores
    /// come from Dh broadcast-FMAs over the transposed key tile; one online-softmax update (running max and sum) per
    /// 64 keys rescales the output, which accumulates the weighted values in registers. No buffer of length T.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowVector<TVec, TOps>(in Problem p, int row, int kvHead) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        const int KeysPerStep = 64;
        int w = TOps.Count, chunksPerStep = KeysPerStep / w;
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim, blockSize = p.BlockSize;
        int sequence = p.RowSequence[row], position = p.RowPosition[row];
        int first = p.FirstPosition(position);
        bool wideRows = dh % w == 0;
        int vectorsPerRow = dh / w;
        TVec* accumulator = stackalloc TVec[Math.Max(1, vectorsPerRow)];   // [Dh/W]
        float* weights = stackalloc float[KeysPerStep];                     // [64]
        TVec* scores = stackalloc TVec[chunksPerStep];                      // [64/W]
        TVec* validLanes = stackalloc TVec[chunksPerStep];                  // [64/W]
        float** valueTiles = stackalloc float*[chunksPerStep];
        int* lows = stackalloc int[chunksPerStep];
        int* highs = stackalloc int[chunksPerStep];
        var lane = TOps.Indices;
        var scale = TOps.Create(p.Scale);
        var negativeInfinity = TOps.Create(float.NegativeInfinity);
        var floor = TOps.Create(-87f);   // below this, e^x is subnormal (slow on x86) and negligible: it becomes 0

        for (int g = 0; g < group; g++)
        {
            int head = kvHead * group + g;
            float* q = p.Query + ((long)row * p.HeadCount + head) * dh;
            float* o = p.Output + ((long)row * p.HeadCount + head) * dh;
            float runningMax = float.NegativeInfinity, runningSum = 0;
            if (wideRows) for (int v = 0; v < vectorsPerRow; v++) accumulator[v] = TOps.Zero;
            else new Span<float>(o, dh).Clear();

            for (int stepStart = first / w * w; stepStart <= position; stepStart += KeysPerStep)
            {
                int chunks = Math.Min(chunksPerStep, (position - stepStart) / w + 1);
                var stepMax = negativeInfinity;
                for (int c = 0; c < chunks; c++)
                {
                    int chunkStart = stepStart + c * w;
                    int block = p.Block(sequence, chunkStart);
                    int slot = chunkStart % blockSize;
                    float* keys = p.KeyTile(block, kvHead) + slot;                // column `slot` of [Dh, B]
                    valueTiles[c] = p.ValueTile(block, kvHead) + (long)slot * dh;  // rows slot.. of [B, Dh]
                    lows[c] = Math.Max(first - chunkStart, 0);
                    highs[c] = Math.Min(position - chunkStart, w - 1);
                    // Four partial sums break the FMA dependency chain over d.
                    TVec acc0 = TOps.Zero, acc1 = TOps.Zero, acc2 = TOps.Zero, acc3 = TOps.Zero;
                    int d = 0;
                    for (; d + 4 <= dh; d += 4)
                    {
                        float* k = keys + (long)d * blockSize;
                        acc0 = TOps.FusedMultiplyAdd(TOps.Create(q[d]), TOps.Load(k), acc0);
                        acc1 = TOps.FusedMultiplyAdd(TOps.Create(q[d + 1]), TOps.Load(k + blockSize), acc1);
                        acc2 = TOps.FusedMultiplyAdd(TOps.Create(q[d + 2]), TOps.Load(k + 2 * blockSize), acc2);
                        acc3 = TOps.FusedMultiplyAdd(TOps.Create(q[d + 3]), TOps.Load(k + 3 * blockSize), acc3);
                    }
                    for (; d < dh; d++) acc0 = TOps.FusedMultiplyAdd(TOps.Create(q[d]), TOps.Load(keys + (long)d * blockSize), acc0);
                    var valid = TOps.And(TOps.GreaterThanOrEqual(lane, TOps.Create(lows[c])), TOps.LessThanOrEqual(lane, TOps.Create(highs[c])));
                    validLanes[c] = valid;
                    scores[c] = TOps.ConditionalSelect(valid, TOps.Multiply(TOps.Add(TOps.Add(acc0, acc1), TOps.Add(acc2, acc3)), scale), negativeInfinity);
                    stepMax = TOps.Max(stepMax, scores[c]);
                }
                float newMax = MathF.Max(runningMax, TOps.MaxAcross(stepMax));
                var shift = TOps.Create(newMax);
                var sum = TOps.Zero;
                for (int c = 0; c < chunks; c++)
                {
                    var shifted = TOps.ConditionalSelect(validLanes[c], TOps.Subtract(scores[c], shift), TOps.Zero);
                    var keep = TOps.And(validLanes[c], TOps.GreaterThan(shifted, floor));
                    var e = TOps.ConditionalSelect(keep, VectorMath.Exp<TVec, TOps>(TOps.Max(shifted, floor)), TOps.Zero);
                    sum = TOps.Add(sum, e);
                    TOps.Store(e, weights + c * w);
                }
                float correction = MathF.Exp(runningMax - newMax);   // 0 on the first step
                runningSum = runningSum * correction + TOps.Sum(sum);
                runningMax = newMax;

                if (wideRows)
                {
                    // Output vectors are loaded once per step, accumulated in registers over its keys, stored once.
                    var scaleBy = TOps.Create(correction);
                    int v = 0;
                    for (; v + 4 <= vectorsPerRow; v += 4)
                    {
                        TVec o0 = TOps.Multiply(accumulator[v], scaleBy), o1 = TOps.Multiply(accumulator[v + 1], scaleBy);
                        TVec o2 = TOps.Multiply(accumulator[v + 2], scaleBy), o3 = TOps.Multiply(accumulator[v + 3], scaleBy);
                        for (int c = 0; c < chunks; c++)
                        {
                            float* weight = weights + c * w;
                            for (int t = lows[c]; t <= highs[c]; t++)
                            {
                                var wt = TOps.Create(weight[t]);
                                float* valueRow = valueTiles[c] + (long)t * dh + v * w;
                                o0 = TOps.FusedMultiplyAdd(wt, TOps.Load(valueRow), o0);
                                o1 = TOps.FusedMultiplyAdd(wt, TOps.Load(valueRow + w), o1);
                                o2 = TOps.FusedMultiplyAdd(wt, TOps.Load(valueRow + 2 * w), o2);
                                o3 = TOps.FusedMultiplyAdd(wt, TOps.Load(valueRow + 3 * w), o3);
                            }
                        }
                        accumulator[v] = o0; accumulator[v + 1] = o1; accumulator[v + 2] = o2; accumulator[v + 3] = o3;
                    }
                    for (; v < vectorsPerRow; v++)
                    {
                        var o0 = TOps.Multiply(accumulator[v], scaleBy);
                        for (int c = 0; c < chunks; c++)
                            for (int t = lows[c]; t <= highs[c]; t++)
                                o0 = TOps.FusedMultiplyAdd(TOps.Create(weights[c * w + t]), TOps.Load(valueTiles[c] + (long)t * dh + v * w), o0);
                        accumulator[v] = o0;
                    }
                }
                else
                {
                    if (correction != 1f) Elementwise.Scale(o, correction, dh);
                    for (int c = 0; c < chunks; c++)
                        for (int t = lows[c]; t <= highs[c]; t++) Elementwise.Axpy(o, weights[c * w + t], valueTiles[c] + (long)t * dh, dh);
                }
            }
            float inverse = 1f / runningSum;
            if (wideRows) for (int v = 0; v < vectorsPerRow; v++) TOps.Store(TOps.Multiply(accumulator[v], TOps.Create(inverse)), o + v * w);
            else Elementwise.Scale(o, inverse, dh);
        }
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

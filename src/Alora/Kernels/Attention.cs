using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = rows (tokens of any sequences), S = distinct sequences, Hq/Hkv = query/key-value heads,
// G = Hq/Hkv (queries per KV head), Dh = head size, B = tokens per KV block, T = positions attended.

/// <summary>
/// Causal grouped-query attention of a flat batch of rows over a paged KV cache. Row i belongs to
/// sequence rowSequence[i] at position rowPosition[i] and attends to that sequence's positions
/// [lo, p] (lo = 0, or p - window + 1 with a sliding window). Its keys/values must already be in the cache.
/// </summary>
public static unsafe class Attention
{
    public readonly struct Problem
    {
        public float* Output { get; init; }          // [M, Hq*Dh]
        public float* Query { get; init; }           // [M, Hq*Dh], RoPE applied
        public float* KeyBlocks { get; init; }       // [blocks, B, Hkv*Dh]
        public float* ValueBlocks { get; init; }     // [blocks, B, Hkv*Dh]
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

        internal float* KeyAt(float* blocks, int sequence, int position, int kvHead)
        {
            int block = BlockTables[(long)sequence * MaxBlocksPerSequence + position / BlockSize];
            return blocks + (((long)block * BlockSize + position % BlockSize) * KeyValueHeadCount + kvHead) * HeadDim;
        }
    }

    public static void Forward(in Problem problem)
    {
        var task = new RowTask { P = problem };
        WorkerPool.Shared.For(problem.RowCount * problem.KeyValueHeadCount, ref task);
    }

    private struct RowTask : IParallelTask
    {
        public Problem P;
        public void Execute(int index) => RowOnline(P, index / P.KeyValueHeadCount, index % P.KeyValueHeadCount);
    }

    /// <summary>
    /// One (row, KV head): the G query heads sharing the KV head walk the keys block by block with an online
    /// softmax (running max and sum), so no buffer of length T is needed and each key/value is loaded once.
    /// </summary>
    private static void RowOnline(in Problem p, int row, int kvHead)
    {
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim;
        int sequence = p.RowSequence[row], position = p.RowPosition[row];
        int first = p.FirstPosition(position);
        float* query = p.Query + ((long)row * p.HeadCount + kvHead * group) * dh;    // [G, Dh]
        float* output = p.Output + ((long)row * p.HeadCount + kvHead * group) * dh;  // [G, Dh]

        float* runningMax = stackalloc float[group];
        float* runningSum = stackalloc float[group];
        float* scores = stackalloc float[group * p.BlockSize];  // [G, B]
        for (int g = 0; g < group; g++)
        {
            runningMax[g] = float.NegativeInfinity;
            runningSum[g] = 0;
            new Span<float>(output + g * dh, dh).Clear();
        }

        for (int start = first; start <= position;)
        {
            // One span of keys within a block: [start, end).
            int end = Math.Min(position + 1, (start / p.BlockSize + 1) * p.BlockSize);
            int n = end - start;
            float* keys = p.KeyAt(p.KeyBlocks, sequence, start, kvHead);     // n keys, stride Hkv*Dh
            float* values = p.KeyAt(p.ValueBlocks, sequence, start, kvHead);
            long stride = (long)p.KeyValueHeadCount * dh;
            for (int g = 0; g < group; g++)
            {
                float* q = query + g * dh;
                float* s = scores + g * p.BlockSize;
                float blockMax = float.NegativeInfinity;
                for (int t = 0; t < n; t++)
                {
                    s[t] = Elementwise.Dot(q, keys + t * stride, dh) * p.Scale;
                    blockMax = MathF.Max(blockMax, s[t]);
                }
                float newMax = MathF.Max(runningMax[g], blockMax);
                float correction = MathF.Exp(runningMax[g] - newMax);   // 0 on the first span
                float* o = output + g * dh;
                if (correction != 1f) Elementwise.Scale(o, correction, dh);
                float sum = runningSum[g] * correction;
                for (int t = 0; t < n; t++)
                {
                    float w = MathF.Exp(s[t] - newMax);
                    sum += w;
                    Elementwise.Axpy(o, w, values + t * stride, dh);
                }
                runningMax[g] = newMax;
                runningSum[g] = sum;
            }
            start = end;
        }
        for (int g = 0; g < group; g++) Elementwise.Scale(output + g * dh, 1f / runningSum[g], dh);
    }

    /// <summary>Scalar reference twin: scores for all T positions, a two-pass softmax, then the weighted sum.</summary>
    public static void ForwardReference(in Problem p)
    {
        int group = p.HeadCount / p.KeyValueHeadCount, dh = p.HeadDim;
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
                    float* k = p.KeyAt(p.KeyBlocks, sequence, first + t, kvHead);
                    float dot = 0;
                    for (int d = 0; d < dh; d++) dot += q[d] * k[d];
                    scores[t] = dot * p.Scale;
                }
                fixed (float* s = scores) Elementwise.SoftmaxReference(s, count);
                float* o = p.Output + ((long)row * p.HeadCount + h) * dh;
                for (int d = 0; d < dh; d++)
                {
                    float acc = 0;
                    for (int t = 0; t < count; t++) acc += scores[t] * p.KeyAt(p.ValueBlocks, sequence, first + t, kvHead)[d];
                    o[d] = acc;
                }
            }
        }
    }

    /// <summary>Which vector width the dot/axpy helpers use here (for reports).</summary>
    public static string VectorPath => Vector512.IsHardwareAccelerated ? "Vector512" : Vector256.IsHardwareAccelerated ? "Vector256" : "scalar";
}

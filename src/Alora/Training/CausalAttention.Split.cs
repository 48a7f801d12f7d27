using System.Buffers;
using Alora.Kernels;

namespace Alora.Training;

// Legend: as in CausalAttention.cs.

public static unsafe partial class CausalAttention
{
    /// <summary>
    /// Runs a query task over (sequence, query head, query range), with enough ranges that every thread has work.
    /// Ranges are balanced for the causal triangle: query t costs t + 1 keys, so bounds go as T·√(i/n).
    /// </summary>
    private static void RunOverQueries(ref QueryTask task, in Shape shape)
    {
        int heads = shape.SequenceCount * shape.HeadCount;
        if (heads == 0 || shape.Length == 0) return;
        task.Chunks = Math.Clamp(2 * WorkerPool.Shared.ThreadCount / heads, 1, shape.Length);
        WorkerPool.Shared.For(heads * task.Chunks, ref task);
    }

    private static int QueryBound(int i, int n, int length) => i >= n ? length : (int)(length * Math.Sqrt((double)i / n));

    /// <summary>Keys are needed by every later query, so key ranges are balanced from the end: T − T·√(1 − i/n).</summary>
    private static int KeyBound(int i, int n, int length) => i >= n ? length : length - (int)(length * Math.Sqrt(1 - (double)i / n));

    /// <summary>Forward (output and log-sum-exp), or the dq pass of the split backward, for one query range of one head.</summary>
    private struct QueryTask : IParallelTask
    {
        public bool Backward;
        public float* Output, LogSumExp, Q, K, V, Dq, DOutput;
        public Shape S;
        public int Chunks;

        public readonly void Execute(int index)
        {
            int chunk = index % Chunks, head = index / Chunks;
            int b = head / S.HeadCount, h = head % S.HeadCount;
            int t0 = QueryBound(chunk, Chunks, S.Length), t1 = QueryBound(chunk + 1, Chunks, S.Length);
            if (Backward)
            {
                QueryGradients(b, h, t0, t1);
                return;
            }
            float[] rented = ArrayPool<float>.Shared.Rent(Math.Max(1, S.Length));
            try
            {
                fixed (float* scores = rented) Outputs(b, h, t0, t1, scores);   // scores: [T] one query's scores
            }
            finally
            {
                ArrayPool<float>.Shared.Return(rented);
            }
        }

        private readonly void Outputs(int b, int h, int t0, int t1, float* scores)
        {
            int first = b * S.Length, dh = S.HeadDim, kvHead = h / (S.HeadCount / S.KeyValueHeadCount);
            for (int t = t0; t < t1; t++)
            {
                long row = first + t;
                float* qi = Q + row * S.QueryStride + h * dh;
                float* oi = Output + row * S.QueryStride + h * dh;
                int lo = S.FirstKey(t);
                float max = float.NegativeInfinity;
                for (int j = lo; j <= t; j++)
                {
                    float score = S.Scale * Elementwise.Dot(qi, K + (first + j) * (long)S.KeyStride + kvHead * dh, dh);
                    scores[j] = score;
                    max = MathF.Max(max, score);
                }
                float sum = 0;
                for (int j = lo; j <= t; j++) { scores[j] = MathF.Exp(scores[j] - max); sum += scores[j]; }
                float inv = 1f / sum;
                new Span<float>(oi, dh).Clear();
                for (int j = lo; j <= t; j++) Elementwise.Axpy(oi, scores[j] * inv, V + (first + j) * (long)S.KeyStride + kvHead * dh, dh);
                LogSumExp[row * S.HeadCount + h] = max + MathF.Log(sum);
            }
        }

        /// <summary>dq_t = Σ_j p_tj·(dO_t·v_j − dO_t·O_t)·scale·k_j, probabilities recomputed from the lse.</summary>
        private readonly void QueryGradients(int b, int h, int t0, int t1)
        {
            int first = b * S.Length, dh = S.HeadDim, kvHead = h / (S.HeadCount / S.KeyValueHeadCount);
            for (int t = t0; t < t1; t++)
            {
                var query = new BackwardRow(S, Q, DOutput, Output, LogSumExp, first + t, h);
                float* dqi = Dq + query.Offset;
                new Span<float>(dqi, dh).Clear();
                for (int j = S.FirstKey(t); j <= t; j++)
                {
                    long kvOffset = (first + j) * (long)S.KeyStride + kvHead * dh;
                    var (_, ds) = query.Pair(S, K + kvOffset, V + kvOffset);
                    Elementwise.Axpy(dqi, ds, K + kvOffset, dh);
                }
            }
        }
    }

    /// <summary>The dk/dv pass of the split backward: one key range of one (sequence, KV head), over every query that sees it.</summary>
    private struct KeyTask : IParallelTask
    {
        public float* Output, LogSumExp, Q, K, V, Dk, Dv, DOutput;
        public Shape S;
        public int Chunks;

        public readonly void Execute(int index)
        {
            int chunk = index % Chunks, group = index / Chunks;
            int b = group / S.KeyValueHeadCount, kvHead = group % S.KeyValueHeadCount;
            int j0 = KeyBound(chunk, Chunks, S.Length), j1 = KeyBound(chunk + 1, Chunks, S.Length);
            if (j0 >= j1) return;
            int first = b * S.Length, dh = S.HeadDim, perGroup = S.HeadCount / S.KeyValueHeadCount;
            for (int j = j0; j < j1; j++)
            {
                long kvOffset = (first + j) * (long)S.KeyStride + kvHead * dh;
                new Span<float>(Dk + kvOffset, dh).Clear();
                new Span<float>(Dv + kvOffset, dh).Clear();
            }
            // The last query that sees key j1 − 1 under a sliding window is j1 − 1 + window − 1.
            int lastQuery = S.SlidingWindow > 0 ? Math.Min(S.Length - 1, j1 - 1 + S.SlidingWindow - 1) : S.Length - 1;
            for (int h = kvHead * perGroup; h < (kvHead + 1) * perGroup; h++)
                for (int t = j0; t <= lastQuery; t++)
                {
                    int lo = Math.Max(j0, S.FirstKey(t)), hi = Math.Min(j1 - 1, t);
                    if (lo > hi) continue;
                    var query = new BackwardRow(S, Q, DOutput, Output, LogSumExp, first + t, h);
                    for (int j = lo; j <= hi; j++)
                    {
                        long kvOffset = (first + j) * (long)S.KeyStride + kvHead * dh;
                        var (p, ds) = query.Pair(S, K + kvOffset, V + kvOffset);
                        Elementwise.Axpy(Dv + kvOffset, p, query.DOutput, dh);
                        Elementwise.Axpy(Dk + kvOffset, ds, query.Q, dh);
                    }
                }
        }
    }
}

using Alora.Kernels;

namespace Alora.Training;

// Legend: B = sequences (batch rows), T = padded sequence length, Hq = query heads, Hkv = key/value heads,
// G = Hq / Hkv (query heads per KV group), Dh = head size. Token row of (b, t) is b·T + t.
// q, out: [B·T, Hq·Dh]; k, v: [B·T, Hkv·Dh]; logSumExp: [B·T, Hq].

/// <summary>
/// Causal grouped-query attention over whole contiguous sequences, as training runs them (no KV cache).
/// The forward keeps only the output and each (row, head)'s log-sum-exp of the scores; the backward
/// recomputes the probabilities from them, so no [T, T] matrix is stored per head.
/// The forward splits work over (sequence, query head, query range). The backward runs fused over
/// (sequence, KV head), one task owning the dk/dv of its group, when that gives every thread work; otherwise
/// (few sequences and KV heads for the cores) in two passes that recompute the probabilities: dq over
/// (sequence, query head, query range), then dk and dv over (sequence, KV head, key range). Tasks never share writes.
/// </summary>
public static unsafe partial class CausalAttention
{
    public struct Shape
    {
        public int SequenceCount;     // B
        public int Length;            // T
        public int HeadCount;         // Hq
        public int KeyValueHeadCount; // Hkv
        public int HeadDim;           // Dh
        public float Scale;           // multiplies q·k
        public int SlidingWindow;     // 0: none; else query t sees keys (t − window, t]

        internal readonly int QueryStride => HeadCount * HeadDim;
        internal readonly int KeyStride => KeyValueHeadCount * HeadDim;
        internal readonly int FirstKey(int t) => SlidingWindow > 0 ? Math.Max(0, t - SlidingWindow + 1) : 0;

        internal readonly void Validate()
        {
            if (SequenceCount < 0 || Length < 0 || HeadDim <= 0 || KeyValueHeadCount <= 0 || HeadCount % KeyValueHeadCount != 0)
                throw new ArgumentException($"attention shape B {SequenceCount}, T {Length}, Hq {HeadCount}, Hkv {KeyValueHeadCount}, Dh {HeadDim}: Hq must be a positive multiple of Hkv and the sizes non-negative");
        }
    }

    /// <summary>out = softmax(scale·q·kᵀ + causal mask)·v per head; logSumExp[B·T, Hq] kept for the backward.</summary>
    public static void Forward(float* output, float* logSumExp, float* q, float* k, float* v, in Shape shape)
    {
        shape.Validate();
        var task = new QueryTask { Output = output, LogSumExp = logSumExp, Q = q, K = k, V = v, S = shape };
        RunOverQueries(ref task, shape);
    }

    /// <summary>
    /// dq, dk, dv (written, not accumulated) from dout; dk and dv sum over the G query heads of each KV group.
    /// </summary>
    public static void Backward(float* dq, float* dk, float* dv, float* doutput, float* output, float* logSumExp,
        float* q, float* k, float* v, in Shape shape)
        => Backward(dq, dk, dv, doutput, output, logSumExp, q, k, v, shape, split: null);

    /// <summary>As the public Backward, with the fused (false) or two-pass (true) schedule forced for tests; null picks.</summary>
    internal static void Backward(float* dq, float* dk, float* dv, float* doutput, float* output, float* logSumExp,
        float* q, float* k, float* v, in Shape shape, bool? split)
    {
        shape.Validate();
        int groups = shape.SequenceCount * shape.KeyValueHeadCount;
        if (groups == 0 || shape.Length == 0) return;
        if (!(split ?? (groups < 2 * WorkerPool.Shared.ThreadCount && shape.Length >= 2)))
        {
            var task = new Task
            {
                Dq = dq, Dk = dk, Dv = dv, DOutput = doutput,
                Output = output, LogSumExp = logSumExp, Q = q, K = k, V = v, S = shape,
            };
            WorkerPool.Shared.For(groups, ref task);
            return;
        }
        var queries = new QueryTask
        {
            Backward = true, Dq = dq, DOutput = doutput, Output = output, LogSumExp = logSumExp, Q = q, K = k, V = v, S = shape,
        };
        RunOverQueries(ref queries, shape);
        var keys = new KeyTask { Dk = dk, Dv = dv, DOutput = doutput, Output = output, LogSumExp = logSumExp, Q = q, K = k, V = v, S = shape };
        keys.Chunks = Math.Clamp(2 * WorkerPool.Shared.ThreadCount / groups, 1, shape.Length);
        WorkerPool.Shared.For(groups * keys.Chunks, ref keys);
    }

    /// <summary>The fused backward: one task per (sequence, KV head) computes dq of its query heads and its dk, dv.</summary>
    private struct Task : IParallelTask
    {
        public float* Output, LogSumExp, Q, K, V;
        public float* Dq, Dk, Dv, DOutput;
        public Shape S;

        public readonly void Execute(int index) => RunBackward(index / S.KeyValueHeadCount, index % S.KeyValueHeadCount);

        private readonly void RunBackward(int b, int kvHead)
        {
            int t0 = b * S.Length, dh = S.HeadDim, group = S.HeadCount / S.KeyValueHeadCount;
            for (int t = 0; t < S.Length; t++)
            {
                long kvOffset = (t0 + t) * (long)S.KeyStride + kvHead * dh;
                new Span<float>(Dk + kvOffset, dh).Clear();
                new Span<float>(Dv + kvOffset, dh).Clear();
            }
            for (int h = kvHead * group; h < (kvHead + 1) * group; h++)
                for (int t = 0; t < S.Length; t++)
                {
                    var query = new BackwardRow(S, Q, DOutput, Output, LogSumExp, t0 + t, h);
                    float* dqi = Dq + query.Offset;
                    new Span<float>(dqi, dh).Clear();
                    for (int j = S.FirstKey(t); j <= t; j++)
                    {
                        long kvOffset = (t0 + j) * (long)S.KeyStride + kvHead * dh;
                        var (p, ds) = query.Pair(S, K + kvOffset, V + kvOffset);
                        Elementwise.Axpy(Dv + kvOffset, p, query.DOutput, dh);
                        Elementwise.Axpy(dqi, ds, K + kvOffset, dh);
                        Elementwise.Axpy(Dk + kvOffset, ds, query.Q, dh);
                    }
                }
        }
    }

    /// <summary>
    /// One query row (sequence row, head) of the backward: its q and dO, its log-sum-exp from the forward, and
    /// D = Σ_j p_j·(dO·v_j) = dO·O, the softmax backward's subtracted term. Every backward schedule (fused, dq pass,
    /// dk/dv pass) takes each (query, key) pair's probability and score gradient from <see cref="Pair"/>.
    /// </summary>
    private readonly struct BackwardRow
    {
        public readonly long Offset;          // of the row's head in [B·T, Hq·Dh]
        public readonly float* Q, DOutput;
        private readonly float _logSumExp, _rowDot;

        public BackwardRow(in Shape s, float* q, float* doutput, float* output, float* logSumExp, long row, int head)
        {
            Offset = row * s.QueryStride + head * s.HeadDim;
            Q = q + Offset;
            DOutput = doutput + Offset;
            _logSumExp = logSumExp[row * s.HeadCount + head];
            _rowDot = Elementwise.Dot(DOutput, output + Offset, s.HeadDim);
        }

        /// <summary>p = softmax probability of key j, recomputed from the log-sum-exp; ds = d(score)·scale, the gradient of q·k.</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public (float P, float Ds) Pair(in Shape s, float* kj, float* vj)
        {
            float p = MathF.Exp(s.Scale * Elementwise.Dot(Q, kj, s.HeadDim) - _logSumExp);
            float ds = p * (Elementwise.Dot(DOutput, vj, s.HeadDim) - _rowDot) * s.Scale;
            return (p, ds);
        }
    }

    /// <summary>
    /// Reference twin of forward and backward together, in double, materializing each head's probability
    /// matrix. Pass null for the gradient pointers to run only the forward.
    /// </summary>
    public static void Reference(float* output, float* q, float* k, float* v, float* dq, float* dk, float* dv, float* doutput, in Shape shape)
    {
        int T = shape.Length, dh = shape.HeadDim, group = shape.HeadCount / shape.KeyValueHeadCount;
        int qs = shape.QueryStride, ks = shape.KeyStride;
        bool backward = dq != null;
        if (backward)
        {
            new Span<float>(dk, shape.SequenceCount * T * ks).Clear();
            new Span<float>(dv, shape.SequenceCount * T * ks).Clear();
        }
        var p = new double[T];
        for (int b = 0; b < shape.SequenceCount; b++)
            for (int h = 0; h < shape.HeadCount; h++)
            {
                int kvHead = h / group;
                for (int t = 0; t < T; t++)
                {
                    float* qi = q + (long)(b * T + t) * qs + h * dh;
                    int first = shape.FirstKey(t);
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = first; j <= t; j++)
                    {
                        float* kj = k + (long)(b * T + j) * ks + kvHead * dh;
                        double s = 0;
                        for (int d = 0; d < dh; d++) s += (double)qi[d] * kj[d];
                        p[j] = s * shape.Scale;
                        max = Math.Max(max, p[j]);
                    }
                    for (int j = first; j <= t; j++) { p[j] = Math.Exp(p[j] - max); sum += p[j]; }
                    for (int j = first; j <= t; j++) p[j] /= sum;
                    float* oi = output + (long)(b * T + t) * qs + h * dh;
                    for (int d = 0; d < dh; d++)
                    {
                        double o = 0;
                        for (int j = first; j <= t; j++) o += p[j] * v[(long)(b * T + j) * ks + kvHead * dh + d];
                        oi[d] = (float)o;
                    }
                    if (!backward) continue;
                    float* doi = doutput + (long)(b * T + t) * qs + h * dh;
                    var dp = new double[T];
                    double rowDot = 0;
                    for (int j = first; j <= t; j++)
                    {
                        for (int d = 0; d < dh; d++) dp[j] += (double)doi[d] * v[(long)(b * T + j) * ks + kvHead * dh + d];
                        rowDot += p[j] * dp[j];
                    }
                    float* dqi = dq + (long)(b * T + t) * qs + h * dh;
                    for (int d = 0; d < dh; d++) dqi[d] = 0;
                    for (int j = first; j <= t; j++)
                    {
                        double ds = p[j] * (dp[j] - rowDot) * shape.Scale;
                        long kv = (long)(b * T + j) * ks + kvHead * dh;
                        for (int d = 0; d < dh; d++)
                        {
                            dqi[d] += (float)(ds * k[kv + d]);
                            dk[kv + d] += (float)(ds * qi[d]);
                            dv[kv + d] += (float)(p[j] * doi[d]);
                        }
                    }
                }
            }
    }
}

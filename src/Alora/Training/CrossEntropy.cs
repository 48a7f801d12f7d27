using System.Runtime.Intrinsics;
using Alora.Kernels;

namespace Alora.Training;

// Legend: M = rows that predict a label, V = vocabulary.

/// <summary>
/// Cross-entropy of logits against integer targets. Forward keeps only each row's log-sum-exp; backward turns
/// the logits into dlogits in place, so the [M, V] probabilities never exist next to the logits.
/// A negative target (Hugging Face's -100) marks a row that contributes no loss and gets zero gradient.
/// </summary>
public static unsafe class CrossEntropy
{
    /// <summary>
    /// losses[M] = logsumexp(logits[i]) − logits[i, target[i]] (0 for ignored rows); logSumExp[M] is kept for
    /// the backward pass. Returns the sum of the losses, in double. Rows run in parallel.
    /// </summary>
    public static double Forward(float* losses, float* logSumExp, float* logits, int* targets, int m, int v)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfLessThan(v, 1);
        for (int i = 0; i < m; i++)
            if (targets[i] >= v) throw new ArgumentOutOfRangeException(nameof(targets), $"target {targets[i]} at row {i} is outside the vocabulary [0, {v})");
        var task = new RowTask { Losses = losses, LogSumExp = logSumExp, Logits = logits, Targets = targets, V = v };
        WorkerPool.Shared.For(m, ref task);
        double total = 0;
        for (int i = 0; i < m; i++) total += losses[i];
        return total;
    }

    /// <summary>
    /// dlogits[M,V] = (softmax(logits) − onehot(target))·<paramref name="scale"/> (zero rows for ignored targets).
    /// <paramref name="dlogits"/> may be <paramref name="logits"/>: the fused, in-place use. Rows run in parallel.
    /// </summary>
    public static void Backward(float* dlogits, float* logits, float* logSumExp, int* targets, int m, int v, float scale)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        var task = new RowTask { Backward = true, DLogits = dlogits, LogSumExp = logSumExp, Logits = logits, Targets = targets, V = v, Scale = scale };
        WorkerPool.Shared.For(m, ref task);
    }

    private struct RowTask : IParallelTask
    {
        public bool Backward;
        public float* Losses, LogSumExp, Logits, DLogits;
        public int* Targets;
        public int V;
        public float Scale;

        public readonly void Execute(int i)
        {
            float* row = Logits + (long)i * V;
            int target = Targets[i];
            if (Backward)
            {
                float* drow = DLogits + (long)i * V;
                if (target < 0)
                {
                    new Span<float>(drow, V).Clear();
                    return;
                }
                ScaledExp(drow, row, LogSumExp[i], Scale, V);
                drow[target] -= Scale;
                return;
            }
            float max = Max(row, V);
            float lse = max + MathF.Log(SumExp(row, max, V));
            LogSumExp[i] = lse;
            Losses[i] = target < 0 ? 0 : lse - row[target];
        }
    }

    private static float Max(float* x, int n) => Elementwise.Max(x, n);

    /// <summary>Σ exp(x − max), with two vector partial sums (large vocabularies would lose bits in one).</summary>
    private static float SumExp(float* x, float max, int n)
    {
        int i = 0;
        float sum = Vector512.IsHardwareAccelerated ? SumExp<Vector512<float>, Vector512Ops>(x, max, n, ref i)
            : Vector256.IsHardwareAccelerated ? SumExp<Vector256<float>, Vector256Ops>(x, max, n, ref i) : 0;
        for (; i < n; i++) sum += MathF.Exp(x[i] - max);
        return sum;
    }

    private static float SumExp<TVec, TOps>(float* x, float max, int n, ref int next) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int i = next;   // a local, so the loop counter stays in a register (a ref would go through memory)
        int w = TOps.Count;
        var shift = TOps.Create(max);
        TVec s0 = TOps.Zero, s1 = TOps.Zero;
        for (; i + 2 * w <= n; i += 2 * w)
        {
            s0 = TOps.Add(s0, VectorMath.Exp<TVec, TOps>(TOps.Subtract(TOps.Load(x + i), shift)));
            s1 = TOps.Add(s1, VectorMath.Exp<TVec, TOps>(TOps.Subtract(TOps.Load(x + i + w), shift)));
        }
        for (; i + w <= n; i += w) s0 = TOps.Add(s0, VectorMath.Exp<TVec, TOps>(TOps.Subtract(TOps.Load(x + i), shift)));
        next = i;
        return TOps.Sum(TOps.Add(s0, s1));
    }

    /// <summary>y[n] = exp(x − shift)·scale; y may be x.</summary>
    private static void ScaledExp(float* y, float* x, float shift, float scale, int n)
    {
        int i = Vector512.IsHardwareAccelerated ? ScaledExp<Vector512<float>, Vector512Ops>(y, x, shift, scale, n)
            : Vector256.IsHardwareAccelerated ? ScaledExp<Vector256<float>, Vector256Ops>(y, x, shift, scale, n) : 0;
        for (; i < n; i++) y[i] = MathF.Exp(x[i] - shift) * scale;
    }

    private static int ScaledExp<TVec, TOps>(float* y, float* x, float shift, float scale, int n) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int w = TOps.Count, i = 0;
        TVec s = TOps.Create(shift), c = TOps.Create(scale);
        for (; i + w <= n; i += w) TOps.Store(TOps.Multiply(VectorMath.Exp<TVec, TOps>(TOps.Subtract(TOps.Load(x + i), s)), c), y + i);
        return i;
    }

    /// <summary>Reference twin: per-row loss and gradient in double from the definition.</summary>
    public static double ForwardBackwardReference(float* dlogits, float* losses, float* logits, int* targets, int m, int v, float scale)
    {
        double total = 0;
        for (int i = 0; i < m; i++)
        {
            float* row = logits + (long)i * v;
            int target = targets[i];
            double max = double.NegativeInfinity;
            for (int j = 0; j < v; j++) max = Math.Max(max, row[j]);
            double sum = 0;
            for (int j = 0; j < v; j++) sum += Math.Exp(row[j] - max);
            double lse = max + Math.Log(sum);
            losses[i] = target < 0 ? 0 : (float)(lse - row[target]);
            total += losses[i];
            for (int j = 0; j < v; j++)
            {
                double g = target < 0 ? 0 : (Math.Exp(row[j] - lse) - (j == target ? 1 : 0)) * scale;
                dlogits[(long)i * v + j] = (float)g;
            }
        }
        return total;
    }
}

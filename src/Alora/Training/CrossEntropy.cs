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

    private static float Max(float* x, int n)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var m = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16) m = Vector512.Max(m, Vector512.Load(x + i));
            for (int lane = 0; lane < 16; lane++) max = MathF.Max(max, m[lane]);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var m = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= n; i += 8) m = Vector256.Max(m, Vector256.Load(x + i));
            for (int lane = 0; lane < 8; lane++) max = MathF.Max(max, m[lane]);
        }
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        return max;
    }

    /// <summary>Σ exp(x − max), with four vector partial sums (large vocabularies would lose bits in one).</summary>
    private static float SumExp(float* x, float max, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var shift = Vector512.Create(max);
            Vector512<float> s0 = default, s1 = default;
            for (; i + 32 <= n; i += 32)
            {
                s0 += VectorMath.Exp(Vector512.Load(x + i) - shift);
                s1 += VectorMath.Exp(Vector512.Load(x + i + 16) - shift);
            }
            for (; i + 16 <= n; i += 16) s0 += VectorMath.Exp(Vector512.Load(x + i) - shift);
            sum = Vector512.Sum(s0 + s1);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var shift = Vector256.Create(max);
            Vector256<float> s0 = default, s1 = default;
            for (; i + 16 <= n; i += 16)
            {
                s0 += VectorMath.Exp(Vector256.Load(x + i) - shift);
                s1 += VectorMath.Exp(Vector256.Load(x + i + 8) - shift);
            }
            for (; i + 8 <= n; i += 8) s0 += VectorMath.Exp(Vector256.Load(x + i) - shift);
            sum = Vector256.Sum(s0 + s1);
        }
        for (; i < n; i++) sum += MathF.Exp(x[i] - max);
        return sum;
    }

    /// <summary>y[n] = exp(x − shift)·scale; y may be x.</summary>
    private static void ScaledExp(float* y, float* x, float shift, float scale, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> s = Vector512.Create(shift), c = Vector512.Create(scale);
            for (; i + 16 <= n; i += 16) (VectorMath.Exp(Vector512.Load(x + i) - s) * c).Store(y + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> s = Vector256.Create(shift), c = Vector256.Create(scale);
            for (; i + 8 <= n; i += 8) (VectorMath.Exp(Vector256.Load(x + i) - s) * c).Store(y + i);
        }
        for (; i < n; i++) y[i] = MathF.Exp(x[i] - shift) * scale;
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

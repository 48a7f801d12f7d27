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
    /// the backward pass. Returns the sum of the losses, in double.
    /// </summary>
    public static double Forward(float* losses, float* logSumExp, float* logits, int* targets, int m, int v)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfLessThan(v, 1);
        double total = 0;
        for (int i = 0; i < m; i++)
        {
            float* row = logits + (long)i * v;
            int target = targets[i];
            if (target >= v) throw new ArgumentOutOfRangeException(nameof(targets), $"target {target} at row {i} is outside the vocabulary [0, {v})");
            float max = float.NegativeInfinity;
            for (int j = 0; j < v; j++) max = MathF.Max(max, row[j]);
            double sum = 0;
            for (int j = 0; j < v; j++) sum += Math.Exp(row[j] - max);
            float lse = max + (float)Math.Log(sum);
            logSumExp[i] = lse;
            losses[i] = target < 0 ? 0 : lse - row[target];
            total += losses[i];
        }
        return total;
    }

    /// <summary>
    /// dlogits[M,V] = (softmax(logits) − onehot(target))·<paramref name="scale"/> (zero rows for ignored targets).
    /// <paramref name="dlogits"/> may be <paramref name="logits"/>: the fused, in-place use.
    /// </summary>
    public static void Backward(float* dlogits, float* logits, float* logSumExp, int* targets, int m, int v, float scale)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        for (int i = 0; i < m; i++)
        {
            float* row = logits + (long)i * v, drow = dlogits + (long)i * v;
            int target = targets[i];
            if (target < 0)
            {
                new Span<float>(drow, v).Clear();
                continue;
            }
            float lse = logSumExp[i];
            for (int j = 0; j < v; j++) drow[j] = MathF.Exp(row[j] - lse) * scale;
            drow[target] -= scale;
        }
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

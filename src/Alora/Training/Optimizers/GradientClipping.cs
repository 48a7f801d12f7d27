namespace Alora.Training.Optimizers;

/// <summary>Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2).</summary>
public static unsafe class GradientClipping
{
    /// <summary>
    /// total = ‖(‖g₁‖, ‖g₂‖, …)‖₂ over every parameter; every gradient is multiplied by
    /// min(1, maxNorm / (total + 1e-6)). Returns the norm before clipping. A non-finite norm is an error, as
    /// torch does with error_if_nonfinite=True (its default goes on and writes NaN into every gradient).
    /// </summary>
    public static double ClipByGlobalNorm(IReadOnlyList<OptimizerParameter> parameters, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "the maximum norm must be positive");
        double sumOfSquares = 0;
        foreach (var p in parameters)
        {
            double norm = Norm(p);
            sumOfSquares += norm * norm;
        }
        double total = Math.Sqrt(sumOfSquares);
        if (!double.IsFinite(total))
        {
            string culprit = parameters.FirstOrDefault(p => !double.IsFinite(Norm(p))).Name ?? "?";
            throw new ArithmeticException($"the total gradient norm is {total} (first non-finite gradient: '{culprit}'); the step's gradients are unusable");
        }
        float coefficient = (float)Math.Min(1.0, maxNorm / (total + 1e-6));
        foreach (var p in parameters)
        {
            float* g = p.Gradients;
            for (int i = 0; i < p.Length; i++) g[i] *= coefficient;
        }
        return total;
    }

    private static double Norm(OptimizerParameter p)
    {
        double sum = 0;
        float* g = p.Gradients;
        for (int i = 0; i < p.Length; i++) sum += (double)g[i] * g[i];
        return Math.Sqrt(sum);
    }
}

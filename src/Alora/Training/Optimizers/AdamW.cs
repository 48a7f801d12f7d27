namespace Alora.Training.Optimizers;

/// <summary>Settings of <see cref="AdamW"/>; the defaults are torch.optim.AdamW's.</summary>
public sealed record AdamWOptions
{
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;
    public double WeightDecay { get; init; } = 0.01;
}

/// <summary>
/// Adam with decoupled weight decay, step for step as torch.optim.AdamW (amsgrad off, maximize off):
/// p ← p·(1 − lr·λ); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
/// p ← p − (lr / (1 − β1ᵗ))·m / (√v / √(1 − β2ᵗ) + ε). The moments are f32, like torch's for f32 parameters.
/// </summary>
public sealed unsafe class AdamW
{
    private readonly OptimizerParameter[] _parameters;
    private readonly float[][] _firstMoments;    // per parameter [length]
    private readonly float[][] _secondMoments;   // per parameter [length]

    public AdamW(IReadOnlyList<OptimizerParameter> parameters, AdamWOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Options = options ?? new AdamWOptions();
        if (!(Options.Beta1 is >= 0 and < 1) || !(Options.Beta2 is >= 0 and < 1))
            throw new ArgumentOutOfRangeException(nameof(options), $"betas must lie in [0, 1), got ({Options.Beta1}, {Options.Beta2})");
        if (!(Options.Epsilon >= 0) || !(Options.WeightDecay >= 0))
            throw new ArgumentOutOfRangeException(nameof(options), $"epsilon ({Options.Epsilon}) and weight decay ({Options.WeightDecay}) must be non-negative");
        _parameters = [.. parameters];
        _firstMoments = _parameters.Select(p => new float[p.Length]).ToArray();
        _secondMoments = _parameters.Select(p => new float[p.Length]).ToArray();
    }

    public AdamWOptions Options { get; }
    /// <summary>Steps taken (torch's state['step']).</summary>
    public int StepCount { get; private set; }

    /// <summary>One update of every parameter from its current gradient, at base rate <paramref name="learningRate"/>.</summary>
    public void Step(double learningRate)
    {
        if (!(learningRate >= 0)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "the learning rate must be non-negative");
        StepCount++;
        double beta1 = Options.Beta1, beta2 = Options.Beta2;
        double biasCorrection1 = 1 - Math.Pow(beta1, StepCount);
        double biasCorrection2Sqrt = Math.Sqrt(1 - Math.Pow(beta2, StepCount));
        for (int index = 0; index < _parameters.Length; index++)
        {
            var p = _parameters[index];
            double lr = learningRate * p.LearningRateMultiplier;
            float decay = (float)(1 - lr * Options.WeightDecay);
            float stepSize = (float)(lr / biasCorrection1);
            float b2 = (float)beta2, oneMinusB1 = (float)(1 - beta1), oneMinusB2 = (float)(1 - beta2);
            float correction = (float)biasCorrection2Sqrt, eps = (float)Options.Epsilon;
            float[] m = _firstMoments[index], v = _secondMoments[index];
            float* values = p.Values, gradients = p.Gradients;
            for (int i = 0; i < p.Length; i++)
            {
                float g = gradients[i];
                values[i] *= decay;
                m[i] += (g - m[i]) * oneMinusB1;          // torch: exp_avg.lerp_(grad, 1 − β1)
                v[i] = v[i] * b2 + oneMinusB2 * g * g;
                float denominator = MathF.Sqrt(v[i]) / correction + eps;
                values[i] -= stepSize * (m[i] / denominator);   // torch: addcdiv_(exp_avg, denom, value = −step_size)
            }
        }
    }
}

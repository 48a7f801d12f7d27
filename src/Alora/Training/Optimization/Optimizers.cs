namespace Alora.Training.Optimization;

/// <summary>Hugging Face Trainer's defaults where a flag is not given.</summary>
public sealed record OptimizerOptions
{
    public string Kind { get; init; } = "adamw";          // adamw | sgd
    public double LearningRate { get; init; } = 5e-5;
    public double WeightDecay { get; init; } = 0.0;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>LoRA+: B factors learn at LearningRate × this ratio (1 = plain LoRA).</summary>
    public double LoraPlusRatio { get; init; } = 1.0;

    public void Validate()
    {
        if (Kind is not ("adamw" or "sgd")) throw new ArgumentException($"optimizer '{Kind}' is not supported (expected adamw or sgd)");
        if (LearningRate < 0 || double.IsNaN(LearningRate)) throw new ArgumentException($"learning rate must be ≥ 0, got {LearningRate}");
        if (WeightDecay < 0) throw new ArgumentException($"weight decay must be ≥ 0, got {WeightDecay}");
        if (Beta1 is < 0 or >= 1 || Beta2 is < 0 or >= 1) throw new ArgumentException($"betas must be in [0, 1), got ({Beta1}, {Beta2})");
        if (LoraPlusRatio <= 0) throw new ArgumentException($"the LoRA+ ratio must be > 0, got {LoraPlusRatio}");
    }
}

/// <summary>An optimizer over a fixed list of tensors; its state can be saved and restored for resuming.</summary>
public abstract class Optimizer(IReadOnlyList<TrainableTensor> parameters, OptimizerOptions options)
{
    public IReadOnlyList<TrainableTensor> Parameters { get; } = parameters;
    public OptimizerOptions Options { get; } = options;
    /// <summary>Optimizer steps taken so far.</summary>
    public long Step { get; protected set; }

    /// <summary>One update with learning rate <paramref name="learningRate"/> (the schedule's value for this step).</summary>
    public abstract void Apply(double learningRate);

    /// <summary>Named state arrays (moments) for a checkpoint.</summary>
    public abstract IEnumerable<(string Name, float[] Values)> State();

    public abstract void LoadState(IReadOnlyDictionary<string, float[]> state, long step);

    protected double RateFor(TrainableTensor tensor, double learningRate) => tensor.IsLoraB ? learningRate * Options.LoraPlusRatio : learningRate;

    public static Optimizer Create(IReadOnlyList<TrainableTensor> parameters, OptimizerOptions options)
    {
        options.Validate();
        return options.Kind == "sgd" ? new Sgd(parameters, options) : new AdamW(parameters, options);
    }
}

/// <summary>
/// AdamW as torch.optim.AdamW computes it: decoupled weight decay p ← p·(1 − lr·wd), then
/// m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε).
/// </summary>
public sealed class AdamW : Optimizer
{
    private readonly float[][] _firstMoments;
    private readonly float[][] _secondMoments;

    public AdamW(IReadOnlyList<TrainableTensor> parameters, OptimizerOptions options) : base(parameters, options)
    {
        _firstMoments = parameters.Select(p => new float[p.Count]).ToArray();
        _secondMoments = parameters.Select(p => new float[p.Count]).ToArray();
    }

    public override void Apply(double learningRate)
    {
        Step++;
        double beta1 = Options.Beta1, beta2 = Options.Beta2;
        double biasCorrection1 = 1 - Math.Pow(beta1, Step);
        double biasCorrection2Sqrt = Math.Sqrt(1 - Math.Pow(beta2, Step));
        for (int t = 0; t < Parameters.Count; t++)
        {
            var tensor = Parameters[t];
            double lr = RateFor(tensor, learningRate);
            float decay = (float)(1 - lr * Options.WeightDecay);
            float stepSize = (float)(lr / biasCorrection1);
            float b1 = (float)beta1, b2 = (float)beta2, eps = (float)Options.Epsilon, c2 = (float)biasCorrection2Sqrt;
            var p = tensor.ValueSpan;
            var g = tensor.GradientSpan;
            var m = _firstMoments[t];
            var v = _secondMoments[t];
            // In torch's (single-tensor) operation order: mul then add for m, addcmul for v, addcdiv for p.
            float oneMinusB1 = (float)(1 - beta1), oneMinusB2 = (float)(1 - beta2);   // in double first, as Python does
            for (int i = 0; i < p.Length; i++)
            {
                p[i] *= decay;
                m[i] = m[i] * b1 + oneMinusB1 * g[i];
                v[i] = v[i] * b2 + oneMinusB2 * g[i] * g[i];
                float denominator = MathF.Sqrt(v[i]) / c2 + eps;
                p[i] += -stepSize * (m[i] / denominator);
            }
        }
    }

    public override IEnumerable<(string Name, float[] Values)> State()
    {
        for (int t = 0; t < Parameters.Count; t++)
        {
            yield return (Parameters[t].Name + ".exp_avg", _firstMoments[t]);
            yield return (Parameters[t].Name + ".exp_avg_sq", _secondMoments[t]);
        }
    }

    public override void LoadState(IReadOnlyDictionary<string, float[]> state, long step)
    {
        for (int t = 0; t < Parameters.Count; t++)
        {
            Copy(state, Parameters[t].Name + ".exp_avg", _firstMoments[t]);
            Copy(state, Parameters[t].Name + ".exp_avg_sq", _secondMoments[t]);
        }
        Step = step;
    }

    internal static void Copy(IReadOnlyDictionary<string, float[]> state, string name, float[] destination)
    {
        if (!state.TryGetValue(name, out var values))
            throw new InvalidDataException($"optimizer state '{name}' is missing from the checkpoint");
        if (values.Length != destination.Length)
            throw new InvalidDataException($"optimizer state '{name}' has {values.Length} values, the parameter {destination.Length}");
        values.CopyTo(destination, 0);
    }
}

/// <summary>Plain SGD as torch.optim.SGD without momentum: p ← p − lr·(g + wd·p).</summary>
public sealed class Sgd(IReadOnlyList<TrainableTensor> parameters, OptimizerOptions options) : Optimizer(parameters, options)
{
    public override void Apply(double learningRate)
    {
        Step++;
        foreach (var tensor in Parameters)
        {
            float lr = (float)RateFor(tensor, learningRate), wd = (float)Options.WeightDecay;
            var p = tensor.ValueSpan;
            var g = tensor.GradientSpan;
            for (int i = 0; i < p.Length; i++) p[i] -= lr * (g[i] + wd * p[i]);
        }
    }

    public override IEnumerable<(string Name, float[] Values)> State() => [];

    public override void LoadState(IReadOnlyDictionary<string, float[]> state, long step) => Step = step;
}

public static class GradientClipping
{
    /// <summary>
    /// torch.nn.utils.clip_grad_norm_: the global L2 norm over all gradients; when it exceeds
    /// <paramref name="maxNorm"/>, every gradient is scaled by maxNorm / (norm + 1e-6). Returns the norm before
    /// clipping. maxNorm ≤ 0 turns clipping off (the norm is still returned).
    /// </summary>
    public static double ClipByGlobalNorm(IReadOnlyList<TrainableTensor> parameters, double maxNorm)
    {
        double sumSquares = 0;
        foreach (var tensor in parameters)
            foreach (float g in tensor.GradientSpan) sumSquares += (double)g * g;
        double norm = Math.Sqrt(sumSquares);
        if (maxNorm > 0)
        {
            double coefficient = maxNorm / (norm + 1e-6);
            if (coefficient < 1)
                foreach (var tensor in parameters)
                {
                    var g = tensor.GradientSpan;
                    for (int i = 0; i < g.Length; i++) g[i] = (float)(g[i] * coefficient);
                }
        }
        return norm;
    }
}

/// <summary>Learning-rate schedules as transformers' get_*_schedule_with_warmup define them (a multiplier per optimizer step).</summary>
public static class LearningRateSchedule
{
    /// <summary>The learning rate of optimizer step <paramref name="step"/> (0-based), out of <paramref name="totalSteps"/>.</summary>
    public static double At(string kind, double baseRate, long step, long totalSteps, long warmupSteps) => baseRate * Multiplier(kind, step, totalSteps, warmupSteps);

    public static double Multiplier(string kind, long step, long totalSteps, long warmupSteps)
    {
        if (step < warmupSteps) return (double)step / Math.Max(1, warmupSteps);
        double progress = (double)(step - warmupSteps) / Math.Max(1, totalSteps - warmupSteps);
        return kind switch
        {
            "linear" => Math.Max(0.0, (double)(totalSteps - step) / Math.Max(1, totalSteps - warmupSteps)),
            "cosine" => Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * progress))),
            "constant" => 1.0,
            _ => throw new ArgumentException($"learning-rate schedule '{kind}' is not supported (expected linear, cosine or constant)"),
        };
    }
}

namespace Alora.Training.Optimizers;

/// <summary>Settings of <see cref="Sgd"/>; the defaults are torch.optim.SGD's (plain SGD).</summary>
public sealed record SgdOptions
{
    public double Momentum { get; init; }
    public double Dampening { get; init; }
    public double WeightDecay { get; init; }
    public bool Nesterov { get; init; }
}

/// <summary>
/// Stochastic gradient descent as torch.optim.SGD: g ← g + λ·p (L2 weight decay, coupled); with momentum μ,
/// b ← g on the first step, else b ← μ·b + (1 − dampening)·g; g ← g + μ·b (Nesterov) or b; p ← p − lr·g.
/// </summary>
public sealed unsafe class Sgd
{
    private readonly OptimizerParameter[] _parameters;
    private readonly float[][]? _momentumBuffers;   // per parameter [length], null without momentum

    public Sgd(IReadOnlyList<OptimizerParameter> parameters, SgdOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Options = options ?? new SgdOptions();
        if (!(Options.Momentum >= 0) || !(Options.WeightDecay >= 0))
            throw new ArgumentOutOfRangeException(nameof(options), $"momentum ({Options.Momentum}) and weight decay ({Options.WeightDecay}) must be non-negative");
        if (Options.Nesterov && (Options.Momentum <= 0 || Options.Dampening != 0))
            throw new ArgumentException($"Nesterov momentum requires a momentum > 0 and zero dampening, got momentum {Options.Momentum}, dampening {Options.Dampening}", nameof(options));
        _parameters = [.. parameters];
        if (Options.Momentum != 0) _momentumBuffers = _parameters.Select(p => new float[p.Length]).ToArray();
    }

    public SgdOptions Options { get; }
    public int StepCount { get; private set; }

    public void Step(double learningRate)
    {
        if (!(learningRate >= 0)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "the learning rate must be non-negative");
        bool first = StepCount == 0;
        StepCount++;
        float momentum = (float)Options.Momentum, keep = (float)(1 - Options.Dampening), decay = (float)Options.WeightDecay;
        for (int index = 0; index < _parameters.Length; index++)
        {
            var p = _parameters[index];
            float lr = (float)(learningRate * p.LearningRateMultiplier);
            float* values = p.Values, gradients = p.Gradients;
            float[]? buffer = _momentumBuffers?[index];
            for (int i = 0; i < p.Length; i++)
            {
                float g = gradients[i];
                if (decay != 0) g += decay * values[i];
                if (buffer is not null)
                {
                    buffer[i] = first ? g : momentum * buffer[i] + keep * g;
                    g = Options.Nesterov ? g + momentum * buffer[i] : buffer[i];
                }
                values[i] -= lr * g;
            }
        }
    }
}

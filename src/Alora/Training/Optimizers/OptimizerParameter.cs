namespace Alora.Training.Optimizers;

/// <summary>
/// One trainable tensor as an optimizer sees it: values and gradient of the same length (memory owned elsewhere),
/// and a multiplier on the learning rate (LoRA+ gives B a larger rate than A).
/// </summary>
public readonly unsafe struct OptimizerParameter(string name, float* values, float* gradients, int length, float learningRateMultiplier = 1f)
{
    public string Name { get; } = name;
    public float* Values { get; } = values;         // [length]
    public float* Gradients { get; } = gradients;   // [length]
    public int Length { get; } = length;
    public float LearningRateMultiplier { get; } = learningRateMultiplier;

    public Span<float> ValueSpan => new(Values, Length);
    public Span<float> GradientSpan => new(Gradients, Length);

    /// <summary>
    /// Every A and B factor of an adapter; B's learning rate is <paramref name="loraPlusRatio"/> times A's
    /// (LoRA+, Hayou et al. 2024; 1 gives plain LoRA training).
    /// </summary>
    public static OptimizerParameter[] FromAdapter(TrainableLora adapter, float loraPlusRatio = 1f)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (!(loraPlusRatio > 0)) throw new ArgumentOutOfRangeException(nameof(loraPlusRatio), loraPlusRatio, "the LoRA+ ratio must be positive");
        var parameters = new List<OptimizerParameter>();
        foreach (var m in adapter.Modules)
        {
            parameters.Add(new OptimizerParameter(m.PeftPrefix + ".lora_A.weight", m.A, m.DA, m.Rank * m.InFeatures));
            parameters.Add(new OptimizerParameter(m.PeftPrefix + ".lora_B.weight", m.B, m.DB, m.OutFeatures * m.Rank, loraPlusRatio));
        }
        return [.. parameters];
    }
}

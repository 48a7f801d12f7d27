namespace Alora.Training.Optimization;

/// <summary>
/// One trainable tensor as the optimizer sees it: its values and gradient (both f32, Count elements, owned by
/// someone else — an adapter's slab and a gradient buffer), its name for checkpoints, and whether it is a LoRA B
/// factor (LoRA+ gives B its own learning rate).
/// </summary>
public sealed unsafe class TrainableTensor(string name, float* values, float* gradient, long count, bool isLoraB)
{
    public string Name { get; } = name;
    public float* Values { get; } = values;
    public float* Gradient { get; } = gradient;
    public long Count { get; } = count;
    public bool IsLoraB { get; } = isLoraB;

    public Span<float> ValueSpan => new(Values, checked((int)Count));
    public Span<float> GradientSpan => new(Gradient, checked((int)Count));
}

namespace Alora.Training;

/// <summary>
/// One training sequence: its token ids, its labels (Hugging Face convention: labels[t] is the token that
/// logits[t − 1] should predict; −100 marks a position without loss) and the first adapted position
/// (0 for a LoRA, the aLoRA activation start, or null when the adapter never applies to this row).
/// </summary>
public sealed record TrainingRow(int[] InputIds, int[] Labels, int? AdapterStart)
{
    /// <summary>Hugging Face's ignore_index.</summary>
    public const int IgnoreLabel = -100;

    /// <summary>A row whose adapter start follows <paramref name="adapter"/>'s rule on the row's full ids.</summary>
    public static TrainingRow For(int[] inputIds, int[] labels, TrainableLora adapter)
        => new(inputIds, labels, adapter.ActivationStart(inputIds));
}

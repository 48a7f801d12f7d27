using Alora.Training.Data;

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

    /// <summary>
    /// The rows of a padded data batch, cut to their lengths. The data loader marks a plain LoRA's examples with a
    /// null activation start; here a LoRA row starts at 0, an aLoRA row at its activation start.
    /// </summary>
    public static List<TrainingRow> FromBatch(TrainingBatch batch, TrainableLora adapter)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(adapter);
        var rows = new List<TrainingRow>(batch.Rows);
        for (int r = 0; r < batch.Rows; r++)
        {
            int length = batch.Lengths[r];
            int? start = adapter.IsActivated ? batch.ActivationStarts[r] : 0;
            rows.Add(new TrainingRow(batch.InputIds[r][..length], batch.Labels[r][..length], start));
        }
        return rows;
    }
}

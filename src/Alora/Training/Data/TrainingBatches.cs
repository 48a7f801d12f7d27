namespace Alora.Training.Data;

/// <summary>A padded batch: [rows, T] ids and labels (padding: id 0 / label −100), each row's length and activation start.</summary>
public sealed record TrainingBatch(int[][] InputIds, int[][] Labels, int[] Lengths, int?[] ActivationStarts)
{
    public int Rows => InputIds.Length;
    public int Width => InputIds.Length == 0 ? 0 : InputIds[0].Length;
    public int LossTokenCount => Labels.Sum(row => row.Skip(1).Count(l => l != TrainingExample.IgnoreIndex));
}

/// <summary>Shuffling, the validation split and right-padded batches.</summary>
public static class TrainingBatches
{
    /// <summary>
    /// Splits off a validation set: <paramref name="validationSize"/> ≥ 1 is a count, 0 &lt; size &lt; 1 a
    /// fraction, 0 none. The split is a seeded shuffle, so it is the same on every run and resume.
    /// </summary>
    public static (IReadOnlyList<TrainingExample> Train, IReadOnlyList<TrainingExample> Validation) Split(
        IReadOnlyList<TrainingExample> examples, double validationSize, int seed)
    {
        if (validationSize < 0) throw new ArgumentOutOfRangeException(nameof(validationSize), validationSize, "the validation set size must be ≥ 0");
        int count = validationSize >= 1 ? (int)validationSize : (int)Math.Round(examples.Count * validationSize);
        if (count >= examples.Count)
            throw new TrainingDataException($"the validation set ({count}) would take all {examples.Count} examples; lower ValSetSize");
        var order = Shuffled(examples.Count, seed);
        var validation = order.Take(count).Order().Select(i => examples[i]).ToList();
        var train = order.Skip(count).Order().Select(i => examples[i]).ToList();
        return (train, validation);
    }

    /// <summary>The batches of one epoch: a seeded shuffle (seed + epoch), then consecutive groups, right-padded.</summary>
    public static IEnumerable<TrainingBatch> Epoch(IReadOnlyList<TrainingExample> examples, int batchSize, int seed, int epoch, bool shuffle = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var order = shuffle ? Shuffled(examples.Count, unchecked(seed * 1000003 + epoch)) : Enumerable.Range(0, examples.Count).ToArray();
        for (int start = 0; start < order.Length; start += batchSize)
            yield return Pad(order.Skip(start).Take(batchSize).Select(i => examples[i]).ToList());
    }

    public static TrainingBatch Pad(IReadOnlyList<TrainingExample> rows)
    {
        int width = rows.Max(r => r.InputIds.Length);
        var ids = new int[rows.Count][];
        var labels = new int[rows.Count][];
        for (int r = 0; r < rows.Count; r++)
        {
            ids[r] = new int[width];
            labels[r] = Enumerable.Repeat(TrainingExample.IgnoreIndex, width).ToArray();
            rows[r].InputIds.CopyTo(ids[r], 0);
            rows[r].Labels.CopyTo(labels[r], 0);
        }
        return new TrainingBatch(ids, labels, rows.Select(r => r.InputIds.Length).ToArray(), rows.Select(r => r.ActivationStart).ToArray());
    }

    private static int[] Shuffled(int count, int seed)
    {
        var order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        return order;
    }
}

using Alora.Inference;
using Alora.Models;
using Alora.Training;

namespace Alora.Tests.Training;

/// <summary>
/// The same causal-LM loss computed through the inference forward (<see cref="DecoderModel"/> with a paged cache and
/// per-row adapter starts), with the cross-entropy in double: an independent path for the trainer's forward and
/// for finite differences of the whole model.
/// </summary>
internal static class InferenceLoss
{
    public static double Compute(ModelWeights weights, ForwardAdapter? adapter, IReadOnlyList<TrainingRow> rows)
    {
        using var model = new DecoderModel(weights, maxBatchTokens: 64);
        using var cache = model.CreateCache(rows.Sum(r => r.InputIds.Length) + 64);
        double total = 0;
        int count = 0;
        foreach (var row in rows)
        {
            using var sequence = new KvSequence(cache);
            int n = row.InputIds.Length, v = model.VocabSize;
            var logits = new float[n * v];
            var chunk = new SequenceChunk(sequence, row.InputIds, LogitRows.All, row.AdapterStart is null ? null : adapter, row.AdapterStart ?? 0);
            model.Forward([chunk], logits);
            for (int t = 0; t + 1 < n; t++)
            {
                int label = row.Labels[t + 1];
                if (label == TrainingRow.IgnoreLabel) continue;
                double max = double.NegativeInfinity, sum = 0;
                for (int j = 0; j < v; j++) max = Math.Max(max, logits[t * v + j]);
                for (int j = 0; j < v; j++) sum += Math.Exp(logits[t * v + j] - max);
                total += max + Math.Log(sum) - logits[t * v + label];
                count++;
            }
        }
        return total / count;
    }
}

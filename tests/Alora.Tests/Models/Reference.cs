using Alora.Inference;
using Alora.Models;

namespace Alora.Tests.Models;

/// <summary>Small helpers shared by model tests.</summary>
internal static class Reference
{
    public static float[] RunAllLogits(DecoderModel model, int[] ids)
    {
        using var cache = model.CreateCache(ids.Length + 16);
        using var sequence = new Alora.Inference.KvSequence(cache);
        var logits = new float[ids.Length * model.VocabSize];
        model.Forward([new SequenceChunk(sequence, ids, LogitRows.All)], logits);
        return logits;
    }

    public static int[] GreedyIds(DecoderModel model, int[] prompt, int count)
    {
        using var cache = model.CreateCache(prompt.Length + count + 16);
        using var sequence = new Alora.Inference.KvSequence(cache);
        var logits = new float[model.VocabSize];
        var output = new List<int>();
        int[] next = prompt;
        for (int i = 0; i < count; i++)
        {
            model.Forward([new SequenceChunk(sequence, next, LogitRows.Last)], logits);
            int best = ArgMax(logits);
            output.Add(best);
            next = [best];
        }
        return output.ToArray();
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float max = 0;
        for (int i = 0; i < a.Length; i++) max = MathF.Max(max, MathF.Abs(a[i] - b[i]));
        return max;
    }
}

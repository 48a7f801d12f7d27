using Alora.Models;
using Alora.Tensors;
using Alora.Training;

namespace Alora.Tests.Training;

/// <summary>A random 2-layer model (hidden 16, 4 query heads over 2 KV heads) and a random adapter on every projection.</summary>
internal static class TinyModel
{
    public static ModelConfig Config() => new()
    {
        Architecture = ModelArchitecture.Llama,
        HiddenSize = 16,
        IntermediateSize = 24,
        LayerCount = 2,
        HeadCount = 4,
        KeyValueHeadCount = 2,
        HeadDim = 4,
        VocabSize = 40,
        RmsNormEps = 1e-5f,
        TieWordEmbeddings = false,
    };

    /// <summary>
    /// The tiny config with one family's extras: "granite" (embedding, residual, attention and logits multipliers),
    /// "qwen2" (q/k/v biases, tied embeddings), "mistral" (a sliding window of 4), or "llama" (none).
    /// </summary>
    public static ModelConfig Config(string family) => family switch
    {
        "llama" => Config(),
        "granite" => Config() with
        {
            Architecture = ModelArchitecture.Granite, EmbeddingMultiplier = 3f, ResidualMultiplier = 0.6f, AttentionMultiplier = 0.2f, LogitsScaling = 2.5f,
        },
        "qwen2" => Config() with { Architecture = ModelArchitecture.Qwen2, QkvBias = true, TieWordEmbeddings = true },
        "mistral" => Config() with { Architecture = ModelArchitecture.Mistral, SlidingWindow = 4 },
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, "llama, granite, qwen2 or mistral"),
    };

    public static ModelWeights Weights(int seed = 3, string family = "llama") => ModelWeights.CreateRandom(Config(family), DType.F32, seed);

    public static TrainableLora Adapter(ModelConfig config, int[]? invocation = null, int seed = 5)
    {
        var lora = new TrainableLora(config, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 3, 2f, invocation);
        var random = new Random(seed);
        foreach (var m in lora.Modules)
        {
            foreach (ref float a in m.AValues) a = (float)(random.NextDouble() * 2 - 1) * 0.3f;
            foreach (ref float b in m.BValues) b = (float)(random.NextDouble() * 2 - 1) * 0.3f;
        }
        return lora;
    }

    public static int[] Tokens(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => random.Next(4, 40)).ToArray();
    }

    /// <summary>The aLoRA invocation the tiny batches carry.</summary>
    public static readonly int[] Invocation = [7, 8, 9];

    /// <summary>
    /// Two rows of different lengths with the invocation inside (first: s = 6, length 14; second: s = 3, length 9);
    /// labels from the given positions on.
    /// </summary>
    public static List<TrainingRow> TwoRowBatch(TrainableLora lora, int firstLabelsFrom, int secondLabelsFrom)
    {
        int[] first = [.. Tokens(6, 1), .. Invocation, .. Tokens(5, 2)];
        int[] second = [.. Tokens(3, 3), .. Invocation, .. Tokens(3, 4)];
        return [TrainingRow.For(first, LabelsFrom(first, firstLabelsFrom), lora), TrainingRow.For(second, LabelsFrom(second, secondLabelsFrom), lora)];
    }

    public static int[] LabelsFrom(int[] ids, int from) => ids.Select((id, t) => t >= from ? id : TrainingRow.IgnoreLabel).ToArray();

    /// <summary>A copy of every module's (dA, dB).</summary>
    public static (float[] A, float[] B)[] Gradients(TrainableLora lora)
        => lora.Modules.Select(m => (m.AGradient.ToArray(), m.BGradient.ToArray())).ToArray();
}

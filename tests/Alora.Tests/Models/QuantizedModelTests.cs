using Alora.Formats;
using Alora.Inference;
using Alora.Models;
using Alora.Tensors;
using Alora.Tests.Quantization;
using Xunit.Abstractions;

namespace Alora.Tests.Models;

/// <summary>
/// Quantized GGUF models (tensors quantized by llama.cpp's own quantizer) run on their blocks and give exactly
/// the logits of their dequantized f32 twin: the kernels compute on the same values with the same arithmetic.
/// Every row is batch invariant, as for f32 weights. Against the unquantized f32 model, the quantization error
/// is what it is: printed, and bounded loosely (top-1 agreement, max error over the logits' spread).
/// </summary>
public sealed class QuantizedModelTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267];

    public static TheoryData<DType, float> StoriesTypes() => new()
    {
        // bound on max |logit error| / (max − min of the f32 logits), from the types' bits per weight
        { DType.Q8_0, 0.03f }, { DType.Q5_0, 0.15f }, { DType.Q5_1, 0.15f }, { DType.Q4_0, 0.3f }, { DType.Q4_1, 0.3f },
    };

    [Theory]
    [MemberData(nameof(StoriesTypes))]
    public void Stories260K_Quantized_GivesItsDequantizedTwinsLogits(DType dtype, float spreadBound)
    {
        using var temp = new TempFolder();
        string source = Path.Combine(SharedPaths.Stories260K, "stories260K.gguf");
        // Every matrix whose rows are whole blocks (all but ffn_down, whose rows of 172 stay f32, as llama.cpp falls back).
        var types = QuantizedGguf.Write(source, temp.File("q.gguf"), temp.File("twin.gguf"), _ => dtype);
        Assert.Equal(dtype, types["blk.0.attn_q.weight"]);
        Assert.Equal(DType.F32, types["blk.0.ffn_down.weight"]);
        CompareWithTwin(temp.File("q.gguf"), temp.File("twin.gguf"), source, dtype, spreadBound, expectQuantized: "blk.0.attn_q.weight");
    }

    public static TheoryData<string> WideMixes() => ["Q4_K_M", "Q5_K", "Q6_K", "Q8_K"];

    [Theory]
    [MemberData(nameof(WideMixes))]
    public void RandomWideModel_KQuants_GiveTheirDequantizedTwinsLogits(string mix)
    {
        using var temp = new TempFolder();
        const int layers = 2;
        string f32 = temp.File("f32.gguf");
        QuantizedGguf.WriteRandomLlama(f32, hidden: 256, ffn: 512, layers, seed: 5);
        Func<GgufTensorInfo, DType?> typeFor = mix == "Q4_K_M"
            ? info => info.Name == "token_embd.weight" ? DType.Q4_K : QuantizedGguf.Q4KMedium(info, layers)
            : info => Enum.Parse<DType>(mix);
        var types = QuantizedGguf.Write(f32, temp.File("q.gguf"), temp.File("twin.gguf"), typeFor);
        if (mix == "Q4_K_M")
        {
            Assert.Equal(DType.Q6_K, types["output.weight"]);
            Assert.Equal(DType.Q6_K, types["blk.1.ffn_down.weight"]);   // the last layer: use_more_bits
            Assert.Equal(DType.Q4_K, types["blk.0.ffn_down.weight"]);
            Assert.Equal(DType.Q4_K, types["blk.0.ffn_up.weight"]);
        }
        CompareWithTwin(temp.File("q.gguf"), temp.File("twin.gguf"), f32, Enum.TryParse<DType>(mix, out var t) ? t : DType.Q4_K, spreadBound: 0.5f, expectQuantized: "blk.1.ffn_gate.weight");
    }

    private void CompareWithTwin(string quantizedPath, string twinPath, string originalPath, DType dtype, float spreadBound, string expectQuantized)
    {
        using var quantized = ModelWeights.Load(quantizedPath);
        using var twin = ModelWeights.Load(twinPath);
        using var original = ModelWeights.Load(originalPath);
        int layer = int.Parse(expectQuantized.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture);
        var projection = expectQuantized.Contains("attn_q") ? Projection.Q : Projection.Gate;
        Assert.Equal(dtype, quantized.Layers[layer].Weight(projection).DType);   // stays quantized in memory

        using var qModel = new DecoderModel(quantized, maxBatchTokens: 64);
        using var twinModel = new DecoderModel(twin, maxBatchTokens: 64);
        using var originalModel = new DecoderModel(original, maxBatchTokens: 64);
        float[] q = Reference.RunAllLogits(qModel, Prompt);
        float[] exact = Reference.RunAllLogits(twinModel, Prompt);
        QuantTestData.AssertBitsEqual(exact, q, $"{dtype}: logits of the quantized model vs its dequantized f32 twin");

        // Batch invariance: the rows decoded one token at a time (the quantized GEMV) equal the prefill's rows.
        using (var cache = qModel.CreateCache(64))
        using (var sequence = new KvSequence(cache))
        {
            var row = new float[qModel.VocabSize];
            for (int position = 0; position < Prompt.Length; position++)
            {
                qModel.Forward([new SequenceChunk(sequence, Prompt.AsMemory(position, 1), LogitRows.Last)], row);
                QuantTestData.AssertBitsEqual(q.AsSpan(position * qModel.VocabSize, qModel.VocabSize), row, $"{dtype}: position {position} decoded alone vs in the prefill");
            }
        }

        // Against the unquantized model: the quantization error itself.
        float[] f = Reference.RunAllLogits(originalModel, Prompt);
        int vocab = qModel.VocabSize, agree = 0;
        float worst = 0;
        for (int position = 0; position < Prompt.Length; position++)
        {
            var fr = f.AsSpan(position * vocab, vocab);
            var qr = q.AsSpan(position * vocab, vocab);
            if (Reference.ArgMax(fr) == Reference.ArgMax(qr)) agree++;
            float spread = 0, lo = float.MaxValue, hi = float.MinValue;
            foreach (float v in fr) { lo = MathF.Min(lo, v); hi = MathF.Max(hi, v); }
            spread = hi - lo;
            worst = MathF.Max(worst, Reference.MaxAbsDiff(fr, qr) / spread);
        }
        output.WriteLine($"{Path.GetFileName(originalPath)} as {dtype}: top-1 agreement {agree}/{Prompt.Length}, max |Δlogit| / spread {worst:F4}");
        Assert.True(worst <= spreadBound, $"{dtype}: max |Δlogit| / spread {worst:F4} > {spreadBound}");
        Assert.True(worst > 0, $"{dtype}: the quantized logits equal the f32 model's exactly: nothing was quantized");
    }
}

using System.Text.Json;
using Alora.Formats;
using Alora.Models;

namespace Alora.Tests.Models;

/// <summary>Golden tests against the independent PyTorch reference and llama2.c (shared/fixtures/stories260K).</summary>
public sealed class Stories260KTests
{
    private static readonly string FixtureFolder = SharedPaths.Path("fixtures", "stories260K");

    public static TheoryData<string> ModelPaths => new()
    {
        SharedPaths.Stories260K,
        System.IO.Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"),
    };

    private static JsonElement Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(FixtureFolder, "tokens.json")));
        return doc.RootElement.GetProperty("cases").Clone();
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    [Theory]
    [MemberData(nameof(ModelPaths))]
    public void LogitsAtEveryPositionMatchTheReference(string modelPath)
    {
        using var weights = ModelWeights.Load(modelPath);
        using var model = new DecoderModel(weights, maxBatchTokens: 64);  // several micro-batches per prompt
        using var golden = SafeTensorsFile.Open(System.IO.Path.Combine(FixtureFolder, "logits.safetensors"));
        var cases = Cases();
        foreach (var name in golden.Tensors.Keys)
        {
            int k = int.Parse(name.Split('_')[1]);
            var c = cases[k];
            var ids = Ints(c.GetProperty("prompt_ids")).Concat(Ints(c.GetProperty("greedy_ids"))[..^1]).ToArray();
            float[] expected = golden.ReadFloats(name);
            float[] actual = Reference.RunAllLogits(model, ids);
            Assert.Equal(expected.Length, actual.Length);
            float maxDiff = Reference.MaxAbsDiff(expected, actual);
            Assert.True(maxDiff <= 1e-4f, $"{modelPath} {name}: max |logit diff| {maxDiff}");
        }
    }

    [Theory]
    [MemberData(nameof(ModelPaths))]
    public void GreedyContinuationsEqualTheReference(string modelPath)
    {
        using var weights = ModelWeights.Load(modelPath);
        using var model = new DecoderModel(weights);
        foreach (var c in Cases().EnumerateArray())
        {
            var prompt = Ints(c.GetProperty("prompt_ids"));
            var expected = Ints(c.GetProperty("greedy_ids"));
            var actual = Reference.GreedyIds(model, prompt, expected.Length);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void HuggingFaceAndGgufGiveTheSameLogits()
    {
        using var hf = ModelWeights.Load(SharedPaths.Stories260K);
        using var gguf = ModelWeights.Load(System.IO.Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"));
        using var a = new DecoderModel(hf);
        using var b = new DecoderModel(gguf);
        int[] ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 13, 473, 467];
        float diff = Reference.MaxAbsDiff(Reference.RunAllLogits(a, ids), Reference.RunAllLogits(b, ids));
        Assert.True(diff <= 1e-5f, $"HF vs GGUF max |diff| {diff}");
    }
}

using System.Text.Json;
using Alora.Formats;
using Alora.Models;
using Alora.Tests.Formats;

namespace Alora.Tests.Models;

/// <summary>
/// Golden tests for every family against the independent PyTorch reference (tools/reference/family_reference.py,
/// written from transformers' modelling semantics): random-weight Llama, Mistral (sliding window shorter than the
/// sequence), Qwen2 (q/k/v biases, tied embeddings) and Granite (the four multipliers) in
/// tests/Alora.Tests/Fixtures/families, read as the Hugging Face folder and as the GGUF file llama.cpp's converter
/// would write for it.
/// </summary>
public sealed class FamilyReferenceTests
{
    public static string FixtureRoot { get; } = System.IO.Path.Combine(SharedPaths.RepositoryRoot, "tests", "Alora.Tests", "Fixtures", "families");

    public static TheoryData<string> Families => new() { "llama", "mistral", "qwen2", "granite" };

    public static TheoryData<string, bool> FamiliesAndFormats
    {
        get
        {
            var data = new TheoryData<string, bool>();
            foreach (var family in new[] { "llama", "mistral", "qwen2", "granite" })
            {
                data.Add(family, false);
                data.Add(family, true);
            }
            return data;
        }
    }

    internal sealed record Case(int[] PromptIds, int[] GreedyIds, JsonElement Json);

    internal static Case[] Cases(string family)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(FixtureRoot, family, "reference.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new Case(Ints(c.GetProperty("prompt_ids")), Ints(c.GetProperty("greedy_ids")), c.Clone()))
            .ToArray();
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>The family's model, from its Hugging Face folder or from a GGUF file written from it.</summary>
    internal static ModelWeights Load(string family, bool gguf, TempFolder temp)
    {
        string folder = System.IO.Path.Combine(FixtureRoot, family);
        if (!gguf) return ModelWeights.Load(folder);
        string path = temp.File(family + ".gguf");
        using (var hf = ModelWeights.Load(folder)) GgufModelWriter.Write(path, hf);
        return ModelWeights.Load(path);
    }

    [Theory]
    [MemberData(nameof(FamiliesAndFormats))]
    public void LogitsAtEveryPositionMatchTheReference(string family, bool gguf)
    {
        using var temp = new TempFolder();
        using var weights = Load(family, gguf, temp);
        using var model = new DecoderModel(weights, maxBatchTokens: 8);   // several micro-batches per sequence
        using var golden = SafeTensorsFile.Open(System.IO.Path.Combine(FixtureRoot, family, "logits.safetensors"));
        var cases = Cases(family);
        for (int k = 0; k < cases.Length; k++)
        {
            int[] ids = [.. cases[k].PromptIds, .. cases[k].GreedyIds[..^1]];
            float[] expected = golden.ReadFloats($"case_{k}");
            float[] actual = Reference.RunAllLogits(model, ids);
            Assert.Equal(expected.Length, actual.Length);
            float maxDiff = Reference.MaxAbsDiff(expected, actual);
            Assert.True(maxDiff <= 1e-4f, $"{family} ({(gguf ? "GGUF" : "HF folder")}) case {k}: max |logit diff| {maxDiff} vs the reference");
        }
    }

    [Theory]
    [MemberData(nameof(FamiliesAndFormats))]
    public void GreedyPathsEqualTheReference(string family, bool gguf)
    {
        using var temp = new TempFolder();
        using var weights = Load(family, gguf, temp);
        using var model = new DecoderModel(weights);
        foreach (var c in Cases(family))
            Assert.Equal(c.GreedyIds, Reference.GreedyIds(model, c.PromptIds, c.GreedyIds.Length));
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void TheGgufFileGivesTheLogitsOfTheHuggingFaceFolder(string family)
    {
        using var temp = new TempFolder();
        using var hf = Load(family, gguf: false, temp);
        using var gguf = Load(family, gguf: true, temp);
        using var a = new DecoderModel(hf);
        using var b = new DecoderModel(gguf);
        var c = Cases(family)[1];
        int[] ids = [.. c.PromptIds, .. c.GreedyIds];
        float diff = Reference.MaxAbsDiff(Reference.RunAllLogits(a, ids), Reference.RunAllLogits(b, ids));
        Assert.True(diff <= 1e-6f, $"{family}: HF folder vs GGUF max |logit diff| {diff}");
    }

    [Fact]
    public void TheMistralFixtureRunsPastItsWindowAndTheWindowChangesTheLogits()
    {
        var config = ModelConfig.FromFile(System.IO.Path.Combine(FixtureRoot, "mistral", "config.json"));
        Assert.Equal(8, config.SlidingWindow);
        foreach (var c in Cases("mistral"))
        {
            Assert.True(c.PromptIds.Length + c.GreedyIds.Length > 2 * config.SlidingWindow!.Value);
            Assert.True(c.Json.GetProperty("max_abs_diff_without_window").GetDouble() > 0.1);
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void GgufMetadataGivesTheSameConfigAsConfigJson(string family)
    {
        using var temp = new TempFolder();
        var hf = ModelConfig.FromFile(System.IO.Path.Combine(FixtureRoot, family, "config.json"));
        using var weights = Load(family, gguf: true, temp);
        var g = weights.Config;
        Assert.Equal(hf.Architecture, g.Architecture);
        Assert.Equal((hf.QkvBias, hf.OutputBias, hf.MlpBias, hf.TieWordEmbeddings, hf.SlidingWindow),
            (g.QkvBias, g.OutputBias, g.MlpBias, g.TieWordEmbeddings, g.SlidingWindow));
        Assert.Equal((hf.EmbeddingMultiplier, hf.ResidualMultiplier, hf.AttentionScale, hf.LogitsScaling),
            (g.EmbeddingMultiplier, g.ResidualMultiplier, g.AttentionScale, g.LogitsScaling));
        Assert.Equal((hf.RopeTheta, hf.RmsNormEps, hf.HeadDim, hf.KeyValueHeadCount), (g.RopeTheta, g.RmsNormEps, g.HeadDim, g.KeyValueHeadCount));
    }
}

using Alora.Inference;
using Alora.Adapters;
using Alora.Formats;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Tests.Models;

namespace Alora.Tests.Adapters;

public sealed class LoraMergeTests
{
    public static TheoryData<string> BaseModels => new()
    {
        SharedPaths.Stories260K,
        Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"),
    };

    private static float[] Snapshot(WeightMatrix matrix)
    {
        var values = new float[matrix.Rows * matrix.Cols];
        for (int r = 0; r < matrix.Rows; r++)
            for (int c = 0; c < matrix.Cols; c++) values[r * matrix.Cols + c] = matrix[r, c];
        return values;
    }

    [Theory]
    [MemberData(nameof(BaseModels))]
    public void MergeThenUnmergeRestoresTheBaseWeights(string modelPath)
    {
        using var weights = ModelWeights.Load(modelPath);
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, weights.Config);
        var before = adapter.Modules.ToDictionary(m => (m.Layer, m.Module), m => Snapshot(weights.Layers[m.Layer].Projection(m.Module)));

        LoraMerge.Merge(weights, adapter);
        Assert.Equal([adapter], LoraMerge.MergedInto(weights));
        foreach (var m in adapter.Modules)
        {
            // The merged weight is W + s·B·A, checked against an independent f64 computation.
            var merged = weights.Layers[m.Layer].Projection(m.Module);
            Assert.Equal(DType.F32, merged.DType);
            var delta = m.DeltaWeight();
            var w = before[(m.Layer, m.Module)];
            double maxError = 0;
            for (int i = 0; i < w.Length; i++) maxError = Math.Max(maxError, Math.Abs(merged[i / m.InFeatures, i % m.InFeatures] - (w[i] + delta[i])));
            Assert.True(maxError <= 1e-6, $"{m}: merged weight off by {maxError}");
            Assert.True(delta.Max(Math.Abs) > 1e-3, $"{m}: the delta is too small for the test to mean anything");
        }

        LoraMerge.Unmerge(weights, adapter);
        Assert.Empty(LoraMerge.MergedInto(weights));
        foreach (var m in adapter.Modules)
        {
            float maxDiff = AdapterFixtures.MaxAbsDiff(before[(m.Layer, m.Module)], Snapshot(weights.Layers[m.Layer].Projection(m.Module)));
            Assert.True(maxDiff <= 1e-6f, $"{m}: unmerge left a difference of {maxDiff}");
        }
    }

    [Theory]
    [MemberData(nameof(BaseModels))]
    public void MergedLogitsEqualTheUnmergedLoraReference(string modelPath)
    {
        // expected.json's logits come from the independent PyTorch reference computing W·x + s·B·(A·x) unmerged.
        using var weights = ModelWeights.Load(modelPath);
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, weights.Config);
        LoraMerge.Merge(weights, adapter);
        using var model = new DecoderModel(weights, maxBatchTokens: 64);
        foreach (var c in AdapterFixtures.Expected("lora-all").GetProperty("cases").EnumerateArray())
        {
            int[] ids = AdapterFixtures.Ints(c.GetProperty("input_ids"));
            float[] logits = Reference.RunAllLogits(model, ids);
            float[] last4 = logits.AsSpan((ids.Length - 4) * model.VocabSize).ToArray();
            float maxDiff = AdapterFixtures.MaxAbsDiff(AdapterFixtures.Floats2D(c.GetProperty("logits_last4")), last4);
            Assert.True(maxDiff <= 1e-4f, $"{modelPath} case {c.GetProperty("name")}: merged logits differ from the LoRA reference by {maxDiff}");
            Assert.Equal(AdapterFixtures.Ints(c.GetProperty("greedy_ids")), Reference.GreedyIds(model, ids, 30));
        }
    }

    [Fact]
    public void MergedLogitsEqualTheUnmergedForwardAtEveryPosition()
    {
        using var baseWeights = ModelWeights.Load(SharedPaths.Stories260K);
        using var mergedWeights = ModelWeights.Load(SharedPaths.Stories260K);
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, baseWeights.Config);
        using var unmergedModel = new DecoderModel(baseWeights, maxBatchTokens: 64);
        using var mergedModel = new DecoderModel(mergedWeights, maxBatchTokens: 64);
        LoraMerge.Merge(mergedWeights, adapter);   // after the model exists: it reads the layer weights at each forward
        foreach (var c in AdapterFixtures.Expected("lora-all").GetProperty("cases").EnumerateArray())
        {
            int[] ids = AdapterFixtures.Ints(c.GetProperty("input_ids"));
            using var cache = unmergedModel.CreateCache(ids.Length);
            using var sequence = new Alora.Inference.KvSequence(cache);
            var unmerged = new float[ids.Length * unmergedModel.VocabSize];
            unmergedModel.Forward([new SequenceChunk(sequence, ids, LogitRows.All, adapter.AsForwardAdapter(), 0)], unmerged);
            float maxDiff = AdapterFixtures.MaxAbsDiff(unmerged, Reference.RunAllLogits(mergedModel, ids));
            Assert.True(maxDiff <= 1e-4f, $"case {c.GetProperty("name")}: merged vs unmerged logits differ by {maxDiff}");
        }
    }

    [Fact]
    public void LoadedAloraRoutesThroughTheForwardAsTheReference()
    {
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var adapter = LoraAdapter.Load(AdapterFixtures.AloraQkv, weights.Config);
        var forward = adapter.AsForwardAdapter();
        Assert.Same(forward, adapter.AsForwardAdapter());
        using var model = new DecoderModel(weights, maxBatchTokens: 64);
        foreach (var c in AdapterFixtures.Expected("alora-q-k-v").GetProperty("cases").EnumerateArray())
        {
            if (c.GetProperty("first_adapted_position").ValueKind == System.Text.Json.JsonValueKind.Null) continue;
            int[] ids = AdapterFixtures.Ints(c.GetProperty("input_ids"));
            int start = Alora.Inference.AdapterActivation.Resolve(ids, forward, Alora.Inference.MissingInvocationPolicy.Error);
            Assert.Equal(c.GetProperty("first_adapted_position").GetInt32(), start);
            using var cache = model.CreateCache(ids.Length);
            using var sequence = new Alora.Inference.KvSequence(cache);
            var logits = new float[ids.Length * model.VocabSize];
            model.Forward([new SequenceChunk(sequence, ids, LogitRows.All, forward, start)], logits);
            float maxDiff = AdapterFixtures.MaxAbsDiff(AdapterFixtures.Floats2D(c.GetProperty("logits_last4")), logits.AsSpan((ids.Length - 4) * model.VocabSize).ToArray());
            Assert.True(maxDiff <= 1e-4f, $"case {c.GetProperty("name")}: {maxDiff}");
        }
    }

    [Fact]
    public void AloraCannotBeMerged()
    {
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var alora = LoraAdapter.Load(AdapterFixtures.AloraQkv, weights.Config);
        var e = Assert.Throws<InvalidOperationException>(() => LoraMerge.Merge(weights, alora));
        Assert.Contains("aLoRA", e.Message, StringComparison.Ordinal);
        using var temp = new TempFolder();
        e = Assert.Throws<InvalidOperationException>(() => LoraMerge.MergeAndUnload(SharedPaths.Stories260K, alora, temp.File("out")));
        Assert.Contains("aLoRA", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("out")));
    }

    [Fact]
    public void DoubleMergeAndStrayUnmergeAreRefused()
    {
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, weights.Config);
        Assert.Throws<InvalidOperationException>(() => LoraMerge.Unmerge(weights, adapter));
        LoraMerge.Merge(weights, adapter);
        var e = Assert.Throws<InvalidOperationException>(() => LoraMerge.Merge(weights, adapter));
        Assert.Contains("already merged", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MergingIntoADifferentBaseModelIsRefused()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        using var other = ModelWeights.CreateRandom(baseConfig with { IntermediateSize = 100 }, DType.F32);
        var e = Assert.Throws<ModelFormatException>(() => LoraMerge.Merge(other, adapter));
        Assert.Contains("wrong base model?", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MergeAndUnloadWritesAModelWithTheAdaptersLogits()
    {
        using var temp = new TempFolder();
        string output = temp.File("merged");
        var baseConfig = AdapterFixtures.BaseConfig();
        using (var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig))
            LoraMerge.MergeAndUnload(SharedPaths.Stories260K, adapter, output);

        foreach (string file in new[] { "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors" })
            Assert.True(File.Exists(Path.Combine(output, file)), $"{file} is missing from the merged folder");
        using (var original = SafeTensorsFile.Open(Path.Combine(SharedPaths.Stories260K, "model.safetensors")))
        using (var merged = SafeTensorsFile.Open(Path.Combine(output, "model.safetensors")))
        {
            Assert.Equal(original.Tensors.Keys.Order(), merged.Tensors.Keys.Order());
            foreach (var (name, info) in original.Tensors) Assert.Equal(info.DType, merged.Tensors[name].DType);
            Assert.Equal(original.ReadFloats("model.embed_tokens.weight"), merged.ReadFloats("model.embed_tokens.weight"));
            Assert.NotEqual(original.ReadFloats("model.layers.0.self_attn.q_proj.weight"), merged.ReadFloats("model.layers.0.self_attn.q_proj.weight"));
        }

        using var weights = ModelWeights.Load(output);
        using var model = new DecoderModel(weights, maxBatchTokens: 64);
        var c = AdapterFixtures.Expected("lora-all").GetProperty("cases")[0];
        int[] ids = AdapterFixtures.Ints(c.GetProperty("input_ids"));
        float[] logits = Reference.RunAllLogits(model, ids);
        float maxDiff = AdapterFixtures.MaxAbsDiff(AdapterFixtures.Floats2D(c.GetProperty("logits_last4")), logits.AsSpan((ids.Length - 4) * model.VocabSize).ToArray());
        Assert.True(maxDiff <= 1e-4f, $"merged checkpoint logits differ from the LoRA reference by {maxDiff}");
    }
}

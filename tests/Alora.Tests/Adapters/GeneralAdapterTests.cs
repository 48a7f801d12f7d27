using Alora.Adapters;
using Alora.Formats;
using Alora.Inference;
using Alora.Models;
using Alora.Tensors;
using Alora.Tests.Models;

namespace Alora.Tests.Adapters;

/// <summary>Adapters beyond the fixtures: patterns, layer subsets, regex targets, bf16 files, end to end.</summary>
public sealed class GeneralAdapterTests
{
    public static TheoryData<string> Configs => new()
    {
        """{"peft_type":"LORA","r":4,"lora_alpha":6,"target_modules":["q_proj","o_proj","down_proj"],"layers_to_transform":[1,3],"rank_pattern":{"down_proj":2},"alpha_pattern":{"o_proj":12},"init_lora_weights":false}""",
        """{"peft_type":"LORA","r":3,"lora_alpha":5,"use_rslora":true,"target_modules":"model\\.layers\\.[024]\\.(self_attn\\.(k|v)_proj|mlp\\.up_proj)","init_lora_weights":false}""",
        """{"peft_type":"LORA","r":2,"lora_alpha":2,"target_modules":"all-linear","exclude_modules":["gate_proj"],"rank_pattern":{"model.layers.4.self_attn.q_proj":5},"init_lora_weights":false}""",
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void SavedAdapterReloadsAndMergedLogitsEqualTheUnmergedForward(string configJson)
    {
        using var temp = new TempFolder();
        using var baseWeights = ModelWeights.Load(SharedPaths.Stories260K);
        var config = LoraConfig.Parse(System.Text.Json.Nodes.JsonNode.Parse(configJson)!.AsObject(), "inline");
        using var created = LoraAdapter.Create("general", config, baseWeights.Config, seed: 9);
        foreach (var m in created.Modules)
        {
            Assert.Equal(config.RankOf(m.Layer, m.Module), m.Rank);
            Assert.Equal(config.ScalingOf(m.Layer, m.Module), m.Scaling);
            // Small B so the adapted model stays in a sane range.
            var b = m.BValues;
            for (int i = 0; i < b.Length; i++) b[i] *= 0.05f;
        }
        created.Save(temp.File("general"));
        using var adapter = LoraAdapter.Load(temp.File("general"), baseWeights.Config);
        Assert.Equal(created.Modules.Select(m => (m.Layer, m.Module, m.Rank)), adapter.Modules.Select(m => (m.Layer, m.Module, m.Rank)));

        using var mergedWeights = ModelWeights.Load(SharedPaths.Stories260K);
        LoraMerge.Merge(mergedWeights, adapter);
        using var unmergedModel = new DecoderModel(baseWeights, maxBatchTokens: 64);
        using var mergedModel = new DecoderModel(mergedWeights, maxBatchTokens: 64);
        int[] ids = [1, 410, 300, 301, 302, 13, 473, 467, 100, 101, 102, 103, 104, 105];
        using var cache = unmergedModel.CreateCache(ids.Length);
        using var sequence = new KvSequence(cache);
        var unmerged = new float[ids.Length * unmergedModel.VocabSize];
        unmergedModel.Forward([new SequenceChunk(sequence, ids, LogitRows.All, adapter.AsForwardAdapter(), 0)], unmerged);
        float[] merged = Reference.RunAllLogits(mergedModel, ids);
        using var plainModel = new DecoderModel(baseWeights, maxBatchTokens: 64);
        float[] plain = Reference.RunAllLogits(plainModel, ids);
        Assert.True(AdapterFixtures.MaxAbsDiff(plain, merged) > 1e-3f, "the adapter changes nothing; the test would be vacuous");
        float maxDiff = AdapterFixtures.MaxAbsDiff(unmerged, merged);
        Assert.True(maxDiff <= 1e-4f, $"merged vs unmerged: {maxDiff}");

        // And through GGUF: the per-module scalings survive llama.cpp's single alpha.
        GgufLoraExport.Export(adapter, temp.File("general.gguf"));
        using var back = GgufLoraExport.Read(temp.File("general.gguf"), baseWeights.Config);
        foreach (var m in adapter.Modules)
        {
            double[] expected = m.DeltaWeight(), actual = back.Get(m.Layer, m.Module)!.DeltaWeight();
            double diff = expected.Zip(actual, (x, y) => Math.Abs(x - y)).Max();
            Assert.True(diff <= 1e-6 * Math.Max(1e-9, expected.Max(Math.Abs)), $"{m}: GGUF ΔW off by {diff}");
        }
    }

    [Fact]
    public void Bf16AdapterFilesLoadAsRoundedValues()
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.LoraAll);
        using (var file = SafeTensorsFile.Open(Path.Combine(AdapterFixtures.LoraAll, LoraAdapter.WeightsFileName)))
        {
            var tensors = file.Tensors.Keys.Select(k =>
            {
                var values = file.ReadFloats(k);
                var bytes = new byte[values.Length * 2];
                for (int i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), Half16.SingleToBFloat16(values[i]));
                return new SafeTensorToWrite(k, SafeTensorDType.BF16, file.Tensors[k].Shape, bytes);
            }).ToList();
            SafeTensorsWriter.Write(Path.Combine(folder, LoraAdapter.WeightsFileName), tensors);
        }
        using var bf16 = LoraAdapter.Load(folder, baseConfig);
        using var f32 = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        var a = bf16.Get(2, "up_proj")!.AValues.ToArray();
        var expected = f32.Get(2, "up_proj")!.AValues.ToArray().Select(v => Half16.BFloat16ToSingle(Half16.SingleToBFloat16(v))).ToArray();
        Assert.Equal(expected, a);
    }

    [Fact]
    public void MergeIntoBf16WeightsMakesF32CopiesAndUnmergeRestoresThem()
    {
        var config = AdapterFixtures.BaseConfig();
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 4);
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, config);
        var before = weights.Layers[2].UpProj;
        Assert.Equal(DType.BF16, before.DType);
        var original = Enumerable.Range(0, before.Rows * before.Cols).Select(i => before[i / before.Cols, i % before.Cols]).ToArray();
        LoraMerge.Merge(weights, adapter);
        Assert.Equal(DType.F32, weights.Layers[2].UpProj.DType);
        Assert.Equal(DType.F32, weights.Parameters["model.layers.2.mlp.up_proj.weight"].DType);
        LoraMerge.Unmerge(weights, adapter);
        var after = weights.Layers[2].UpProj;
        var restored = Enumerable.Range(0, after.Rows * after.Cols).Select(i => after[i / after.Cols, i % after.Cols]).ToArray();
        Assert.True(AdapterFixtures.MaxAbsDiff(original, restored) <= 1e-6f);
    }
}

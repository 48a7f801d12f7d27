using Alora.Adapters;
using Alora.Formats;

namespace Alora.Tests.Adapters;

public sealed class GgufLoraExportTests
{
    [Fact]
    public void ExportWritesLlamaCppMetadataAndLayout()
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        string path = temp.File("lora.gguf");
        GgufLoraExport.Export(adapter, path);

        using var gguf = GgufFile.Open(path);
        Assert.Equal("adapter", gguf.GetString("general.type"));
        Assert.Equal("llama", gguf.GetString("general.architecture"));
        Assert.Equal("lora", gguf.GetString("adapter.type"));
        Assert.IsType<float>(gguf.Metadata["adapter.lora.alpha"]);
        Assert.Equal(32.0, gguf.GetFloat("adapter.lora.alpha"));   // rsLoRA 16/√4 = 8 = alpha/r with alpha 32
        Assert.False(gguf.Metadata.ContainsKey("adapter.alora.invocation_tokens"));
        Assert.Equal(70, gguf.Tensors.Count);

        var a = gguf.GetInfo("blk.3.ffn_down.weight.lora_a");
        var b = gguf.GetInfo("blk.3.ffn_down.weight.lora_b");
        Assert.Equal([172L, 4], a.Dimensions);   // ggml ne: [in, r], as llama-adapter.cpp checks against the model tensor
        Assert.Equal([4L, 64], b.Dimensions);    // [r, out]
        var module = adapter.Get(3, "down_proj")!;
        Assert.Equal(module.AValues.ToArray(), gguf.ReadFloats(a.Name));
        Assert.Equal(module.BValues.ToArray(), gguf.ReadFloats(b.Name));
    }

    [Fact]
    public void QueryAndKeyLoraBRowsFollowTheBaseGgufPermutation()
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        // The permutation is the one the base model's own GGUF applies to q/k: check it against stories260K.gguf.
        using (var hf = SafeTensorsFile.Open(Path.Combine(SharedPaths.Stories260K, "model.safetensors")))
        using (var baseGguf = GgufFile.Open(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf")))
        {
            float[] q = hf.ReadFloats("model.layers.1.self_attn.q_proj.weight");
            Assert.Equal(baseGguf.ReadFloats("blk.1.attn_q.weight"), GgufLoraExport.PermuteRows(q, 64, 64, baseConfig.HeadCount, toGguf: true));
            float[] k = hf.ReadFloats("model.layers.1.self_attn.k_proj.weight");
            Assert.Equal(baseGguf.ReadFloats("blk.1.attn_k.weight"), GgufLoraExport.PermuteRows(k, baseConfig.KeyValueDim, 64, baseConfig.KeyValueHeadCount, toGguf: true));
        }

        using var adapter = LoraAdapter.Load(AdapterFixtures.AloraQkv, baseConfig);
        string path = temp.File("alora.gguf");
        GgufLoraExport.Export(adapter, path);
        using var gguf = GgufFile.Open(path);
        Assert.Equal(new uint[] { 13, 473, 467 }, Assert.IsType<uint[]>(gguf.Metadata["adapter.alora.invocation_tokens"]));
        Assert.Equal(16.0, gguf.GetFloat("adapter.lora.alpha"));
        var qB = adapter.Get(1, "q_proj")!;
        var kB = adapter.Get(1, "k_proj")!;
        var vB = adapter.Get(1, "v_proj")!;
        Assert.Equal(GgufLoraExport.PermuteRows(qB.BValues.ToArray(), qB.OutFeatures, qB.Rank, baseConfig.HeadCount, true), gguf.ReadFloats("blk.1.attn_q.weight.lora_b"));
        Assert.Equal(GgufLoraExport.PermuteRows(kB.BValues.ToArray(), kB.OutFeatures, kB.Rank, baseConfig.KeyValueHeadCount, true), gguf.ReadFloats("blk.1.attn_k.weight.lora_b"));
        Assert.NotEqual(qB.BValues.ToArray(), gguf.ReadFloats("blk.1.attn_q.weight.lora_b"));
        Assert.Equal(vB.BValues.ToArray(), gguf.ReadFloats("blk.1.attn_v.weight.lora_b"));   // v is not permuted
    }

    [Theory]
    [InlineData("lora-all")]
    [InlineData("alora-q-k-v")]
    public void ExportReadsBackWithTheSameTensors(string name)
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        using var adapter = LoraAdapter.Load(Path.Combine(AdapterFixtures.Folder, name), baseConfig);
        string path = temp.File(name + ".gguf");
        GgufLoraExport.Export(adapter, path);
        using var back = GgufLoraExport.Read(path, baseConfig);
        Assert.Equal(adapter.InvocationTokens, back.InvocationTokens);
        Assert.Equal(adapter.Modules.Count, back.Modules.Count);
        foreach (var m in adapter.Modules)
        {
            var r = back.Get(m.Layer, m.Module)!;
            Assert.Equal((m.Rank, m.Scaling), (r.Rank, r.Scaling));
            Assert.True(m.AValues.SequenceEqual(r.AValues), $"{m}: A differs after the GGUF round trip");
            Assert.True(m.BValues.SequenceEqual(r.BValues), $"{m}: B differs after the GGUF round trip");
        }
    }

    [Fact]
    public void PerModuleScalingIsFoldedIntoLoraB()
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        var config = new LoraConfig
        {
            R = 4, LoraAlpha = 8, UseRslora = true, TargetModules = ["q_proj", "up_proj"], LayersToTransform = [1, 2], InitLoraWeights = "false",
            RankPattern = new Dictionary<string, int> { ["up_proj"] = 2 }, AlphaPattern = new Dictionary<string, double> { ["q_proj"] = 3 },
        };
        using var adapter = LoraAdapter.Create("patterned", config, baseConfig, seed: 5);
        string path = temp.File("patterned.gguf");
        GgufLoraExport.Export(adapter, path);
        using var back = GgufLoraExport.Read(path, baseConfig);
        Assert.Equal(4, back.Modules.Count);
        foreach (var m in adapter.Modules)
        {
            var r = back.Get(m.Layer, m.Module)!;
            Assert.Equal(m.Rank, r.Rank);
            double[] expected = m.DeltaWeight(), actual = r.DeltaWeight();
            double maxDiff = expected.Zip(actual, (x, y) => Math.Abs(x - y)).Max();
            Assert.True(maxDiff <= 1e-6 * expected.Max(Math.Abs), $"{m}: ΔW changed by {maxDiff} through the GGUF export");
        }
        Assert.Null(back.Get(0, "q_proj"));
    }

    [Fact]
    public void BadExportsAndReadsAreRefused()
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        var e = Assert.Throws<ArgumentException>(() => GgufLoraExport.Export(adapter, temp.File("x.gguf"), "qwen2"));
        Assert.Contains("llama", e.Message, StringComparison.Ordinal);

        var m = Assert.Throws<ModelFormatException>(() => GgufLoraExport.Read(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"), baseConfig));
        Assert.Contains("general.type", m.Message, StringComparison.Ordinal);

        string path = temp.File("lora.gguf");
        GgufLoraExport.Export(adapter, path);
        m = Assert.Throws<ModelFormatException>(() => GgufLoraExport.Read(path, baseConfig with { HiddenSize = 128 }));
        Assert.Contains("wrong base model", m.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LegacyAloraExportIsRefusedBecauseLlamaCppWouldActivateItEarlier()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.AloraQkv, j =>
        {
            j.Remove("alora_invocation_tokens");
            j["invocation_string"] = "\nQ:";
        });
        using var legacy = LoraAdapter.Load(folder, AdapterFixtures.BaseConfig(), tokenizer: Alora.Tokenization.Tokenizer.Load(SharedPaths.Stories260K));
        var e = Assert.Throws<InvalidOperationException>(() => GgufLoraExport.Export(legacy, temp.File("legacy.gguf")));
        Assert.Contains("legacy IBM aLoRA", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(temp.File("legacy.gguf")));
    }
}

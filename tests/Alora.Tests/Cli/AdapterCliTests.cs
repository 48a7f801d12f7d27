using Alora.Adapters;
using Alora.Formats;
using Alora.Tests.Adapters;

namespace Alora.Tests.Cli;

/// <summary>`alora adapter inspect | merge | export-gguf` run in-process with stdout captured.</summary>
[Collection("Console")]
public sealed class AdapterCliTests
{
    private static (int ExitCode, string Output) Run(params string[] args) => CliRunner.Run("AdapterCommands", "Adapter", args);

    [Fact]
    public void InspectPrintsKindRankScalingTargetsAndInvocation()
    {
        var (code, text) = Run("inspect", "--adapter", AdapterFixtures.AloraQkv, "--model", SharedPaths.Stories260K);
        Assert.Equal(0, code);
        Assert.Contains("kind: aLoRA", text, StringComparison.Ordinal);
        Assert.Contains("r: 8", text, StringComparison.Ordinal);
        Assert.Contains("invocation_tokens: [13, 473, 467]", text, StringComparison.Ordinal);
        Assert.Contains("model.layers.4.self_attn.v_proj: r=8 alpha=16 scaling=2", text, StringComparison.Ordinal);
        Assert.Contains("parameters: 12800", text, StringComparison.Ordinal);   // 15 modules · 8 · (64 + 64 or 32)
        Assert.Contains("the adapter fits", text, StringComparison.Ordinal);

        (code, text) = Run("inspect", "--adapter", AdapterFixtures.LoraAll);
        Assert.Equal(0, code);
        Assert.Contains("kind: LoRA", text, StringComparison.Ordinal);
        Assert.Contains("use_rslora: true", text, StringComparison.Ordinal);
        Assert.Contains("scaling: 8", text, StringComparison.Ordinal);
        Assert.Contains("modules: 35", text, StringComparison.Ordinal);
        Assert.Contains("not checked", text, StringComparison.Ordinal);
    }

    [Fact]
    public void InspectWithAWrongBaseModelFails()
    {
        using var temp = new TempFolder();
        string model = temp.File("other");
        Directory.CreateDirectory(model);
        string config = File.ReadAllText(Path.Combine(SharedPaths.Stories260K, "config.json")).Replace("\"num_hidden_layers\": 5", "\"num_hidden_layers\": 3", StringComparison.Ordinal);
        Assert.Contains("\"num_hidden_layers\": 3", config, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(model, "config.json"), config);
        var e = Assert.Throws<ModelFormatException>(() => Run("inspect", "--adapter", AdapterFixtures.LoraAll, "--model", model));
        Assert.Contains("wrong base model?", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MergeWritesAFolderAndRefusesAnAlora()
    {
        using var temp = new TempFolder();
        string output = temp.File("merged");
        var (code, text) = Run("merge", "--model", SharedPaths.Stories260K, "--adapter", AdapterFixtures.LoraAll, "--out", output);
        Assert.Equal(0, code);
        Assert.Contains("merged 35 modules", text, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(output, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(output, "tokenizer.json")));

        var e = Assert.ThrowsAny<Exception>(() => Run("merge", "--model", SharedPaths.Stories260K, "--adapter", AdapterFixtures.AloraQkv, "--out", temp.File("no")));
        Assert.Contains("aLoRA", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("no")));
    }

    [Fact]
    public void ExportGgufWritesAnAdapterThatReadsBack()
    {
        using var temp = new TempFolder();
        string path = temp.File("alora.gguf");
        var (code, text) = Run("export-gguf", "--adapter", AdapterFixtures.AloraQkv, "--model", Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"), "--out", path);
        Assert.Equal(0, code);
        Assert.Contains("architecture llama", text, StringComparison.Ordinal);
        using var back = GgufLoraExport.Read(path, AdapterFixtures.BaseConfig());
        Assert.Equal([13, 473, 467], back.InvocationTokens!);
        Assert.Equal(15, back.Modules.Count);

        (code, text) = Run("inspect", "--adapter", path, "--model", SharedPaths.Stories260K);
        Assert.Equal(0, code);
        Assert.Contains("kind: aLoRA", text, StringComparison.Ordinal);
    }

    [Fact]
    public void CombineWritesAnAdapterThatLoads()
    {
        using var temp = new TempFolder();
        string output = temp.File("mix");
        var (code, text) = Run("combine", "--model", SharedPaths.Stories260K, "--adapter", AdapterFixtures.LoraAll, "--weight", "0.5",
            "--adapter", AdapterFixtures.LoraAll, "--weight", "0.25", "--type", "cat", "--out", output);
        Assert.Equal(0, code);
        Assert.Contains("r=8", text, StringComparison.Ordinal);
        var baseConfig = AdapterFixtures.BaseConfig();
        using var combined = LoraAdapter.Load(output, baseConfig);
        using var original = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        var m = combined.Get(2, "gate_proj")!;
        double[] expected = original.Get(2, "gate_proj")!.DeltaWeight(), actual = m.DeltaWeight();
        for (int i = 0; i < expected.Length; i++) Assert.Equal(0.75 * expected[i], actual[i], 5);
        // --weight is required: a parse error, not a combination with a guessed weight.
        Assert.NotEqual(0, Run("combine", "--model", SharedPaths.Stories260K, "--adapter", AdapterFixtures.LoraAll, "--out", temp.File("bad")).ExitCode);
        Assert.False(Directory.Exists(temp.File("bad")));
    }

    [Fact]
    public void CombineTakesThePruningTypesAndTheirParameters()
    {
        using var temp = new TempFolder();
        string a0 = Path.Combine(MergeTypeTests.FixtureRoot, "adapters", "a0"), a1 = Path.Combine(MergeTypeTests.FixtureRoot, "adapters", "a1");
        var baseConfig = AdapterFixtures.BaseConfig();
        using var first = LoraAdapter.Load(a0, baseConfig);
        using var second = LoraAdapter.Load(a1, baseConfig);
        foreach (var (type, extra) in new (string, string[])[]
        {
            ("ties", ["--density", "0.5", "--majority-sign-method", "frequency"]),
            ("dare_ties_svd", ["--density", "0.7", "--seed", "9", "--rank", "3", "--svd-clamp", "0.95"]),
            ("magnitude_prune", ["--density", "0.3"]),
        })
        {
            string output = temp.File(type);
            var (code, text) = Run(["combine", "--model", SharedPaths.Stories260K, "--adapter", a0, "--weight", "0.7", "--adapter", a1, "--weight", "-1.2", "--type", type, .. extra, "--out", output]);
            Assert.Equal(0, code);
            Assert.Contains($"({type})", text, StringComparison.Ordinal);
            using var combined = LoraAdapter.Load(output, baseConfig);
            var options = new CombinationOptions
            {
                Density = double.Parse(extra[1], System.Globalization.CultureInfo.InvariantCulture),
                MajoritySignMethod = type == "ties" ? "frequency" : "total",
                Seed = type == "dare_ties_svd" ? 9 : 0,
                SvdRank = type == "dare_ties_svd" ? 3 : null,
                SvdClamp = type == "dare_ties_svd" ? 0.95 : null,
            };
            using var direct = AdapterCombination.AddWeighted([(first, 0.7), (second, -1.2)], type, "x", options);
            foreach (var m in direct.Modules)
            {
                var saved = combined.Get(m.Layer, m.Module)!;
                Assert.True(m.AValues.SequenceEqual(saved.AValues) && m.BValues.SequenceEqual(saved.BValues), $"{type} {m}: the CLI's result differs from the library's");
            }
        }
        // A pruning type without --density is refused with the reason.
        var e = Assert.ThrowsAny<Exception>(() => Run("combine", "--model", SharedPaths.Stories260K, "--adapter", a0, "--weight", "1", "--adapter", a1, "--weight", "1", "--type", "dare_linear", "--out", temp.File("bad")));
        Assert.Contains("needs a density", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SafeMergeRefusesABrokenAdapterAndWritesNoWeights()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, Path.Combine(MergeTypeTests.FixtureRoot, "adapters", "a0"));
        var baseConfig = AdapterFixtures.BaseConfig();
        using (var adapter = LoraAdapter.Load(folder, baseConfig))
        {
            adapter.Get(1, "down_proj")!.AValues[3] = float.NaN;
            adapter.Save(folder);
        }
        var e = Assert.ThrowsAny<Exception>(() => Run("merge", "--model", SharedPaths.Stories260K, "--adapter", folder, "--out", temp.File("merged"), "--safe-merge"));
        Assert.Contains("model.layers.1.mlp.down_proj", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(temp.File("merged"), "model.safetensors")));
        // Without the check the NaN is written, as PEFT's merge without safe_merge would.
        Assert.Equal(0, Run("merge", "--model", SharedPaths.Stories260K, "--adapter", folder, "--out", temp.File("unchecked")).ExitCode);
    }

    [Fact]
    public void ArrowBuildsPeftsLayoutFromAdapterFolders()
    {
        using var temp = new TempFolder();
        string fixture = Path.Combine(ArrowTests.FixtureRoot, "arrow");
        string output = temp.File("arrow");
        var (code, text) = Run("arrow", "--model", SharedPaths.Stories260K, "--task", Path.Combine(fixture, "task_0"), "--task", Path.Combine(fixture, "task_1"),
            "--general", Path.Combine(fixture, "gks_0"), "--gks", "--top-k", "1", "--temperature", "2", "--out", output);
        Assert.Equal(0, code);
        Assert.Contains("2 task adapters with GenKnowSub over 1 general adapters", text, StringComparison.Ordinal);
        using var arrow = ArrowModel.Load(output, AdapterFixtures.BaseConfig());
        Assert.Equal((1, 2.0, true), (arrow.Arrow!.Options.TopK, arrow.Arrow.Options.RouterTemperature, arrow.Arrow.Options.UseGks));
        Assert.True(File.Exists(Path.Combine(output, "task_1", LoraAdapter.WeightsFileName)));
        // top_k above the number of task adapters is refused with the reason.
        var e = Assert.ThrowsAny<Exception>(() => Run("arrow", "--model", SharedPaths.Stories260K, "--task", Path.Combine(fixture, "task_0"), "--top-k", "2", "--out", temp.File("bad")));
        Assert.Contains("top_k", e.Message, StringComparison.Ordinal);
    }
}

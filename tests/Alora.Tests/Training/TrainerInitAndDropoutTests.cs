using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Training;

namespace Alora.Tests.Training;

/// <summary>Whole runs on stories260K with --lora_dropout and with the pissa/olora initialisations.</summary>
public sealed class TrainerInitAndDropoutTests
{
    private static readonly string Data = SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl");

    private static TrainerOptions Options(string output) => TrainerTests.Options(Data, output) with { MaxSteps = 4 };

    private static Dictionary<string, float[]> Tensors(string folder)
    {
        using var file = SafeTensorsFile.Open(Path.Combine(folder, LoraAdapter.WeightsFileName));
        return file.Tensors.Keys.ToDictionary(k => k, k => file.ReadFloats(k));
    }

    [Fact]
    public void DropoutRunsAreReproduciblePerSeedAndDifferFromNoDropout()
    {
        using var temp = new TempFolder();
        new Trainer(Options(temp.File("a")) with { LoraDropout = 0.2 }).Run();
        new Trainer(Options(temp.File("b")) with { LoraDropout = 0.2 }).Run();
        new Trainer(Options(temp.File("none")) with { LoraDropout = 0 }).Run();
        var a = Tensors(temp.File("a"));
        var b = Tensors(temp.File("b"));
        var none = Tensors(temp.File("none"));
        foreach (var (name, values) in a) Assert.Equal(values, b[name]);
        Assert.Contains(a, kv => !kv.Value.SequenceEqual(none[kv.Key]));
        Assert.Equal(0.2, LoraConfig.Load(temp.File("a/adapter_config.json")).LoraDropout, 12);
    }

    [Theory]
    [InlineData("pissa")]
    [InlineData("olora")]
    public void MutatedInitRunsSaveAPlainLoraOfTheOriginalBase(string init)
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        var options = Options(output) with { InitLoraWeights = init, ValSetSize = 8, EvalStep = 4, SaveStep = 2 };
        var result = new Trainer(options).Run();
        Assert.True(double.IsFinite(result.FinalLoss));
        foreach (string folder in new[] { output, Path.Combine(output, "best"), Path.Combine(output, "checkpoint-2") })
        {
            var config = LoraConfig.Load(Path.Combine(folder, LoraAdapter.ConfigFileName));
            Assert.Equal("true", config.InitLoraWeights);
            Assert.Equal(8, config.R);
            Assert.Equal(16, config.LoraAlpha);
        }
        // The second half of every converted module is −(the init): recompute the init on a fresh base.
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var loaded = LoraAdapter.Load(output, weights.Config);
        using var fresh = ModelWeights.Load(SharedPaths.Stories260K);
        var initConfig = loaded.Config with { R = 4, LoraAlpha = 8, InitLoraWeights = init };
        using var initial = LoraAdapter.Create("init", initConfig, fresh, options.Seed);
        foreach (var m in initial.Modules)
        {
            var converted = loaded.Get(m.Layer, m.Module)!;
            Assert.Equal(m.Scaling, converted.Scaling, 6);
            int r = m.Rank, k = m.InFeatures;
            Assert.Equal(m.AValues.ToArray(), converted.AValues[(r * k)..].ToArray());
            for (int o = 0; o < m.OutFeatures; o++)
                for (int t = 0; t < r; t++) Assert.Equal(-m.BValues[o * r + t], converted.BValues[o * 2 * r + r + t]);
            // Training moved the first half away from the init.
            Assert.NotEqual(m.AValues.ToArray(), converted.AValues[..(r * k)].ToArray());
        }
    }

    [Fact]
    public void RefusesBadDropoutAndMutatedInitsThatCannotResume()
    {
        using var temp = new TempFolder();
        var dropout = Assert.Throws<ArgumentException>(() => new Trainer(Options(temp.File("x")) with { LoraDropout = 1 }).Run());
        Assert.Contains("LoraDropout", dropout.Message, StringComparison.Ordinal);
        var resume = Assert.Throws<ArgumentException>(() => new Trainer(Options(temp.File("x")) with { InitLoraWeights = "pissa", InitAdapter = temp.File("y") }).Run());
        Assert.Contains("InitAdapter", resume.Message, StringComparison.Ordinal);
        var niter = Assert.Throws<ArgumentException>(() => new Trainer(Options(temp.File("x")) with { InitLoraWeights = "pissa_niter_4" }).Run());
        Assert.Contains("pissa_niter_4", niter.Message, StringComparison.Ordinal);
    }
}

using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Formats;
using Alora.Tokenization;

namespace Alora.Tests.Adapters;

public sealed class LoraAdapterFileTests
{
    [Fact]
    public void FixtureAdaptersLoadWithTheirModulesScalingsAndTensors()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        using var lora = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        Assert.Equal("lora-all", lora.Name);
        Assert.False(lora.IsActivated);
        Assert.Equal(35, lora.Modules.Count);
        var down = lora.Get(4, "down_proj")!;
        Assert.Equal((4, 172, 64), (down.Rank, down.InFeatures, down.OutFeatures));
        Assert.Equal(8f, down.Scaling);
        using (var file = SafeTensorsFile.Open(Path.Combine(AdapterFixtures.LoraAll, LoraAdapter.WeightsFileName)))
        {
            Assert.Equal(file.ReadFloats("base_model.model.model.layers.4.mlp.down_proj.lora_A.weight"), down.AValues.ToArray());
            Assert.Equal(file.ReadFloats("base_model.model.model.layers.4.mlp.down_proj.lora_B.weight"), down.BValues.ToArray());
        }

        using var alora = LoraAdapter.Load(AdapterFixtures.AloraQkv, baseConfig);
        Assert.True(alora.IsActivated);
        Assert.Equal([13, 473, 467], alora.InvocationTokens!);
        Assert.Equal(0, alora.ActivationShift);
        Assert.Equal(15, alora.Modules.Count);
        Assert.Null(alora.Get(0, "o_proj"));
        Assert.All(alora.Modules, m => Assert.Equal(2f, m.Scaling));
    }

    [Fact]
    public void SaveThenLoadGivesIdenticalTensorsAndConfig()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        using var temp = new TempFolder();
        foreach (string source in new[] { AdapterFixtures.LoraAll, AdapterFixtures.AloraQkv })
        {
            using var original = LoraAdapter.Load(source, baseConfig);
            string folder = temp.File(Path.GetFileName(source));
            original.Save(folder);
            using var reloaded = LoraAdapter.Load(folder, baseConfig);
            Assert.Equal(original.Config.ToJson().ToJsonString(), reloaded.Config.ToJson().ToJsonString());
            Assert.Equal(original.InvocationTokens, reloaded.InvocationTokens);
            Assert.Equal(original.Modules.Count, reloaded.Modules.Count);
            foreach (var m in original.Modules)
            {
                var r = reloaded.Get(m.Layer, m.Module)!;
                Assert.Equal(m.Scaling, r.Scaling);
                Assert.True(m.AValues.SequenceEqual(r.AValues), $"{m}: A differs");
                Assert.True(m.BValues.SequenceEqual(r.BValues), $"{m}: B differs");
            }
            // Byte-identical weights with the original PEFT file (same names, shapes and f32 values).
            using var a = SafeTensorsFile.Open(Path.Combine(source, LoraAdapter.WeightsFileName));
            using var b = SafeTensorsFile.Open(Path.Combine(folder, LoraAdapter.WeightsFileName));
            Assert.Equal(a.Tensors.Keys.Order(), b.Tensors.Keys.Order());
            foreach (var name in a.Tensors.Keys) Assert.Equal(a.ReadFloats(name), b.ReadFloats(name));
        }
    }

    [Fact]
    public void CreateInitialisesAsPeftDoes()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        var config = new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = ["q_proj", "down_proj"] };
        using var adapter = LoraAdapter.Create("new", config, baseConfig, seed: 7);
        Assert.Equal(10, adapter.Modules.Count);
        foreach (var m in adapter.Modules)
        {
            float bound = 1f / MathF.Sqrt(m.InFeatures);
            Assert.All(m.AValues.ToArray(), v => Assert.InRange(v, -bound, bound));
            Assert.Contains(m.AValues.ToArray(), v => v != 0);
            Assert.All(m.BValues.ToArray(), v => Assert.Equal(0f, v));
            Assert.Equal(2f, m.Scaling);
        }
        using var again = LoraAdapter.Create("new", config, baseConfig, seed: 7);
        Assert.True(adapter.Modules[3].AValues.SequenceEqual(again.Modules[3].AValues));
        using var gaussian = LoraAdapter.Create("g", config with { InitLoraWeights = "gaussian" }, baseConfig, seed: 1);
        double variance = gaussian.Modules.SelectMany(m => m.AValues.ToArray()).Average(v => (double)v * v);
        Assert.InRange(variance, 0.8 / 16, 1.2 / 16);   // N(0, 1/r) with r = 4
    }

    [Fact]
    public void CreateMakesAnAloraFromIdsAndRefusesALegacyString()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        using var alora = LoraAdapter.Create("a", new LoraConfig { R = 2, LoraAlpha = 4, TargetModules = ["v_proj"], AloraInvocationTokens = [13, 473] }, baseConfig, seed: 1);
        Assert.True(alora.IsActivated);
        Assert.Equal([13, 473], alora.InvocationTokens!);
        Assert.Equal(0, alora.ActivationShift);
        var e = Assert.Throws<ModelFormatException>(() =>
            LoraAdapter.Create("b", new LoraConfig { R = 2, LoraAlpha = 4, TargetModules = ["v_proj"], InvocationString = "Q:" }, baseConfig, seed: 1));
        Assert.Contains("alora_invocation_tokens", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AdapterForADifferentBaseModelIsRefused()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        var wider = baseConfig with { HiddenSize = 128 };
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(AdapterFixtures.LoraAll, wider));
        Assert.Contains("wrong base model?", e.Message, StringComparison.Ordinal);
        Assert.Contains("in_features 128", e.Message, StringComparison.Ordinal);

        var shallower = baseConfig with { LayerCount = 3 };
        e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(AdapterFixtures.LoraAll, shallower));
        Assert.Contains("layer 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("wrong base model?", e.Message, StringComparison.Ordinal);

        var smallVocabulary = baseConfig with { VocabSize = 400 };
        e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(AdapterFixtures.AloraQkv, smallVocabulary));
        Assert.Contains("473", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TargetNamesThatDoNotExistInTheBaseAreRefused()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.LoraAll, j => j["target_modules"] = new JsonArray("c_attn", "c_proj"));
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, AdapterFixtures.BaseConfig()));
        Assert.Contains("wrong base model?", e.Message, StringComparison.Ordinal);
        Assert.Contains("c_attn", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingTensorsAreNamed()
    {
        using var temp = new TempFolder();
        var baseConfig = AdapterFixtures.BaseConfig();
        using var adapter = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        string folder = temp.File("partial");
        adapter.Save(folder);
        using (var file = SafeTensorsFile.Open(Path.Combine(AdapterFixtures.LoraAll, LoraAdapter.WeightsFileName)))
        {
            var kept = file.Tensors.Keys.Where(k => k != "base_model.model.model.layers.2.mlp.up_proj.lora_B.weight")
                .Select(k => SafeTensorToWrite.FromFloats(k, file.Tensors[k].Shape, file.ReadFloats(k))).ToList();
            SafeTensorsWriter.Write(Path.Combine(folder, LoraAdapter.WeightsFileName), kept);
        }
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, baseConfig));
        Assert.Contains("layers.2.mlp.up_proj.lora_B.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains("missing", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UntargetedTensorsAreRefused()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.LoraAll, j => j["target_modules"] = new JsonArray("q_proj", "k_proj"));
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, AdapterFixtures.BaseConfig()));
        Assert.Contains("does not target", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RankMismatchIsNamed()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.LoraAll, j => j["r"] = 8);
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, AdapterFixtures.BaseConfig()));
        Assert.Contains("rank mismatch", e.Message, StringComparison.Ordinal);
        Assert.Contains("rank 4", e.Message, StringComparison.Ordinal);

        folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.LoraAll, j => j["rank_pattern"] = new JsonObject { ["v_proj"] = 2 }, "pattern");
        e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, AdapterFixtures.BaseConfig()));
        Assert.Contains("v_proj rank 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyInvocationListIsRefused()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.AloraQkv, j => j["alora_invocation_tokens"] = new JsonArray());
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, AdapterFixtures.BaseConfig()));
        Assert.Contains("alora_invocation_tokens", e.Message, StringComparison.Ordinal);
        Assert.Contains("never activates", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnsupportedConfigFieldIsRefusedAtLoad()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.LoraAll, j => j["modules_to_save"] = new JsonArray("lm_head"));
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, AdapterFixtures.BaseConfig()));
        Assert.Contains("modules_to_save", e.Message, StringComparison.Ordinal);
        Assert.Contains(LoraAdapter.ConfigFileName, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LegacyIbmAdapterTokenizesItsInvocationStringAndActivatesOneLater()
    {
        using var temp = new TempFolder();
        string folder = AdapterFixtures.CopyAdapter(temp, AdapterFixtures.AloraQkv, j =>
        {
            j.Remove("alora_invocation_tokens");
            j["peft_type"] = "ALORA";
            j["invocation_string"] = "\nQ:";
        });
        var baseConfig = AdapterFixtures.BaseConfig();
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(folder, baseConfig));
        Assert.Contains("tokenizer", e.Message, StringComparison.Ordinal);

        var tokenizer = Tokenizer.Load(SharedPaths.Stories260K);
        using var adapter = LoraAdapter.Load(folder, baseConfig, tokenizer: tokenizer);
        Assert.True(adapter.IsActivated);
        Assert.Equal(1, adapter.ActivationShift);
        Assert.Equal(tokenizer.Encode("\nQ:", addSpecialTokens: false), adapter.InvocationTokens!);
        Assert.Equal([13, 473, 467], adapter.InvocationTokens![^3..]);
        Assert.Equal("\nQ:", adapter.Config.InvocationString);
    }
}

using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Formats;

namespace Alora.Tests.Adapters;

public sealed class LoraConfigTests
{
    private static LoraConfig ParseText(string json) => LoraConfig.Parse(JsonNode.Parse(json)!.AsObject(), "test.json");

    [Fact]
    public void FixtureConfigsParseWithTheirFields()
    {
        var lora = LoraConfig.Load(Path.Combine(AdapterFixtures.LoraAll, "adapter_config.json"));
        Assert.Equal(4, lora.R);
        Assert.Equal(16, lora.LoraAlpha);
        Assert.True(lora.UseRslora);
        Assert.Null(lora.AloraInvocationTokens);
        Assert.False(lora.IsActivated);
        Assert.Equal(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], lora.TargetModules!);

        var alora = LoraConfig.Load(Path.Combine(AdapterFixtures.AloraQkv, "adapter_config.json"));
        Assert.Equal([13, 473, 467], alora.AloraInvocationTokens!);
        Assert.True(alora.IsActivated);
        Assert.True(alora.Targets(0, "k_proj"));
        Assert.False(alora.Targets(0, "o_proj"));
    }

    [Fact]
    public void ScalingsMatchExpectedJsonPerModule()
    {
        foreach (string name in new[] { "lora-all", "alora-q-k-v" })
        {
            var config = LoraConfig.Load(Path.Combine(AdapterFixtures.Folder, name, "adapter_config.json"));
            var expected = AdapterFixtures.Expected(name).GetProperty("scaling_per_module");
            int count = 0;
            for (int layer = 0; layer < 5; layer++)
                foreach (string module in LoraConfig.ProjectionModules)
                {
                    string key = LoraConfig.ModuleKey(layer, module);
                    bool listed = expected.TryGetProperty(key, out var entry);
                    Assert.Equal(listed, config.Targets(layer, module));
                    if (!listed) continue;
                    count++;
                    Assert.Equal(entry.GetProperty("r").GetInt32(), config.RankOf(layer, module));
                    Assert.Equal(entry.GetProperty("alpha").GetDouble(), config.AlphaOf(layer, module));
                    Assert.Equal(entry.GetProperty("scaling").GetSingle(), config.ScalingOf(layer, module), 6);
                }
            Assert.Equal(expected.EnumerateObject().Count(), count);
        }
    }

    [Fact]
    public void TargetModulesListMatchesNamesAndSuffixesOnly()
    {
        var config = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["self_attn.q_proj","down_proj","proj"]}""");
        Assert.True(config.Targets(2, "q_proj"));     // suffix after a dot
        Assert.True(config.Targets(2, "down_proj"));
        Assert.False(config.Targets(2, "k_proj"));    // "proj" is not a dot-separated suffix of "k_proj"
        Assert.False(config.Targets(2, "up_proj"));
    }

    [Fact]
    public void TargetModulesRegexMustMatchTheWholeName()
    {
        var config = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":".*\\.(1|3)\\.self_attn\\.(q|v)_proj"}""");
        Assert.True(config.Targets(1, "q_proj"));
        Assert.True(config.Targets(3, "v_proj"));
        Assert.False(config.Targets(13, "q_proj"));
        Assert.False(config.Targets(1, "k_proj"));
        var partial = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":"q_proj"}""");
        Assert.False(partial.Targets(0, "q_proj"));   // fullmatch, not search
    }

    [Fact]
    public void PythonNamedGroupsInPatternsWork()
    {
        var config = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":".*\\.(?P<n>[12])\\.self_attn\\.q_proj"}""");
        Assert.True(config.Targets(2, "q_proj"));
        Assert.False(config.Targets(3, "q_proj"));
    }

    [Fact]
    public void AllLinearTargetsEveryProjection()
    {
        var config = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":"all-linear"}""");
        foreach (string module in LoraConfig.ProjectionModules) Assert.True(config.Targets(7, module));
    }

    [Fact]
    public void LayersToTransformAndPatternSelectLayers()
    {
        var config = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"layers_to_transform":[0,2]}""");
        Assert.True(config.Targets(0, "q_proj"));
        Assert.False(config.Targets(1, "q_proj"));
        Assert.True(config.Targets(2, "q_proj"));
        var single = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"layers_to_transform":3,"layers_pattern":"layers"}""");
        Assert.True(single.Targets(3, "q_proj"));
        Assert.False(single.Targets(2, "q_proj"));
        var otherPattern = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj"],"layers_to_transform":[3],"layers_pattern":["h"]}""");
        Assert.False(otherPattern.Targets(3, "q_proj"));   // no ".h.3." in a Llama module name
    }

    [Fact]
    public void ExcludeModulesWins()
    {
        var config = ParseText("""{"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":"all-linear","exclude_modules":["down_proj"]}""");
        Assert.False(config.Targets(0, "down_proj"));
        Assert.True(config.Targets(0, "up_proj"));
    }

    [Fact]
    public void RankAndAlphaPatternsApplyPerModuleAndFirstMatchWins()
    {
        var config = ParseText("""
            {"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":"all-linear","use_rslora":false,
             "rank_pattern":{"model.layers.1.self_attn.q_proj":2,"q_proj":4,"mlp\\..*":16},
             "alpha_pattern":{"down_proj":32}}
            """);
        Assert.Equal(2, config.RankOf(1, "q_proj"));
        Assert.Equal(4, config.RankOf(11, "q_proj"));
        Assert.Equal(16, config.RankOf(0, "up_proj"));
        Assert.Equal(8, config.RankOf(0, "k_proj"));
        Assert.Equal(32, config.AlphaOf(0, "down_proj"));
        Assert.Equal(16, config.AlphaOf(0, "up_proj"));
        Assert.Equal(2f, config.ScalingOf(0, "down_proj"));   // 32 / 16
        Assert.Equal(8f, config.ScalingOf(1, "q_proj"));      // 16 / 2
        var rs = config with { UseRslora = true };
        Assert.Equal((float)(16 / Math.Sqrt(2)), rs.ScalingOf(1, "q_proj"), 6);
    }

    [Fact]
    public void SaveThenLoadGivesTheSameConfigAndPeftFields()
    {
        using var temp = new TempFolder();
        var config = new LoraConfig
        {
            R = 6, LoraAlpha = 12.5, UseRslora = true, TargetModules = ["q_proj", "v_proj"], LayersToTransform = [1, 3],
            LayersPattern = ["layers"], RankPattern = new Dictionary<string, int> { ["v_proj"] = 3 }, AlphaPattern = new Dictionary<string, double> { ["q_proj"] = 7 },
            AloraInvocationTokens = [5, 6, 7], BaseModelNameOrPath = "stories260K", LoraDropout = 0.05, InitLoraWeights = "gaussian",
        };
        string path = temp.File("adapter_config.json");
        config.Save(path);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        foreach (string field in new[] { "peft_type", "task_type", "revision", "inference_mode", "auto_mapping", "megatron_config", "megatron_core",
                     "layer_replication", "use_qalora", "qalora_group_size", "modules_to_save", "loftq_config", "eva_config", "corda_config",
                     "trainable_token_indices", "target_parameters", "lora_bias", "use_dora", "fan_in_fan_out", "bias", "exclude_modules" })
            Assert.True(json.ContainsKey(field), $"PEFT field '{field}' is missing from the saved config");
        Assert.Equal("LORA", (string?)json["peft_type"]);
        var loaded = LoraConfig.Load(path);
        Assert.Equal(config.ToJson().ToJsonString(), loaded.ToJson().ToJsonString());
        Assert.Equal(config.ScalingOf(3, "v_proj"), loaded.ScalingOf(3, "v_proj"));
    }

    [Theory]
    [InlineData("\"modules_to_save\":[\"lm_head\"]", "modules_to_save")]
    [InlineData("\"bias\":\"all\"", "bias")]
    [InlineData("\"bias\":\"lora_only\"", "bias")]
    [InlineData("\"lora_bias\":true", "lora_bias")]
    [InlineData("\"fan_in_fan_out\":true", "fan_in_fan_out")]
    [InlineData("\"layer_replication\":[[0,2],[1,3]]", "layer_replication")]
    [InlineData("\"trainable_token_indices\":[1,2]", "trainable_token_indices")]
    [InlineData("\"target_parameters\":[\"experts.gate\"]", "target_parameters")]
    [InlineData("\"megatron_config\":{\"a\":1}", "megatron_config")]
    [InlineData("\"loftq_config\":{\"loftq_bits\":4}", "loftq_config")]
    [InlineData("\"use_qalora\":true", "use_qalora")]
    [InlineData("\"init_lora_weights\":\"pissa\"", "init_lora_weights")]
    [InlineData("\"alora_invocation_tokens\":[]", "alora_invocation_tokens")]
    [InlineData("\"some_future_field\":1", "some_future_field")]
    [InlineData("\"r\":\"eight\"", "'r'")]
    [InlineData("\"target_modules\":[\"q_proj\"],\"layers_pattern\":\"layers\"", "layers_pattern")]
    public void UnsupportedFieldsGetErrorsNamingThem(string field, string expectedInMessage)
    {
        var json = JsonNode.Parse("""{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj"]}""")!.AsObject();
        foreach (var (key, value) in JsonNode.Parse("{" + field + "}")!.AsObject()) json[key] = value?.DeepClone();
        var e = Assert.Throws<ModelFormatException>(() => LoraConfig.Parse(json, "test.json"));
        Assert.Contains(expectedInMessage, e.Message, StringComparison.Ordinal);
        Assert.Contains("test.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UseDoraWithAloraNamesTheConflict()
    {
        var e = Assert.Throws<ModelFormatException>(() =>
            ParseText("""{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj"],"use_dora":true,"alora_invocation_tokens":[1,2]}"""));
        Assert.Contains("aLoRA", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LegacyIbmConfigWithInvocationStringParses()
    {
        var config = ParseText("""{"peft_type":"ALORA","r":32,"lora_alpha":32,"target_modules":["q_proj","k_proj","v_proj"],"invocation_string":"<|assistant|>"}""");
        Assert.True(config.IsActivated);
        Assert.True(config.IsLegacyAlora);
        Assert.Equal("<|assistant|>", config.InvocationString);
    }

    [Fact]
    public void BadJsonAndMissingFileAreClear()
    {
        using var temp = new TempFolder();
        string path = temp.File("adapter_config.json");
        File.WriteAllText(path, "{ not json");
        var e = Assert.Throws<ModelFormatException>(() => LoraConfig.Load(path));
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => LoraConfig.Load(temp.File("missing.json")));
    }
}

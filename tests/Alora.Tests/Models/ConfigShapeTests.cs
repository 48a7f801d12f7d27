using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Tests.Models;

/// <summary>
/// The parameters built from each real config in shared/configs equal those a Hugging Face checkpoint of
/// that model holds, and a random-weight forward pass of that exact shape runs.
/// </summary>
public sealed class ConfigShapeTests
{
    public static TheoryData<string, long> Configs => new()
    {
        // Published parameter counts of the real checkpoints (granite's is derived from its architecture).
        { "smollm2-135m", 134_515_008 },
        { "qwen2.5-0.5b", 494_032_768 },
        { "llama-3.2-1b", 1_235_814_400 },
        { "granite-3.3-2b", 2_533_539_840 },
    };

    private static string ConfigPath(string name) => SharedPaths.Path("configs", name, "config.json");

    /// <summary>
    /// The expected list, written from the architectures' definitions in transformers (LlamaModel, Qwen2Model,
    /// GraniteModel, MistralModel): an embedding, per layer two RMSNorms, q/k/v/o (Qwen2: q/k/v with bias;
    /// Llama: all four with bias when attention_bias) and gate/up/down, a final norm, and lm_head unless tied.
    /// </summary>
    private static List<string> ExpectedFromDefinition(JsonObject c)
    {
        string arch = c["architectures"]![0]!.GetValue<string>();
        int d = c["hidden_size"]!.GetValue<int>(), f = c["intermediate_size"]!.GetValue<int>(), v = c["vocab_size"]!.GetValue<int>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kv = c["num_key_value_heads"]!.GetValue<int>();
        int hd = c["head_dim"]?.GetValue<int>() ?? d / heads;
        bool qkvBias = arch == "Qwen2ForCausalLM" || (c["attention_bias"]?.GetValue<bool>() ?? false);
        bool tied = c["tie_word_embeddings"]?.GetValue<bool>() ?? false;
        var list = new List<string> { $"model.embed_tokens.weight [{v}, {d}]" };
        for (int i = 0; i < c["num_hidden_layers"]!.GetValue<int>(); i++)
        {
            string p = $"model.layers.{i}.";
            list.Add($"{p}input_layernorm.weight [{d}]");
            list.Add($"{p}self_attn.q_proj.weight [{heads * hd}, {d}]");
            if (qkvBias) list.Add($"{p}self_attn.q_proj.bias [{heads * hd}]");
            list.Add($"{p}self_attn.k_proj.weight [{kv * hd}, {d}]");
            if (qkvBias) list.Add($"{p}self_attn.k_proj.bias [{kv * hd}]");
            list.Add($"{p}self_attn.v_proj.weight [{kv * hd}, {d}]");
            if (qkvBias) list.Add($"{p}self_attn.v_proj.bias [{kv * hd}]");
            list.Add($"{p}self_attn.o_proj.weight [{d}, {heads * hd}]");
            list.Add($"{p}post_attention_layernorm.weight [{d}]");
            list.Add($"{p}mlp.gate_proj.weight [{f}, {d}]");
            list.Add($"{p}mlp.up_proj.weight [{f}, {d}]");
            list.Add($"{p}mlp.down_proj.weight [{d}, {f}]");
        }
        list.Add($"model.norm.weight [{d}]");
        if (!tied) list.Add($"lm_head.weight [{v}, {d}]");
        return list;
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void ParametersBuiltFromConfigMatchTheCheckpointLayout(string name, long publishedParameterCount)
    {
        var json = JsonNode.Parse(File.ReadAllText(ConfigPath(name)))!.AsObject();
        var config = ModelConfig.FromFile(ConfigPath(name));
        var built = ParameterLayout.For(config);
        Assert.Equal(ExpectedFromDefinition(json).Order(StringComparer.Ordinal), built.Select(p => p.ToString()).Order(StringComparer.Ordinal));
        Assert.Equal(publishedParameterCount, built.Sum(p => p.ElementCount));
    }

    [Fact]
    public void ConfigSpecificsAreRead()
    {
        var llama = ModelConfig.FromFile(ConfigPath("llama-3.2-1b"));
        Assert.Equal([128001, 128008, 128009], llama.EosTokenIds);
        Assert.NotNull(llama.RopeScaling);
        Assert.Equal(32.0, llama.RopeScaling!.Factor);
        var granite = ModelConfig.FromFile(ConfigPath("granite-3.3-2b"));
        Assert.Equal(ModelArchitecture.Granite, granite.Architecture);
        Assert.Equal(12f, granite.EmbeddingMultiplier);
        Assert.Equal(0.015625f, granite.AttentionScale);
        Assert.Equal(0.22f, granite.ResidualMultiplier);
        Assert.Equal(8f, granite.LogitsScaling);
        var qwen = ModelConfig.FromFile(ConfigPath("qwen2.5-0.5b"));
        Assert.True(qwen.QkvBias);
        Assert.False(qwen.OutputBias);
        Assert.Equal(1e-6f, qwen.RmsNormEps);
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void RandomWeightForwardPassRuns(string name, long publishedParameterCount)
    {
        _ = publishedParameterCount;
        var config = ModelConfig.FromFile(ConfigPath(name));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 7);
        using var model = new DecoderModel(weights, maxBatchTokens: 8);
        using var cache = model.CreateCache(32);
        using var sequence = new Alora.Inference.KvSequence(cache);
        int[] ids = [1, 5, 9, 200, 17];
        var logits = new float[ids.Length * config.VocabSize];
        Assert.Equal(ids.Length, model.Forward([new SequenceChunk(sequence, ids, LogitRows.All)], logits));
        Assert.All(logits, x => Assert.True(float.IsFinite(x)));
        Assert.Contains(logits, x => x != 0);
        Assert.Equal(ids.Length, sequence.Length);
    }
}

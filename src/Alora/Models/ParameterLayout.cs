namespace Alora.Models;

/// <summary>One named parameter of a Hugging Face checkpoint, with its row-major shape.</summary>
public sealed record ParameterSpec(string Name, long[] Shape)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public override string ToString() => $"{Name} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// The parameters a Hugging Face checkpoint of a Llama-family model holds, derived from its config alone
/// (LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM / GraniteForCausalLM share the layout).
/// </summary>
public static class ParameterLayout
{
    public const string EmbedTokens = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";
    public const string LmHead = "lm_head.weight";

    /// <summary>The projection modules of a decoder layer, as PEFT's target_modules name them.</summary>
    public static readonly string[] AttentionProjections = [.. Projections.All.Where(p => p.Section() == "self_attn").Select(p => p.PeftName())];
    public static readonly string[] MlpProjections = [.. Projections.All.Where(p => p.Section() == "mlp").Select(p => p.PeftName())];

    public static string LayerPrefix(int layer) => $"model.layers.{layer}.";

    public static string ProjectionName(int layer, string module)
        => LayerPrefix(layer) + (Projections.TryParse(module, out var p) ? p.Section() : "self_attn") + "." + module;

    /// <summary>[out, in] of a projection module.</summary>
    public static (int Out, int In) ProjectionShape(ModelConfig c, string module) => Projections.Parse(module).Shape(c);

    public static IReadOnlyList<ParameterSpec> For(ModelConfig c)
    {
        var list = new List<ParameterSpec> { new(EmbedTokens, [c.VocabSize, c.HiddenSize]) };
        for (int i = 0; i < c.LayerCount; i++)
        {
            string p = LayerPrefix(i);
            list.Add(new(p + "input_layernorm.weight", [c.HiddenSize]));
            foreach (var module in AttentionProjections)
            {
                var (o, n) = ProjectionShape(c, module);
                list.Add(new(ProjectionName(i, module) + ".weight", [o, n]));
                bool bias = module == "o_proj" ? c.OutputBias : c.QkvBias;
                if (bias) list.Add(new(ProjectionName(i, module) + ".bias", [o]));
            }
            list.Add(new(p + "post_attention_layernorm.weight", [c.HiddenSize]));
            foreach (var module in MlpProjections)
            {
                var (o, n) = ProjectionShape(c, module);
                list.Add(new(ProjectionName(i, module) + ".weight", [o, n]));
                if (c.MlpBias) list.Add(new(ProjectionName(i, module) + ".bias", [o]));
            }
        }
        list.Add(new(FinalNorm, [c.HiddenSize]));
        if (!c.TieWordEmbeddings) list.Add(new(LmHead, [c.VocabSize, c.HiddenSize]));
        return list;
    }
}

namespace Alora.Models;

/// <summary>The seven linear projections of a Llama-family decoder layer, in the order everything indexes them.</summary>
public enum Projection { Q, K, V, O, Gate, Up, Down }

/// <summary>What each <see cref="Projection"/> is called and how big it is, defined once.</summary>
public static class Projections
{
    public static readonly IReadOnlyList<Projection> All = Enum.GetValues<Projection>();
    /// <summary>PEFT's / transformers' module names (target_modules), in <see cref="Projection"/> order.</summary>
    public static readonly IReadOnlyList<string> PeftNames = [.. All.Select(PeftName)];

    /// <summary>q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.</summary>
    public static string PeftName(this Projection p) => p switch
    {
        Projection.Q => "q_proj", Projection.K => "k_proj", Projection.V => "v_proj", Projection.O => "o_proj",
        Projection.Gate => "gate_proj", Projection.Up => "up_proj", Projection.Down => "down_proj",
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    /// <summary>The layer's submodule holding it in transformers: self_attn or mlp.</summary>
    public static string Section(this Projection p) => p <= Projection.O ? "self_attn" : "mlp";

    /// <summary>llama.cpp's tensor name part: blk.{i}.{name}.weight.</summary>
    public static string GgufName(this Projection p) => p switch
    {
        Projection.Q => "attn_q", Projection.K => "attn_k", Projection.V => "attn_v", Projection.O => "attn_output",
        Projection.Gate => "ffn_gate", Projection.Up => "ffn_up", Projection.Down => "ffn_down",
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    /// <summary>[out, in] of the projection's weight for a config.</summary>
    public static (int Out, int In) Shape(this Projection p, ModelConfig c) => p switch
    {
        Projection.Q => (c.QueryDim, c.HiddenSize),
        Projection.K or Projection.V => (c.KeyValueDim, c.HiddenSize),
        Projection.O => (c.HiddenSize, c.QueryDim),
        Projection.Gate or Projection.Up => (c.IntermediateSize, c.HiddenSize),
        Projection.Down => (c.HiddenSize, c.IntermediateSize),
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    public static bool TryParse(string peftName, out Projection projection)
    {
        for (int i = 0; i < All.Count; i++)
            if (PeftNames[i] == peftName) { projection = All[i]; return true; }
        projection = default;
        return false;
    }

    /// <summary>The projection a PEFT module name means; an unknown name is an error listing the known ones.</summary>
    public static Projection Parse(string peftName)
        => TryParse(peftName, out var p) ? p
            : throw new ArgumentException($"unknown projection module '{peftName}'; expected one of {string.Join(", ", PeftNames)}", nameof(peftName));
}

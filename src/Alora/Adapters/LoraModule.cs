using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Adapters;

// Legend: r = rank, in = the projection's input features, out = its output features.

/// <summary>
/// The LoRA pair of one projection: y += Scaling · B·(A·x). A and B are f32 views into the adapter's slab,
/// writable (training updates them in place); they live as long as the adapter.
/// </summary>
public sealed unsafe class LoraModule
{
    internal LoraModule(int layer, string module, float scaling, float* a, float* b, int rank, int inFeatures, int outFeatures, float* magnitude = null)
    {
        Magnitude = magnitude;
        Layer = layer;
        Module = module;
        Scaling = scaling;
        Rank = rank;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        A = new WeightMatrix(a, DType.F32, rank, inFeatures);
        B = new WeightMatrix(b, DType.F32, outFeatures, rank);
    }

    public int Layer { get; }
    /// <summary>q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj.</summary>
    public string Module { get; }
    public int Rank { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public float Scaling { get; }
    public WeightMatrix A { get; }   // [r, in]
    public WeightMatrix B { get; }   // [out, r]
    /// <summary>DoRA's magnitude vector m [out] (PEFT's lora_magnitude_vector), or null for a plain LoRA.</summary>
    public float* Magnitude { get; }   // [out]
    public bool IsDora => Magnitude != null;
    /// <summary>m's elements [out]; empty for a plain LoRA.</summary>
    public Span<float> MagnitudeValues => Magnitude == null ? [] : new(Magnitude, OutFeatures);

    /// <summary>A's elements, row-major [r, in].</summary>
    public Span<float> AValues => new(A.Data, checked(Rank * InFeatures));
    /// <summary>B's elements, row-major [out, r].</summary>
    public Span<float> BValues => new(B.Data, checked(OutFeatures * Rank));

    /// <summary>The PEFT key of this module's weights, e.g. base_model.model.model.layers.0.self_attn.q_proj.</summary>
    public string PeftPrefix => LoraAdapter.PeftKeyPrefix + LoraConfig.ModuleKey(Layer, Module);

    /// <summary>ΔW = Scaling · B·A in f64, row-major [out, in] (merging, combining, tests).</summary>
    public double[] DeltaWeight()
    {
        var delta = new double[(long)OutFeatures * InFeatures];
        float* a = (float*)A.Data, b = (float*)B.Data;
        for (int o = 0; o < OutFeatures; o++)
        {
            var row = delta.AsSpan(o * InFeatures, InFeatures);
            for (int k = 0; k < Rank; k++)
            {
                double coefficient = (double)Scaling * b[(long)o * Rank + k];
                if (coefficient == 0) continue;
                float* aRow = a + (long)k * InFeatures;
                for (int i = 0; i < InFeatures; i++) row[i] += coefficient * aRow[i];
            }
        }
        return delta;
    }

    public override string ToString() => $"layer {Layer} {Module}: r={Rank} [{OutFeatures}x{Rank}]·[{Rank}x{InFeatures}] scaling {Scaling}";
}

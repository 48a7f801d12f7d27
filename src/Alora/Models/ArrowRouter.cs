namespace Alora.Models;

// Legend: E = experts (task LoRAs), r = each expert's rank, in = the projection's input features, k = top_k.

/// <summary>
/// Arrow's per-token router for one projection (PEFT's ArrowLoraLinearLayer): the projection carries the E experts'
/// A stacked [E·r, in] and B side by side [out, E·r] as one <see cref="LowRankDelta"/> of scaling 1; for each row x the
/// router scales block e of z = x·Aᵀ by cₑ(x)·sₑ, so y += Σₑ cₑ(x)·sₑ·Bₑ·Aₑ·x, where
/// <list type="bullet">
/// <item>scoreₑ = |x·pₑ| with pₑ the unit prototype of expert e (the top right singular vector of Bₑ·Aₑ);</item>
/// <item>the k largest scores (ties: the lower expert index) go through a softmax at temperature T; the rest get 0.</item>
/// </list>
/// Each row is routed on its own (f64 dots and softmax, rounded once), so a row's result does not depend on its batch.
/// </summary>
public sealed unsafe class ArrowRouter
{
    private readonly float[] _prototypes;   // [E, in]
    private readonly float[] _scalings;     // [E]

    public ArrowRouter(float[] prototypes, float[] scalings, int inFeatures, int expertRank, int topK, double temperature)
    {
        ArgumentNullException.ThrowIfNull(prototypes);
        ArgumentNullException.ThrowIfNull(scalings);
        int experts = scalings.Length;
        if (experts == 0) throw new ArgumentException("Arrow needs at least one expert", nameof(scalings));
        if (prototypes.Length != (long)experts * inFeatures) throw new ArgumentException($"prototypes must be [{experts}, {inFeatures}]", nameof(prototypes));
        if (topK < 1 || topK > experts) throw new ArgumentOutOfRangeException(nameof(topK), topK, $"top_k must lie in [1, {experts}] (the number of task adapters)");
        if (!(temperature > 0) || double.IsInfinity(temperature)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "router_temperature must be a positive finite number");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(expertRank);
        _prototypes = prototypes;
        _scalings = scalings;
        InFeatures = inFeatures;
        ExpertRank = expertRank;
        TopK = topK;
        Temperature = temperature;
    }

    public int ExpertCount => _scalings.Length;
    public int InFeatures { get; }
    public int ExpertRank { get; }
    public int TopK { get; }
    public double Temperature { get; }
    /// <summary>Expert e's unit prototype [in].</summary>
    public ReadOnlySpan<float> Prototype(int expert) => _prototypes.AsSpan(expert * InFeatures, InFeatures);
    /// <summary>Expert e's LoRA scaling sₑ (its alpha / r).</summary>
    public float Scaling(int expert) => _scalings[expert];

    /// <summary>The routing coefficients c [E] of one row x [in] (0 for experts outside the top k; they sum to 1).</summary>
    public void Coefficients(Span<double> coefficients, ReadOnlySpan<float> x)
    {
        int experts = ExpertCount;
        if (coefficients.Length != experts || x.Length != InFeatures) throw new ArgumentException($"expected c [{experts}] and x [{InFeatures}]");
        Span<double> scores = experts <= 64 ? stackalloc double[experts] : new double[experts];
        for (int e = 0; e < experts; e++)
        {
            var p = Prototype(e);
            double dot = 0;
            for (int i = 0; i < x.Length; i++) dot += (double)x[i] * p[i];
            scores[e] = Math.Abs(dot);
        }
        // Top k by score, ties to the lower index: an expert is selected when fewer than k others beat it.
        Span<bool> selected = experts <= 64 ? stackalloc bool[experts] : new bool[experts];
        double max = double.NegativeInfinity;
        for (int e = 0; e < experts; e++)
        {
            int better = 0;
            for (int f = 0; f < experts && better < TopK; f++)
                if (scores[f] > scores[e] || (scores[f] == scores[e] && f < e)) better++;
            selected[e] = better < TopK;
            if (selected[e]) max = Math.Max(max, scores[e]);
        }
        double sum = 0;
        for (int e = 0; e < experts; e++)
        {
            coefficients[e] = selected[e] ? Math.Exp((scores[e] - max) / Temperature) : 0;
            sum += coefficients[e];
        }
        for (int e = 0; e < experts; e++) coefficients[e] /= sum;
    }

    /// <summary>z [E·r] ← block e of z times cₑ(x)·sₑ, for one row with input x [in].</summary>
    public void ScaleRow(float* z, float* x)
    {
        int experts = ExpertCount;
        Span<double> c = experts <= 64 ? stackalloc double[experts] : new double[experts];
        Coefficients(c, new ReadOnlySpan<float>(x, InFeatures));
        for (int e = 0; e < experts; e++)
        {
            float factor = (float)(c[e] * _scalings[e]);
            float* block = z + (long)e * ExpertRank;
            for (int k = 0; k < ExpertRank; k++) block[k] *= factor;
        }
    }
}

using Alora.Kernels;

namespace Alora.Models;

// Legend: M = token rows, D = hidden, F = intermediate, Hq/Hkv = heads, Dq = Hq·Dh, Dkv = Hkv·Dh.

/// <summary>
/// What one decoder layer's forward asks of whoever runs it: the projections (the frozen weight plus the caller's
/// adapter side paths on the rows it adapts) and attention (inference: write K/V into the paged cache, then attend
/// over the blocks; training: dense causal attention that keeps its log-sum-exp for the backward). Everything
/// else about the block is <see cref="DecoderBlock.Forward"/>, written once for both.
/// </summary>
internal unsafe interface IDecoderBlockOps
{
    /// <summary>y[M, out] = x[M, in]·Wᵀ + bias on every row, plus the adapter side paths on the adapted rows.</summary>
    void Project(float* y, float* x, in WeightMatrix weight, float* bias, int layer, Projection projection);

    /// <summary>
    /// output[M, Dq] = causal attention of each row's query over its sequence's keys and values (query [M, Dq] and
    /// key [M, Dkv] after RoPE, value [M, Dkv]); logSumExp [M, Hq] is written when not null.
    /// </summary>
    void Attend(int layer, float* output, float* logSumExp, float* query, float* key, float* value);
}

/// <summary>
/// The buffers of one layer's forward. Inference lets <see cref="Middle"/> alias the layer input (the residual
/// stream updated in place) and <see cref="Activation"/> alias <see cref="Gate"/>, and needs no inverse RMS or
/// log-sum-exp (null); training keeps each in its own buffer because the backward reads them.
/// </summary>
internal unsafe struct DecoderBlockBuffers
{
    public float* InvRms1;      // [M] or null
    public float* Normed1;      // [M, D]
    public float* Query;        // [M, Dq] after RoPE
    public float* Key;          // [M, Dkv] after RoPE
    public float* Value;        // [M, Dkv]
    public float* Attention;    // [M, Dq]
    public float* LogSumExp;    // [M, Hq] or null
    public float* Middle;       // [M, D] residual after attention (may be the layer input)
    public float* InvRms2;      // [M] or null
    public float* Normed2;      // [M, D]
    public float* Gate;         // [M, F] before the activation
    public float* Up;           // [M, F]
    public float* Activation;   // [M, F] silu(gate)·up (may be Gate)
    public float* Projected;    // [M, D] o_proj / down_proj output (scratch)
}

/// <summary>
/// The Llama-family decoder layer (Llama, Mistral, Qwen2, Granite differ only in config: biases, multipliers,
/// sliding window): pre-norm attention and a SiLU-gated MLP, each added to the residual stream. Inference
/// (<see cref="DecoderModel"/>) and training (<c>DecoderTrainer</c>) both run this, so a change to the block is made
/// once. Every per-row step runs row by row, so a row's bits never depend on its batch (Gemm.BatchInvariant).
/// </summary>
internal static unsafe class DecoderBlock
{
    /// <summary>output[M, D] = layer(input[M, D]); output may be input, and b.Middle may be input too.</summary>
    public static void Forward(IDecoderBlockOps ops, ModelConfig c, LayerWeights w, int layer, in DecoderBlockBuffers b,
        float* input, float* output, int* positions, RopeTable rope, int m)
    {
        int d = c.HiddenSize;

        // Attention block: middle = input + rm·o(attention(rope(q), rope(k), v)).
        Elementwise.RmsNorm(b.Normed1, input, w.InputNorm, m, d, c.RmsNormEps, b.InvRms1);
        ops.Project(b.Query, b.Normed1, w.QProj, w.QBias, layer, Projection.Q);
        ops.Project(b.Key, b.Normed1, w.KProj, w.KBias, layer, Projection.K);
        ops.Project(b.Value, b.Normed1, w.VProj, w.VBias, layer, Projection.V);
        Rope.Apply(b.Query, positions, m, c.HeadCount, rope);
        Rope.Apply(b.Key, positions, m, c.KeyValueHeadCount, rope);
        ops.Attend(layer, b.Attention, b.LogSumExp, b.Query, b.Key, b.Value);
        ops.Project(b.Projected, b.Attention, w.OProj, w.OBias, layer, Projection.O);
        AddResidual(b.Middle, input, c.ResidualMultiplier, b.Projected, m, d);

        // MLP block: output = middle + rm·down(silu(gate)·up).
        Elementwise.RmsNorm(b.Normed2, b.Middle, w.PostAttentionNorm, m, d, c.RmsNormEps, b.InvRms2);
        ops.Project(b.Gate, b.Normed2, w.GateProj, w.GateBias, layer, Projection.Gate);
        ops.Project(b.Up, b.Normed2, w.UpProj, w.UpBias, layer, Projection.Up);
        int f = c.IntermediateSize;
        if (b.Activation != b.Gate)
            Buffer.MemoryCopy(b.Gate, b.Activation, (long)m * f * sizeof(float), (long)m * f * sizeof(float));
        // Row by row: a vector kernel's scalar tail rounds differently, so one call over M·F elements would make a
        // row's result depend on where it sits in the batch.
        for (int i = 0; i < m; i++)
            Elementwise.SiluMul(b.Activation + (long)i * f, b.Up + (long)i * f, f);
        ops.Project(b.Projected, b.Activation, w.DownProj, w.DownBias, layer, Projection.Down);
        AddResidual(output, b.Middle, c.ResidualMultiplier, b.Projected, m, d);
    }

    /// <summary>output[i] = input[i] + rm·projected[i], row by row (batch-invariant rounding); output may be input.</summary>
    private static void AddResidual(float* output, float* input, float residualMultiplier, float* projected, int m, int d)
    {
        if (output != input) Buffer.MemoryCopy(input, output, (long)m * d * sizeof(float), (long)m * d * sizeof(float));
        for (int i = 0; i < m; i++)
            Elementwise.Axpy(output + (long)i * d, residualMultiplier, projected + (long)i * d, d);
    }
}

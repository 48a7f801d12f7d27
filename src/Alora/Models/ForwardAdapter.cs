using Alora.Kernels;

namespace Alora.Models;

/// <summary>
/// One adapted projection: y += Scaling · (x·Aᵀ)·Bᵀ with A [r, in] and B [out, r], f32; with a DoRA magnitude
/// vector m [out] (PEFT's lora_magnitude_vector), the projection becomes m ⊙ (W + s·B·A) / ‖W + s·B·A‖ (<see cref="Dora"/>).
/// </summary>
public readonly unsafe struct LowRankDelta(WeightMatrix a, WeightMatrix b, float scaling, float* magnitude = null, ArrowRouter? router = null)
{
    public WeightMatrix A { get; } = a;
    public WeightMatrix B { get; } = b;
    public float Scaling { get; } = scaling;
    public int Rank => A.Rows;
    /// <summary>DoRA's magnitude vector [out] (f32), or null for a plain LoRA.</summary>
    public float* Magnitude { get; } = magnitude;
    public bool IsDora => Magnitude != null;
    /// <summary>Arrow's per-token router over the experts stacked in A and B (<see cref="ArrowRouter"/>), or null.</summary>
    public ArrowRouter? Router { get; } = router;
}

/// <summary>
/// What the forward pass needs of a LoRA or aLoRA adapter: its low-rank deltas by (layer, projection), and
/// for an aLoRA the invocation ids whose last occurrence switches it on. Reference identity is the adapter's
/// identity in KV lineage: keys and values computed with it are reused only by requests with the same adapter.
/// </summary>
public sealed unsafe class ForwardAdapter
{
    /// <summary>Projection modules in the order of <see cref="ModuleIndex"/> (<see cref="Projections.PeftNames"/>).</summary>
    public static IReadOnlyList<string> Modules => Projections.PeftNames;

    private readonly LowRankDelta?[,] _deltas;   // [layers, 7]

    public ForwardAdapter(string name, int layerCount, int[]? invocationTokens = null, int activationShift = 0)
    {
        if (invocationTokens is { Length: 0 })
            throw new ArgumentException($"adapter '{name}': the aLoRA invocation token list is empty; it needs at least one id", nameof(invocationTokens));
        Name = name;
        InvocationTokens = invocationTokens;
        ActivationShift = activationShift;
        _deltas = new LowRankDelta?[layerCount, Projections.All.Count];
        _doraNorms = new DoraNorm?[layerCount, Projections.All.Count];
    }

    public string Name { get; }
    /// <summary>null for a plain LoRA (adapts every row).</summary>
    public int[]? InvocationTokens { get; }
    /// <summary>Positions after the invocation start at which activation begins (1 for legacy IBM aLoRAs).</summary>
    public int ActivationShift { get; }
    public bool IsActivated => InvocationTokens is not null;
    public int LayerCount => _deltas.GetLength(0);
    public int MaxRank { get; private set; }

    public static int ModuleIndex(string module) => (int)Projections.Parse(module);

    public void Set(int layer, string module, LowRankDelta delta)
    {
        _deltas[layer, ModuleIndex(module)] = delta;
        _doraNorms[layer, ModuleIndex(module)] = null;
        HasDora |= delta.IsDora;
        MaxRank = Math.Max(MaxRank, delta.Rank);
    }

    public LowRankDelta? Get(int layer, int moduleIndex) => _deltas[layer, moduleIndex];

    public LowRankDelta? Get(int layer, Projection projection) => _deltas[layer, (int)projection];

    /// <summary>Whether any projection carries a DoRA magnitude vector.</summary>
    public bool HasDora { get; private set; }

    // DoRA's weight norms ‖W + s·B·A‖ [out] per (layer, projection), computed on first use and kept (PEFT's
    // optional DoRA cache, always on here: decode steps cannot afford an [out, in, r] product per projection).
    // Each is tied to the weight memory it was computed from, so merged or reloaded weights recompute it.
    private readonly DoraNorm?[,] _doraNorms;
    private sealed class DoraNorm(nint weight, float[] norms)
    {
        public readonly nint Weight = weight;
        public readonly float[] Norms = norms;   // pinned
    }

    /// <summary>
    /// The weight norms n = ‖W + s·B·A‖ [out] of a DoRA projection with base weight <paramref name="weight"/>,
    /// computed from the current A and B on first use and cached (pinned; the pointer stays valid while this
    /// adapter lives). After A or B change in place call <see cref="InvalidateDoraNorms"/>; until then the cached
    /// norms act as PEFT's detached constant.
    /// </summary>
    public float* DoraNorms(int layer, Projection projection, in WeightMatrix weight)
    {
        var delta = _deltas[layer, (int)projection] ?? throw new InvalidOperationException($"adapter '{Name}' has no {projection.PeftName()} on layer {layer}");
        if (!delta.IsDora) throw new InvalidOperationException($"adapter '{Name}': layer {layer} {projection.PeftName()} is a plain LoRA (no DoRA magnitude)");
        var cached = Volatile.Read(ref _doraNorms[layer, (int)projection]);
        if (cached is null || cached.Weight != (nint)weight.Data)
        {
            var norms = GC.AllocateUninitializedArray<float>(weight.Rows, pinned: true);
            fixed (float* n = norms) Dora.WeightNorms(n, weight, (float*)delta.A.Data, (float*)delta.B.Data, delta.Rank, delta.Scaling);
            cached = new DoraNorm((nint)weight.Data, norms);
            Volatile.Write(ref _doraNorms[layer, (int)projection], cached);
        }
        return (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(cached.Norms));
    }

    /// <summary>Drops the cached DoRA weight norms (after A or B changed in place, e.g. a training step).</summary>
    public void InvalidateDoraNorms()
    {
        for (int l = 0; l < _doraNorms.GetLength(0); l++)
            for (int p = 0; p < _doraNorms.GetLength(1); p++) Volatile.Write(ref _doraNorms[l, p], null);
    }
}

using Alora.Kernels;

namespace Alora.Models;

/// <summary>One adapted projection: y += Scaling · (x·Aᵀ)·Bᵀ with A [r, in] and B [out, r], f32.</summary>
public readonly struct LowRankDelta(WeightMatrix a, WeightMatrix b, float scaling)
{
    public WeightMatrix A { get; } = a;
    public WeightMatrix B { get; } = b;
    public float Scaling { get; } = scaling;
    public int Rank => A.Rows;
}

/// <summary>
/// What the forward pass needs of a LoRA or aLoRA adapter: its low-rank deltas by (layer, projection), and
/// for an aLoRA the invocation ids whose last occurrence switches it on. Reference identity is the adapter's
/// identity in KV lineage: keys and values computed with it are reused only by requests with the same adapter.
/// </summary>
public sealed class ForwardAdapter
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
        MaxRank = Math.Max(MaxRank, delta.Rank);
    }

    public LowRankDelta? Get(int layer, int moduleIndex) => _deltas[layer, moduleIndex];

    public LowRankDelta? Get(int layer, Projection projection) => _deltas[layer, (int)projection];
}

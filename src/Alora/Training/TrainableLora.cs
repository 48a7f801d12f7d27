using Alora.Adapters;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Training.Optimization;

namespace Alora.Training;

// Legend: r = rank, in = the projection's input features, out = its output features.

/// <summary>One trained projection: y += Scaling·(x·Aᵀ)·Bᵀ, with its gradient buffers of the same shapes.</summary>
public sealed unsafe class TrainableModule
{
    internal TrainableModule(int layer, int moduleIndex, int rank, int inFeatures, int outFeatures, float scaling, float* a, float* b, float* da, float* db,
        float* magnitude = null, float* dMagnitude = null, float* weightNorm = null, float* doraScale = null)
    {
        Magnitude = magnitude;
        DMagnitude = dMagnitude;
        WeightNorm = weightNorm;
        DoraScale = doraScale;
        Layer = layer;
        ModuleIndex = moduleIndex;
        Rank = rank;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Scaling = scaling;
        A = a;
        B = b;
        DA = da;
        DB = db;
    }

    public int Layer { get; }
    /// <summary>Index in <see cref="ForwardAdapter.Modules"/> (q, k, v, o, gate, up, down).</summary>
    public int ModuleIndex { get; }
    public string Module => ((Projection)ModuleIndex).PeftName();
    public int Rank { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public float Scaling { get; }
    public float* A { get; }    // [r, in]
    public float* B { get; }    // [out, r]
    public float* DA { get; }   // [r, in]
    public float* DB { get; }   // [out, r]
    /// <summary>DoRA's magnitude m [out] (PEFT's lora_magnitude_vector); null for a plain LoRA.</summary>
    public float* Magnitude { get; }    // [out]
    public float* DMagnitude { get; }   // [out]
    /// <summary>DoRA's n = ‖W + s·B·A‖ [out] of the current step (a constant of the gradient, PEFT's detach).</summary>
    public float* WeightNorm { get; }   // [out]
    /// <summary>DoRA's g = m / n [out] of the current step.</summary>
    public float* DoraScale { get; }    // [out]
    public bool IsDora => Magnitude != null;
    public Span<float> MagnitudeValues => Magnitude == null ? [] : new(Magnitude, OutFeatures);
    public Span<float> MagnitudeGradient => DMagnitude == null ? [] : new(DMagnitude, OutFeatures);

    public Span<float> AValues => new(A, Rank * InFeatures);
    public Span<float> BValues => new(B, OutFeatures * Rank);
    public Span<float> AGradient => new(DA, Rank * InFeatures);
    public Span<float> BGradient => new(DB, OutFeatures * Rank);

    /// <summary>PEFT's key prefix, e.g. base_model.model.model.layers.0.self_attn.q_proj.</summary>
    public string PeftPrefix => $"base_model.model.model.layers.{Layer}.{((Projection)ModuleIndex).Section()}.{Module}";
}

/// <summary>
/// The f32 LoRA/aLoRA factors being trained, per (layer, projection), and their gradients. Built from an
/// <see cref="LoraAdapter"/> it shares the adapter's A and B memory (an optimizer step updates the adapter in
/// place, ready to save or serve) and owns only the gradients; built from a shape it owns both.
/// <see cref="ToForwardAdapter"/> gives the inference forward a view of the same factors.
/// </summary>
public sealed unsafe class TrainableLora : IDisposable
{
    private readonly NativeSlab _slab;
    private readonly TrainableModule?[,] _modules;   // [layers, 7]
    private readonly List<TrainableModule> _list = [];

    private readonly record struct ModuleSpec(int Layer, int ModuleIndex, int Rank, float Scaling, nint A, nint B, bool Dora = false, nint Magnitude = 0);

    /// <summary>New zero factors (A and B owned here) on <paramref name="modules"/> of every layer.</summary>
    /// <param name="modules">Projection names to adapt in every layer (q_proj … down_proj).</param>
    /// <param name="invocationTokens">An aLoRA's invocation ids; null for a plain LoRA.</param>
    /// <param name="useDora">DoRA: each module also owns a magnitude vector (zero here; set it before training).</param>
    public TrainableLora(ModelConfig config, IReadOnlyList<string> modules, int rank, float scaling, int[]? invocationTokens = null, bool useDora = false)
        : this(config, invocationTokens, 0, EveryLayer(config, modules, rank, scaling, useDora))
    {
    }

    /// <summary>Trains <paramref name="adapter"/> in place: its A and B are used (not copied); gradients are allocated here.</summary>
    public TrainableLora(LoraAdapter adapter)
        : this((adapter.Arrow is null ? adapter : throw new InvalidOperationException($"adapter '{adapter.Name}' is an Arrow model: PEFT trains its task experts, not the router; train an expert folder and rebuild the Arrow model")).BaseConfig, adapter.InvocationTokens, adapter.ActivationShift, adapter.Modules.Select(m =>
            new ModuleSpec(m.Layer, ForwardAdapter.ModuleIndex(m.Module), m.Rank, m.Scaling, (nint)m.A.Data, (nint)m.B.Data, m.IsDora, (nint)m.Magnitude)).ToList())
    {
        _source = adapter;
    }

    private readonly LoraAdapter? _source;

    private TrainableLora(ModelConfig config, int[]? invocationTokens, int activationShift, IReadOnlyList<ModuleSpec> specs)
    {
        if (invocationTokens is { Length: 0 }) throw new ArgumentException("the aLoRA invocation token list is empty; it needs at least one id", nameof(invocationTokens));
        if (invocationTokens is not null && specs.Any(x => x.Dora))
            throw new ArgumentException("DoRA cannot be combined with an aLoRA (PEFT refuses use_dora with alora_invocation_tokens)", nameof(invocationTokens));
        Config = config;
        InvocationTokens = invocationTokens;
        ActivationShift = activationShift;
        _modules = new TrainableModule?[config.LayerCount, Projections.All.Count];
        long bytes = 0;
        foreach (var spec in specs)
        {
            var (outFeatures, inFeatures) = ProjectionShape(config, spec.ModuleIndex);
            long factors = NativeSlab.Align((long)spec.Rank * inFeatures * 4) + NativeSlab.Align((long)outFeatures * spec.Rank * 4);
            bytes += spec.A == 0 ? 2 * factors : factors;
            if (spec.Dora) bytes += (spec.Magnitude == 0 ? 4 : 3) * NativeSlab.Align((long)outFeatures * 4);
        }
        _slab = new NativeSlab(bytes, "trainable lora");
        foreach (var spec in specs)
        {
            if ((uint)spec.Layer >= (uint)config.LayerCount)
                throw new ArgumentException($"adapter module {ForwardAdapter.Modules[spec.ModuleIndex]} is on layer {spec.Layer}; the model has {config.LayerCount} layers (wrong base model?)", nameof(config));
            if (_modules[spec.Layer, spec.ModuleIndex] is not null)
                throw new ArgumentException($"module {ForwardAdapter.Modules[spec.ModuleIndex]} of layer {spec.Layer} is listed twice", nameof(config));
            ArgumentOutOfRangeException.ThrowIfLessThan(spec.Rank, 1, "rank");
            var (outFeatures, inFeatures) = ProjectionShape(config, spec.ModuleIndex);
            string name = $"layer {spec.Layer} {ForwardAdapter.Modules[spec.ModuleIndex]}";
            float* a = spec.A != 0 ? (float*)spec.A : _slab.TakeFloats((long)spec.Rank * inFeatures, name + " A");
            float* b = spec.B != 0 ? (float*)spec.B : _slab.TakeFloats((long)outFeatures * spec.Rank, name + " B");
            float* da = _slab.TakeFloats((long)spec.Rank * inFeatures, name + " dA"), db = _slab.TakeFloats((long)outFeatures * spec.Rank, name + " dB");
            var module = !spec.Dora
                ? new TrainableModule(spec.Layer, spec.ModuleIndex, spec.Rank, inFeatures, outFeatures, spec.Scaling, a, b, da, db)
                : new TrainableModule(spec.Layer, spec.ModuleIndex, spec.Rank, inFeatures, outFeatures, spec.Scaling, a, b, da, db,
                    spec.Magnitude != 0 ? (float*)spec.Magnitude : _slab.TakeFloats(outFeatures, name + " m"), _slab.TakeFloats(outFeatures, name + " dm"),
                    _slab.TakeFloats(outFeatures, name + " n"), _slab.TakeFloats(outFeatures, name + " g"));
            _modules[spec.Layer, spec.ModuleIndex] = module;
            _list.Add(module);
        }
    }

    private static List<ModuleSpec> EveryLayer(ModelConfig config, IReadOnlyList<string> modules, int rank, float scaling, bool dora)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rank, 1);
        var indices = modules.Select(ForwardAdapter.ModuleIndex).Distinct().Order().ToArray();
        var specs = new List<ModuleSpec>();
        for (int layer = 0; layer < config.LayerCount; layer++)
            foreach (int index in indices) specs.Add(new ModuleSpec(layer, index, rank, scaling, 0, 0, dora));
        return specs;
    }

    public ModelConfig Config { get; }
    public int[]? InvocationTokens { get; }
    /// <summary>Positions after the invocation start at which activation begins (1 for legacy IBM aLoRAs).</summary>
    public int ActivationShift { get; }
    public bool IsActivated => InvocationTokens is not null;
    public IReadOnlyList<TrainableModule> Modules => _list;
    public int MaxRank => _list.Count == 0 ? 0 : _list.Max(m => m.Rank);

    public TrainableModule? Get(int layer, int moduleIndex) => _modules[layer, moduleIndex];

    /// <summary>(out, in) of a projection, by module index.</summary>
    public static (int Out, int In) ProjectionShape(ModelConfig c, int moduleIndex)
        => (uint)moduleIndex < (uint)Projections.All.Count ? ((Projection)moduleIndex).Shape(c)
            : throw new ArgumentOutOfRangeException(nameof(moduleIndex), moduleIndex, "module index is 0..6");

    /// <summary>
    /// First adapted position of a training row: 0 for a LoRA; for an aLoRA the start of the last occurrence of
    /// the invocation in the row's full ids (PEFT's rule, plus the legacy shift); null when the invocation is
    /// absent (never adapted).
    /// </summary>
    public int? ActivationStart(ReadOnlySpan<int> inputIds) => AdapterActivation.Start(inputIds, InvocationTokens, ActivationShift);

    public void ZeroGradients()
    {
        foreach (var m in _list)
        {
            m.AGradient.Clear();
            m.BGradient.Clear();
            m.MagnitudeGradient.Clear();
        }
    }

    /// <summary>Every A and B factor with its gradient, for the optimizers (same memory: a step updates the adapter in place).</summary>
    public IReadOnlyList<TrainableTensor> TrainableTensors()
    {
        var tensors = new List<TrainableTensor>(2 * _list.Count);
        foreach (var m in _list)
        {
            tensors.Add(new TrainableTensor(m.PeftPrefix + ".lora_A.weight", m.A, m.DA, (long)m.Rank * m.InFeatures, isLoraB: false));
            tensors.Add(new TrainableTensor(m.PeftPrefix + ".lora_B.weight", m.B, m.DB, (long)m.OutFeatures * m.Rank, isLoraB: true));
            // PEFT's LoRA+ puts every 1-D parameter (DoRA's magnitude) in B's group: learning rate × ratio.
            if (m.IsDora) tensors.Add(new TrainableTensor(m.PeftPrefix + ".lora_magnitude_vector", m.Magnitude, m.DMagnitude, m.OutFeatures, isLoraB: true));
        }
        return tensors;
    }

    /// <summary>A forward-pass view of the current factors (the same memory).</summary>
    public ForwardAdapter ToForwardAdapter(string name)
    {
        var adapter = new ForwardAdapter(name, Config.LayerCount, InvocationTokens, ActivationShift);
        foreach (var m in _list)
            adapter.Set(m.Layer, m.Module, new LowRankDelta(
                new WeightMatrix(m.A, DType.F32, m.Rank, m.InFeatures), new WeightMatrix(m.B, DType.F32, m.OutFeatures, m.Rank), m.Scaling, m.Magnitude));
        return adapter;
    }

    /// <summary>Whether any module is DoRA.</summary>
    public bool HasDora => _list.Any(m => m.IsDora);

    /// <summary>
    /// DoRA, before a forward: n = ‖W + s·B·A‖ and g = m / n of every DoRA module from the current factors and
    /// <paramref name="weights"/> (PEFT recomputes the norm in every training forward and detaches it).
    /// </summary>
    public void UpdateDoraScales(ModelWeights weights)
    {
        foreach (var m in _list)
        {
            if (!m.IsDora) continue;
            var weight = weights.Layers[m.Layer].Projection(m.Module);
            Dora.WeightNorms(m.WeightNorm, weight, m.A, m.B, m.Rank, m.Scaling);
            Dora.Scales(m.DoraScale, m.Magnitude, m.WeightNorm, m.OutFeatures);
        }
    }

    /// <summary>
    /// After an optimizer step changed the factors in place: the adapter this view was built from drops the
    /// DoRA weight norms its forward view cached.
    /// </summary>
    public void ParametersChanged() => _source?.ParametersChanged();

    public void Dispose() => _slab.Dispose();
}

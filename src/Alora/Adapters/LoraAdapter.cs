using Alora.Formats;
using Alora.Models;
using Alora.Tensors;
using Alora.Tokenization;

namespace Alora.Adapters;

/// <summary>
/// A LoRA or aLoRA adapter for one base model: its PEFT config and one <see cref="LoraModule"/> per targeted
/// projection, all A/B matrices in one f32 slab the adapter owns. Loading validates the files against the base
/// model's config (layer count, target names, shapes, ranks), so a forward pass can trust every module.
/// </summary>
public sealed unsafe partial class LoraAdapter : IDisposable
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    /// <summary>PEFT's prefix before a base-model module name in adapter_model.safetensors.</summary>
    public const string PeftKeyPrefix = "base_model.model.";

    private readonly NativeSlab _slab;
    private readonly LoraModule[] _modules;
    private readonly Dictionary<(int Layer, string Module), LoraModule> _byKey = [];

    private LoraAdapter(string name, string? sourcePath, LoraConfig config, ModelConfig baseConfig, int[]? invocationTokens, int activationShift,
        IReadOnlyList<(int Layer, string Module, int Rank)> shapes)
    {
        Name = name;
        SourcePath = sourcePath;
        Config = config;
        BaseConfig = baseConfig;
        InvocationTokens = invocationTokens;
        ActivationShift = activationShift;

        long bytes = 0;
        foreach (var (layer, module, rank) in shapes)
        {
            var (outFeatures, inFeatures) = ParameterLayout.ProjectionShape(baseConfig, module);
            bytes += NativeSlab.Align((long)rank * inFeatures * sizeof(float)) + NativeSlab.Align((long)outFeatures * rank * sizeof(float));
            if (config.UseDora) bytes += NativeSlab.Align((long)outFeatures * sizeof(float));
        }
        _slab = new NativeSlab(bytes, $"adapter '{name}'");
        _modules = new LoraModule[shapes.Count];
        for (int i = 0; i < shapes.Count; i++)
        {
            var (layer, module, rank) = shapes[i];
            var (outFeatures, inFeatures) = ParameterLayout.ProjectionShape(baseConfig, module);
            float* a = _slab.TakeFloats((long)rank * inFeatures, $"{layer}.{module}.lora_A");   // [r, in]
            float* b = _slab.TakeFloats((long)outFeatures * rank, $"{layer}.{module}.lora_B");  // [out, r]
            float* magnitude = config.UseDora ? _slab.TakeFloats(outFeatures, $"{layer}.{module}.lora_magnitude_vector") : null;   // [out]
            var loraModule = new LoraModule(layer, module, config.ScalingOf(layer, module), a, b, rank, inFeatures, outFeatures, magnitude);
            _modules[i] = loraModule;
            if (!_byKey.TryAdd((layer, module), loraModule))
                throw new ArgumentException($"adapter '{name}': module {module} of layer {layer} is listed twice", nameof(shapes));
        }
    }

    public string Name { get; }
    /// <summary>The folder (or file) it was loaded from; null when built in memory.</summary>
    public string? SourcePath { get; }
    public LoraConfig Config { get; }
    /// <summary>The base model config the modules were shaped and validated against.</summary>
    public ModelConfig BaseConfig { get; }
    /// <summary>An aLoRA: it applies only from its invocation sequence on.</summary>
    public bool IsActivated => InvocationTokens is not null;
    /// <summary>The invocation ids (for legacy adapters: invocation_string tokenized without special tokens).</summary>
    public int[]? InvocationTokens { get; }
    /// <summary>Tokens after the start of the invocation at which the adapter starts: 0 (PEFT ≥ 0.18), 1 (legacy IBM).</summary>
    public int ActivationShift { get; }
    public IReadOnlyList<LoraModule> Modules => _modules;
    public long ParameterCount => _modules.Sum(m => (long)m.Rank * (m.InFeatures + m.OutFeatures) + (m.IsDora ? m.OutFeatures : 0));
    /// <summary>A DoRA adapter (use_dora): every module has a magnitude vector.</summary>
    public bool IsDora => Config.UseDora;
    /// <summary>An Arrow model (<see cref="ArrowModel"/>): the modules hold the experts stacked and the forward view routes per token; null otherwise.</summary>
    public ArrowModel? Arrow { get; internal set; }

    /// <summary>
    /// After A, B or a magnitude vector changed in place (training), drops the DoRA weight norms the forward view
    /// cached, so the next forward recomputes them from the new factors. A plain LoRA has nothing cached.
    /// </summary>
    public void ParametersChanged() => _forward?.InvalidateDoraNorms();

    public LoraModule? Get(int layer, string module) => _byKey.GetValueOrDefault((layer, module));

    private ForwardAdapter? _forward;

    /// <summary>
    /// The view the forward pass routes rows through: the same A/B memory (so in-place training updates show),
    /// created once, because its reference identity is the adapter's identity in KV-cache lineage.
    /// </summary>
    public ForwardAdapter AsForwardAdapter()
    {
        if (_forward is not null) return _forward;
        var forward = new ForwardAdapter(Name, BaseConfig.LayerCount, InvocationTokens, ActivationShift);
        foreach (var m in _modules) forward.Set(m.Layer, m.Module, new LowRankDelta(m.A, m.B, m.Scaling, m.Magnitude, Arrow?.RouterOf(m.Layer, m.Module)));
        return Interlocked.CompareExchange(ref _forward, forward, null) ?? forward;
    }

    /// <summary>The modules <paramref name="config"/> selects in <paramref name="baseConfig"/>, with their ranks.</summary>
    public static List<(int Layer, string Module, int Rank)> TargetedModules(LoraConfig config, ModelConfig baseConfig, string source)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(baseConfig);
        var result = new List<(int, string, int)>();
        for (int layer = 0; layer < baseConfig.LayerCount; layer++)
            foreach (string module in LoraConfig.ProjectionModules)
                if (config.Targets(layer, module)) result.Add((layer, module, config.RankOf(layer, module)));
        if (result.Count == 0)
        {
            string targets = config.TargetModulesRegex ?? "[" + string.Join(", ", config.TargetModules ?? []) + "]";
            throw new ModelFormatException(
                $"{source}: target_modules {targets} (layers_to_transform {(config.LayersToTransform is null ? "null" : "[" + string.Join(", ", config.LayersToTransform) + "]")}) " +
                $"selects none of the {baseConfig.LayerCount}x{LoraConfig.ProjectionModules.Count} projections of this {baseConfig.Architecture} base model ({string.Join(", ", LoraConfig.ProjectionModules)}): wrong base model?");
        }
        return result;
    }

    /// <summary>An adapter with all-zero A and B for the given modules (builders: Create, combination, GGUF import).</summary>
    internal static LoraAdapter Allocate(string name, string? sourcePath, LoraConfig config, ModelConfig baseConfig, int[]? invocationTokens, int activationShift,
        IReadOnlyList<(int Layer, string Module, int Rank)> shapes)
        => new(name, sourcePath, config, baseConfig, invocationTokens, activationShift, shapes);

    /// <summary>
    /// A new adapter initialised as PEFT does: A kaiming-uniform(a=√5) = U(±1/√in) and B zero ("true"); A ~ N(0, 1/r)
    /// and B zero ("gaussian"); both kaiming-uniform ("false", not a no-op).
    /// </summary>
    public static LoraAdapter Create(string name, LoraConfig config, ModelConfig baseConfig, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.UseDora)
            throw new ArgumentException(
                $"adapter '{name}': use_dora needs the base weights to initialise its magnitude vectors (m = ‖W + s·B·A‖ per output feature); use Create(name, config, ModelWeights, seed)", nameof(config));
        return CreateFactors(name, config, baseConfig, seed);
    }

    /// <summary>A and B as <see cref="Create(string, LoraConfig, ModelConfig, int)"/> says; DoRA magnitudes left zero.</summary>
    private static LoraAdapter CreateFactors(string name, LoraConfig config, ModelConfig baseConfig, int seed)
    {
        string source = $"adapter '{name}'";
        config.Validate(source);
        if (config.IsLegacyAlora)
            throw new ModelFormatException($"{source}: a new aLoRA needs alora_invocation_tokens (ids); invocation_string is only read from legacy IBM adapters (LoraAdapter.Load with a tokenizer)");
        var adapter = Allocate(name, null, config, baseConfig, CheckInvocation(config, baseConfig, source), 0, TargetedModules(config, baseConfig, source));
        ulong moduleSeed = (ulong)seed * 0x9E3779B97F4A7C15UL;
        foreach (var m in adapter._modules)
        {
            if (config.InitLoraWeights == "gaussian")
                FillNormal(m.AValues, 1.0 / m.Rank, new Random(unchecked((int)(moduleSeed++ ^ (moduleSeed >> 32)))));
            else
                RandomFill.Uniform((byte*)m.A.Data, DType.F32, (long)m.Rank * m.InFeatures, 0, 1f / MathF.Sqrt(m.InFeatures), moduleSeed++);
            if (config.InitLoraWeights == "false")
                RandomFill.Uniform((byte*)m.B.Data, DType.F32, (long)m.OutFeatures * m.Rank, 0, 1f / MathF.Sqrt(m.Rank), moduleSeed++);
        }
        return adapter;
    }

    private static void FillNormal(Span<float> values, double standardDeviation, Random random)
    {
        for (int i = 0; i < values.Length; i++)
        {
            // Box–Muller; 1 - NextDouble() keeps the logarithm's argument in (0, 1].
            double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
            values[i] = (float)(standardDeviation * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }

    /// <summary>The resolved invocation ids of a PEFT aLoRA (checked against the vocabulary), or null for a LoRA.</summary>
    private static int[]? CheckInvocation(LoraConfig config, ModelConfig baseConfig, string source)
    {
        if (config.AloraInvocationTokens is null) return null;
        foreach (int id in config.AloraInvocationTokens)
            if (id >= baseConfig.VocabSize)
                throw new ModelFormatException(
                    $"{source}: alora_invocation_tokens holds id {id}, but the base model's vocabulary has {baseConfig.VocabSize} tokens (wrong base model?)");
        return [.. config.AloraInvocationTokens];
    }

    /// <summary>
    /// DoRA's initial magnitude vectors, as PEFT's DoraLinearLayer.update_layer sets them: m = ‖W + s·B·A‖ per
    /// output feature, from the base weights and the current factors (so the adapted model starts equal to W + s·B·A).
    /// </summary>
    internal void InitializeMagnitudes(ModelWeights baseWeights)
    {
        foreach (var m in _modules)
        {
            if (!m.IsDora) continue;
            var weight = baseWeights.Layers[m.Layer].Projection(m.Module);
            Dora.WeightNorms(m.Magnitude, weight, (float*)m.A.Data, (float*)m.B.Data, m.Rank, m.Scaling);
        }
        ParametersChanged();
    }

    public void Dispose() => _slab.Dispose();

    public override string ToString() => $"{(IsActivated ? "aLoRA" : IsDora ? "DoRA" : "LoRA")} '{Name}' ({_modules.Length} modules, {ParameterCount} parameters)";
}

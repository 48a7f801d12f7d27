using System.Text.Json.Nodes;
using Alora.Formats;
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
    internal TrainableModule(int layer, int moduleIndex, int rank, int inFeatures, int outFeatures, float scaling, float* a, float* b, float* da, float* db)
    {
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
    public string Module => ForwardAdapter.Modules[ModuleIndex];
    public int Rank { get; }
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public float Scaling { get; }
    public float* A { get; }    // [r, in]
    public float* B { get; }    // [out, r]
    public float* DA { get; }   // [r, in]
    public float* DB { get; }   // [out, r]

    public Span<float> AValues => new(A, Rank * InFeatures);
    public Span<float> BValues => new(B, OutFeatures * Rank);
    public Span<float> AGradient => new(DA, Rank * InFeatures);
    public Span<float> BGradient => new(DB, OutFeatures * Rank);

    /// <summary>PEFT's key prefix, e.g. base_model.model.model.layers.0.self_attn.q_proj.</summary>
    public string PeftPrefix => $"base_model.model.model.layers.{Layer}.{(ModuleIndex < 4 ? "self_attn" : "mlp")}.{Module}";
}

/// <summary>
/// The f32 LoRA/aLoRA factors being trained, per (layer, projection), and their gradients. Factors and
/// gradients live in one slab; <see cref="ToForwardAdapter"/> gives the inference forward a view of the same
/// memory, so an optimizer step is seen by generation at once.
/// </summary>
public sealed unsafe class TrainableLora : IDisposable
{
    private readonly NativeSlab _slab;
    private readonly TrainableModule?[,] _modules;   // [layers, 7]
    private readonly List<TrainableModule> _list = [];

    /// <param name="modules">Projection names to adapt in every layer (q_proj … down_proj).</param>
    /// <param name="invocationTokens">An aLoRA's invocation ids; null for a plain LoRA.</param>
    public TrainableLora(ModelConfig config, IReadOnlyList<string> modules, int rank, float scaling, int[]? invocationTokens = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rank, 1);
        if (invocationTokens is { Length: 0 }) throw new ArgumentException("the aLoRA invocation token list is empty; it needs at least one id", nameof(invocationTokens));
        Config = config;
        InvocationTokens = invocationTokens;
        _modules = new TrainableModule?[config.LayerCount, ForwardAdapter.Modules.Length];
        var indices = modules.Select(ForwardAdapter.ModuleIndex).Distinct().Order().ToArray();
        long bytes = 0;
        for (int layer = 0; layer < config.LayerCount; layer++)
            foreach (int index in indices)
            {
                var (outFeatures, inFeatures) = ProjectionShape(config, index);
                bytes += 2 * NativeSlab.Align((long)rank * inFeatures * 4) + 2 * NativeSlab.Align((long)outFeatures * rank * 4);
            }
        _slab = new NativeSlab(bytes, "trainable lora");
        for (int layer = 0; layer < config.LayerCount; layer++)
            foreach (int index in indices)
            {
                var (outFeatures, inFeatures) = ProjectionShape(config, index);
                string name = $"layer {layer} {ForwardAdapter.Modules[index]}";
                var module = new TrainableModule(layer, index, rank, inFeatures, outFeatures, scaling,
                    _slab.TakeFloats((long)rank * inFeatures, name + " A"), _slab.TakeFloats((long)outFeatures * rank, name + " B"),
                    _slab.TakeFloats((long)rank * inFeatures, name + " dA"), _slab.TakeFloats((long)outFeatures * rank, name + " dB"));
                _modules[layer, index] = module;
                _list.Add(module);
            }
    }

    public ModelConfig Config { get; }
    public int[]? InvocationTokens { get; }
    public bool IsActivated => InvocationTokens is not null;
    public IReadOnlyList<TrainableModule> Modules => _list;
    public int MaxRank => _list.Count == 0 ? 0 : _list.Max(m => m.Rank);

    public TrainableModule? Get(int layer, int moduleIndex) => _modules[layer, moduleIndex];

    /// <summary>(out, in) of a projection, by module index.</summary>
    public static (int Out, int In) ProjectionShape(ModelConfig c, int moduleIndex) => moduleIndex switch
    {
        0 => (c.QueryDim, c.HiddenSize),
        1 or 2 => (c.KeyValueDim, c.HiddenSize),
        3 => (c.HiddenSize, c.QueryDim),
        4 or 5 => (c.IntermediateSize, c.HiddenSize),
        6 => (c.HiddenSize, c.IntermediateSize),
        _ => throw new ArgumentOutOfRangeException(nameof(moduleIndex), moduleIndex, "module index is 0..6"),
    };

    /// <summary>
    /// First adapted position of a training row: 0 for a LoRA; for an aLoRA the start of the last occurrence of
    /// the invocation in the row's full ids (PEFT's rule); null when the invocation is absent (never adapted).
    /// </summary>
    public int? ActivationStart(ReadOnlySpan<int> inputIds)
    {
        if (InvocationTokens is null) return 0;
        int s = AdapterActivation.LastOccurrence(inputIds, InvocationTokens);
        return s < 0 ? null : s;
    }

    public void ZeroGradients()
    {
        foreach (var m in _list)
        {
            m.AGradient.Clear();
            m.BGradient.Clear();
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
        }
        return tensors;
    }

    /// <summary>A forward-pass view of the current factors (the same memory).</summary>
    public ForwardAdapter ToForwardAdapter(string name)
    {
        var adapter = new ForwardAdapter(name, Config.LayerCount, InvocationTokens);
        foreach (var m in _list)
            adapter.Set(m.Layer, m.Module, new LowRankDelta(
                new WeightMatrix(m.A, DType.F32, m.Rank, m.InFeatures), new WeightMatrix(m.B, DType.F32, m.OutFeatures, m.Rank), m.Scaling));
        return adapter;
    }

    /// <summary>
    /// Reads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) with one rank and alpha for
    /// every module. Per-module rank/alpha patterns, DoRA and bias training are refused with the field named.
    /// </summary>
    public static TrainableLora LoadPeft(string folder, ModelConfig config)
    {
        string configPath = Path.Combine(folder, "adapter_config.json");
        var json = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject
            ?? throw new ModelFormatException($"{configPath}: expected a JSON object");
        int rank = json["r"]?.GetValue<int>() ?? throw new ModelFormatException($"{configPath}: required field 'r' is missing");
        double alpha = json["lora_alpha"]?.GetValue<double>() ?? throw new ModelFormatException($"{configPath}: required field 'lora_alpha' is missing");
        bool rslora = json["use_rslora"]?.GetValue<bool>() ?? false;
        foreach (string field in new[] { "rank_pattern", "alpha_pattern" })
            if (json[field] is JsonObject pattern && pattern.Count > 0)
                throw new ModelFormatException($"{configPath}: '{field}' has {pattern.Count} entries; this loader takes one rank and alpha for every module");
        if (json["use_dora"]?.GetValue<bool>() == true) throw new ModelFormatException($"{configPath}: 'use_dora' is true; DoRA is not supported");
        if (json["target_modules"] is not JsonArray targets)
            throw new ModelFormatException($"{configPath}: 'target_modules' must be a list of projection names, found {json["target_modules"]?.ToJsonString() ?? "nothing"}");
        int[]? invocation = json["alora_invocation_tokens"] is JsonArray ids ? ids.Select(x => x!.GetValue<int>()).ToArray() : null;
        float scaling = (float)(rslora ? alpha / Math.Sqrt(rank) : alpha / rank);
        var lora = new TrainableLora(config, targets.Select(t => t!.GetValue<string>()).ToArray(), rank, scaling, invocation);
        try
        {
            string weightsPath = Path.Combine(folder, "adapter_model.safetensors");
            using var file = SafeTensorsFile.Open(weightsPath);
            foreach (var m in lora.Modules)
            {
                Copy(file, weightsPath, m.PeftPrefix + ".lora_A.weight", m.Rank, m.InFeatures, m.A);
                Copy(file, weightsPath, m.PeftPrefix + ".lora_B.weight", m.OutFeatures, m.Rank, m.B);
            }
            return lora;
        }
        catch
        {
            lora.Dispose();
            throw;
        }
    }

    private static void Copy(SafeTensorsFile file, string path, string key, int rows, int cols, float* destination)
    {
        if (!file.Tensors.TryGetValue(key, out var info)) throw new ModelFormatException($"{path}: tensor '{key}' is missing");
        if (info.Shape.Length != 2 || info.Shape[0] != rows || info.Shape[1] != cols)
            throw new ModelFormatException($"{path}: tensor '{key}' has shape [{string.Join(", ", info.Shape)}], expected [{rows}, {cols}] (wrong base model?)");
        Kernels.Convert.ToSingle(destination, file.DataPointer(info), info.ToWeightDType(path), (long)rows * cols);
    }

    public void Dispose() => _slab.Dispose();
}

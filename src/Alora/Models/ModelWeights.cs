using Alora.Formats;
using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Models;

// Legend: D = hidden size, F = intermediate (FFN) size, V = vocab, Hq/Hkv = query/key-value heads, Dh = head size.

/// <summary>A tensor as the loaders hand it over: memory owned by a map or a slab, its dtype and row-major shape.</summary>
public readonly unsafe struct TensorRef(void* data, DType dtype, long[] shape)
{
    public void* Data { get; } = data;
    public DType DType { get; } = dtype;
    public long[] Shape { get; } = shape;
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public TensorRef WithData(void* data) => new(data, DType, Shape);

    public WeightMatrix AsMatrix() => new(Data, DType, checked((int)Shape[0]), checked((int)Shape[1]));
}

/// <summary>The weights of one decoder layer. Matrices are [out, in]; vectors are f32.</summary>
public sealed unsafe class LayerWeights
{
    public float* InputNorm;          // [D]
    public WeightMatrix QProj;        // [Hq*Dh, D]
    public WeightMatrix KProj;        // [Hkv*Dh, D]
    public WeightMatrix VProj;        // [Hkv*Dh, D]
    public WeightMatrix OProj;        // [D, Hq*Dh]
    public float* QBias, KBias, VBias, OBias;   // [out] or null
    public float* PostAttentionNorm;  // [D]
    public WeightMatrix GateProj;     // [F, D]
    public WeightMatrix UpProj;       // [F, D]
    public WeightMatrix DownProj;     // [D, F]
    public float* GateBias, UpBias, DownBias;   // [out] or null

    public ref WeightMatrix Projection(string module) => ref Weight(Projections.Parse(module));

    public ref WeightMatrix Weight(Models.Projection projection)
    {
        switch (projection)
        {
            case Models.Projection.Q: return ref QProj;
            case Models.Projection.K: return ref KProj;
            case Models.Projection.V: return ref VProj;
            case Models.Projection.O: return ref OProj;
            case Models.Projection.Gate: return ref GateProj;
            case Models.Projection.Up: return ref UpProj;
            case Models.Projection.Down: return ref DownProj;
            default: throw new ArgumentOutOfRangeException(nameof(projection));
        }
    }
}

/// <summary>
/// All weights of a model. Matrices stay in the checkpoint's memory map when its dtype is usable as is;
/// anything converted (norms to f32, GGUF q/k permuted) lives in one owned slab. GGUF's quantized matrices stay
/// quantized (the kernels read their blocks).
/// </summary>
public sealed unsafe partial class ModelWeights : IDisposable
{
    private readonly List<IDisposable> _owned = [];

    private ModelWeights(ModelConfig config, string source)
    {
        Config = config;
        Source = source;
        Layers = new LayerWeights[config.LayerCount];
        for (int i = 0; i < Layers.Length; i++) Layers[i] = new LayerWeights();
    }

    public ModelConfig Config { get; }
    public string Source { get; }
    public WeightMatrix Embedding;     // [V, D]
    public LayerWeights[] Layers { get; }
    public float* FinalNorm;           // [D]
    public WeightMatrix LmHead;        // [V, D] (the embedding when tied)

    /// <summary>Every parameter by its Hugging Face name (what adapters and tests address).</summary>
    public Dictionary<string, TensorRef> Parameters { get; } = new(StringComparer.Ordinal);

    /// <summary>Loads a Hugging Face folder (config.json + safetensors) or a .gguf file.</summary>
    public static ModelWeights Load(string path)
    {
        if (File.Exists(path) && path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)) return LoadGguf(path);
        if (Directory.Exists(path)) return LoadHuggingFace(path);
        if (File.Exists(path))
            throw new ModelFormatException($"{path}: expected a Hugging Face model folder or a .gguf file");
        throw new DirectoryNotFoundException($"model not found: {path} (expected a Hugging Face model folder or a .gguf file)");
    }

    public static ModelWeights LoadHuggingFace(string folder)
    {
        var config = ModelConfig.FromFile(Path.Combine(folder, "config.json"));
        var checkpoint = SafeTensorsCheckpoint.Open(folder);
        var weights = new ModelWeights(config, folder);
        weights._owned.Add(checkpoint);
        try
        {
            var layout = ParameterLayout.For(config);
            // Every tensor is checked against config.json before anything is allocated from the config's sizes.
            foreach (var spec in layout)
            {
                var (file, info) = checkpoint.Get(spec.Name);
                if (!info.Shape.SequenceEqual(spec.Shape))
                    throw new ModelFormatException(
                        $"{file.Path}: tensor '{spec.Name}' has shape {SafeTensorsFile.FormatShape(info.Shape)}, config.json implies {SafeTensorsFile.FormatShape(spec.Shape)}");
            }
            // Vectors (norms, biases) are converted to f32 into one slab; matrices are used in place.
            long slabBytes = layout.Where(p => p.Shape.Length == 1).Sum(p => NativeSlab.Align(p.ElementCount * 4));
            var slab = weights.Own(new NativeSlab(slabBytes, "converted weights"));
            foreach (var spec in layout)
            {
                var (file, info) = checkpoint.Get(spec.Name);
                var dtype = info.ToWeightDType(file.Path);
                var tensor = new TensorRef(file.DataPointer(info), dtype, spec.Shape);
                if (spec.Shape.Length == 1) tensor = ToF32(slab, tensor, spec.Name);
                weights.Parameters[spec.Name] = tensor;
            }
            weights.Bind();
            return weights;
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>GGUF tensor names of the llama architecture, by Hugging Face name (what llama.cpp's converter writes).</summary>
    public static string GgufName(string hfName)
    {
        if (hfName == ParameterLayout.EmbedTokens) return "token_embd.weight";
        if (hfName == ParameterLayout.FinalNorm) return "output_norm.weight";
        if (hfName == ParameterLayout.LmHead) return "output.weight";
        var parts = hfName.Split('.');   // model.layers.{i}.{self_attn|mlp}.{module}.weight or model.layers.{i}.{norm}.weight
        string layer = parts[2];
        string module = parts[^2];
        string suffix = parts[^1];
        string ggufModule = module switch
        {
            "input_layernorm" => "attn_norm",
            "post_attention_layernorm" => "ffn_norm",
            _ => Projections.TryParse(module, out var projection) ? projection.GgufName()
                : throw new ArgumentException($"no GGUF name for '{hfName}'", nameof(hfName)),
        };
        return $"blk.{layer}.{ggufModule}.{suffix}";
    }

    /// <summary>Whether llama.cpp's HF-to-GGUF conversion permutes q/k rows for this GGUF architecture (llama, granite).</summary>
    public static bool GgufPermutesQueryKey(string architecture) => architecture is "llama" or "granite";

    public static ModelWeights LoadGguf(string path)
    {
        var gguf = GgufFile.Open(path);
        ModelWeights? weights = null;
        try
        {
            var config = ModelConfig.FromGguf(gguf);
            weights = new ModelWeights(config, path);
            weights._owned.Add(gguf);
            var layout = ParameterLayout.For(config);
            // llama.cpp's converter permutes q/k rows to Meta's interleaved-RoPE order for llama and granite; qwen2
            // (NeoX-style RoPE) keeps Hugging Face's order.
            bool permuted = GgufPermutesQueryKey(gguf.GetString("general.architecture")!);
            bool IsRopePermuted(string name) => permuted && (name.EndsWith("q_proj.weight", StringComparison.Ordinal) || name.EndsWith("k_proj.weight", StringComparison.Ordinal));

            // Plan: which tensors need a converted copy (vectors to f32, q/k un-permuted). Matrices, quantized ones
            // included, are otherwise used in place in the map.
            long slabBytes = 0;
            foreach (var spec in layout)
            {
                var info = gguf.GetInfo(GgufName(spec.Name));
                // Checked before the slab is sized from the metadata's dimensions.
                if (!info.Shape.SequenceEqual(spec.Shape))
                    throw new ModelFormatException(
                        $"{path}: tensor '{info.Name}' has shape {SafeTensorsFile.FormatShape(info.Shape)} (row-major), the metadata implies {SafeTensorsFile.FormatShape(spec.Shape)}");
                var direct = gguf.DirectDType(info);
                if (spec.Shape.Length == 1) slabBytes += NativeSlab.Align(spec.ElementCount * 4);
                else if (IsRopePermuted(spec.Name)) slabBytes += NativeSlab.Align(direct.ByteCount(spec.ElementCount));
            }
            var slab = weights.Own(new NativeSlab(slabBytes, "converted GGUF weights"));

            foreach (var spec in layout)
            {
                string name = GgufName(spec.Name);
                var info = gguf.GetInfo(name);
                var direct = gguf.DirectDType(info);
                TensorRef tensor;
                if (spec.Shape.Length == 1)
                {
                    float* f = slab.TakeFloats(spec.ElementCount, spec.Name);
                    gguf.ReadAsFloats(info, f);
                    tensor = new TensorRef(f, DType.F32, spec.Shape);
                }
                else
                {
                    tensor = new TensorRef(gguf.DataPointer(info), direct, spec.Shape);
                }
                if (IsRopePermuted(spec.Name))
                {
                    int heads = spec.Name.Contains("q_proj", StringComparison.Ordinal) ? config.HeadCount : config.KeyValueHeadCount;
                    tensor = UnpermuteRope(slab, tensor, heads, spec.Name);
                }
                weights.Parameters[spec.Name] = tensor;
            }
            weights.Bind();
            return weights;
        }
        catch
        {
            if (weights is null) gguf.Dispose();
            else weights.Dispose();
            throw;
        }
    }

    /// <summary>
    /// GGUF (Meta) q/k rows pair up adjacent features (2i, 2i+1) per head; Hugging Face's rotate-half layout
    /// pairs (i, i + Dh/2). Row 2i + j of a head in GGUF is row j·Dh/2 + i in Hugging Face order.
    /// </summary>
    /// <remarks>Rows move whole, so a quantized matrix (each row a whole number of blocks) is permuted the same way.</remarks>
    private static TensorRef UnpermuteRope(NativeSlab slab, TensorRef source, int heads, string name)
    {
        int rows = (int)source.Shape[0], cols = (int)source.Shape[1];
        int headDim = rows / heads, half = headDim / 2;
        long rowBytes = source.DType.RowBytes(cols);
        byte* src = (byte*)source.Data;
        byte* dst = slab.Take(rows * rowBytes, name);
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                {
                    long from = (long)h * headDim + 2 * i + j;
                    long to = (long)h * headDim + j * half + i;
                    Buffer.MemoryCopy(src + from * rowBytes, dst + to * rowBytes, rowBytes, rowBytes);
                }
        return source.WithData(dst);
    }

    private static TensorRef ToF32(NativeSlab slab, TensorRef tensor, string name)
    {
        long n = tensor.Shape.Aggregate(1L, (a, b) => a * b);
        float* f = slab.TakeFloats(n, name);
        Kernels.Convert.ToSingle(f, tensor.Data, tensor.DType, n);
        return new TensorRef(f, DType.F32, tensor.Shape);
    }

    /// <summary>A model of the config's exact shape with random weights (benchmarks, shape tests).</summary>
    public static ModelWeights CreateRandom(ModelConfig config, DType dtype, int seed = 0)
    {
        var weights = new ModelWeights(config, "random");
        try
        {
            var layout = ParameterLayout.For(config);
            long bytes = layout.Sum(p => NativeSlab.Align(p.ElementCount * (p.Shape.Length == 1 ? 4 : dtype.ByteSize())));
            var slab = weights.Own(new NativeSlab(bytes, "random weights"));
            int index = 0;
            foreach (var spec in layout)
            {
                bool vector = spec.Shape.Length == 1;
                var tensorDType = vector ? DType.F32 : dtype;
                byte* data = slab.Take(spec.ElementCount * tensorDType.ByteSize(), spec.Name);
                bool isNorm = spec.Name.EndsWith("norm.weight", StringComparison.Ordinal);
                // Norm gains 1, everything else small uniform noise: the activations stay finite at any depth.
                float scale = isNorm ? 0 : vector ? 0.01f : 1f / MathF.Sqrt(spec.Shape[1]);
                RandomFill.Uniform(data, tensorDType, spec.ElementCount, isNorm ? 1f : 0f, scale, (ulong)(seed * 1000003 + index++));
                weights.Parameters[spec.Name] = new TensorRef(data, tensorDType, spec.Shape);
            }
            weights.Bind();
            return weights;
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    private readonly HashSet<string> _writableProjections = new(StringComparer.Ordinal);

    /// <summary>
    /// The projection's matrix, first replaced (once) by a writable f32 copy in a slab this ModelWeights owns, so
    /// adapter merging can change it: the original may be a read-only memory map or bf16. Parameters follows.
    /// </summary>
    public ref WeightMatrix WritableProjection(int layer, string module)
    {
        ref WeightMatrix matrix = ref Layers[layer].Projection(module);
        string name = ParameterLayout.ProjectionName(layer, module) + ".weight";
        if (_writableProjections.Add(name))
        {
            long count = (long)matrix.Rows * matrix.Cols;
            var slab = Own(new NativeSlab(count * sizeof(float), "writable " + name));
            float* copy = slab.TakeFloats(count, name);   // [out, in]
            Kernels.Convert.ToSingle(copy, matrix.Data, matrix.DType, count);
            matrix = new WeightMatrix(copy, DType.F32, matrix.Rows, matrix.Cols);
            Parameters[name] = new TensorRef(copy, DType.F32, [matrix.Rows, matrix.Cols]);
        }
        return ref matrix;
    }

    private T Own<T>(T resource) where T : IDisposable
    {
        _owned.Add(resource);
        return resource;
    }

    /// <summary>Points the typed fields at the loaded parameters.</summary>
    private void Bind()
    {
        Embedding = Parameters[ParameterLayout.EmbedTokens].AsMatrix();
        FinalNorm = (float*)Parameters[ParameterLayout.FinalNorm].Data;
        LmHead = Config.TieWordEmbeddings ? Embedding : Parameters[ParameterLayout.LmHead].AsMatrix();
        float* Vector(string name) => Parameters.TryGetValue(name, out var t) ? (float*)t.Data : null;
        for (int i = 0; i < Layers.Length; i++)
        {
            var layer = Layers[i];
            string p = ParameterLayout.LayerPrefix(i);
            layer.InputNorm = Vector(p + "input_layernorm.weight");
            layer.PostAttentionNorm = Vector(p + "post_attention_layernorm.weight");
            foreach (var module in ParameterLayout.AttentionProjections.Concat(ParameterLayout.MlpProjections))
                layer.Projection(module) = Parameters[ParameterLayout.ProjectionName(i, module) + ".weight"].AsMatrix();
            layer.QBias = Vector(ParameterLayout.ProjectionName(i, "q_proj") + ".bias");
            layer.KBias = Vector(ParameterLayout.ProjectionName(i, "k_proj") + ".bias");
            layer.VBias = Vector(ParameterLayout.ProjectionName(i, "v_proj") + ".bias");
            layer.OBias = Vector(ParameterLayout.ProjectionName(i, "o_proj") + ".bias");
            layer.GateBias = Vector(ParameterLayout.ProjectionName(i, "gate_proj") + ".bias");
            layer.UpBias = Vector(ParameterLayout.ProjectionName(i, "up_proj") + ".bias");
            layer.DownBias = Vector(ParameterLayout.ProjectionName(i, "down_proj") + ".bias");
        }
    }

    public void Dispose()
    {
        foreach (var resource in Enumerable.Reverse(_owned)) resource.Dispose();
        _owned.Clear();
    }
}

using System.Text.RegularExpressions;
using Alora.Formats;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Adapters;

// Legend: r = rank, in/out = a projection's features, Dh = head size, Hq/Hkv = query/key-value heads.

/// <summary>
/// llama.cpp's GGUF LoRA adapter format, as convert_lora_to_gguf.py writes it and llama-adapter.cpp reads it:
/// <list type="bullet">
/// <item>metadata general.architecture, general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (f32),
/// and for an aLoRA adapter.alora.invocation_tokens (uint32 array);</item>
/// <item>tensors blk.N.{attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down}.weight.lora_a [r, in] and
/// .lora_b [out, r] (row-major; ggml dims reversed), f32;</item>
/// <item>for architectures whose base conversion permutes q/k rows to Meta's interleaved RoPE layout (llama,
/// granite), lora_b of q_proj and k_proj gets the same row permutation, so B·A lines up with the GGUF weight.</item>
/// </list>
/// llama.cpp scales every module by alpha / r with one file-wide alpha. Where the adapter's per-module scaling
/// (rsLoRA, rank_pattern, alpha_pattern) is not alpha/r for one alpha, the ratio is folded into lora_b.
/// </summary>
public static class GgufLoraExport
{
    private static readonly Regex s_tensorName = new(@"^blk\.(?<layer>\d+)\.(?<name>[a-z_]+)\.weight\.lora_(?<ab>[ab])$", RegexOptions.CultureInvariant);


    /// <summary>llama.cpp's architecture name for a base model family (what its HF converter writes).</summary>
    public static string ArchitectureOf(ModelConfig baseConfig)
    {
        ArgumentNullException.ThrowIfNull(baseConfig);
        return baseConfig.Architecture switch
        {
            ModelArchitecture.Llama or ModelArchitecture.Mistral => "llama",
            ModelArchitecture.Granite => "granite",
            ModelArchitecture.Qwen2 => "qwen2",
            _ => throw new ArgumentOutOfRangeException(nameof(baseConfig), baseConfig.Architecture, "no llama.cpp architecture for this model family"),
        };
    }

    /// <summary>Whether llama.cpp's converter permutes q/k rows into Meta's interleaved-RoPE layout for this architecture.</summary>
    public static bool PermutesQueryKey(string architecture) => ModelWeights.GgufPermutesQueryKey(architecture);

    public static string TensorName(int layer, string module, char ab) => $"blk.{layer}.{Projections.Parse(module).GgufName()}.weight.lora_{ab}";

    /// <summary>The tensor types <see cref="Export"/> writes (convert_lora_to_gguf.py's --outtype f32, f16, bf16).</summary>
    public static GgmlType ParseOutType(string outType) => outType switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        _ => throw new ArgumentException($"output type '{outType}' is not supported; expected f32, f16 or bf16", nameof(outType)),
    };

    /// <param name="architecture">llama.cpp's name for the base architecture; null derives it from the base config. It must match the base model.</param>
    /// <param name="outType">The type of the lora_a / lora_b tensors: F32 (default), F16 or BF16 (rounded to nearest even).</param>
    public static void Export(LoraAdapter adapter, string ggufPath, string? architecture = "llama", GgmlType outType = GgmlType.F32)
    {
        if (outType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new ArgumentException($"GGUF LoRA tensors are written as F32, F16 or BF16, not {outType}", nameof(outType));
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(ggufPath);
        string expected = ArchitectureOf(adapter.BaseConfig);
        architecture ??= expected;
        if (architecture != expected)
            throw new ArgumentException(
                $"adapter '{adapter.Name}' is for a {adapter.BaseConfig.Architecture} base model, which llama.cpp names '{expected}', not '{architecture}' (llama.cpp refuses adapters whose architecture differs from the model's)", nameof(architecture));
        if (adapter.Arrow is not null) LoraMerge.RefuseActivated(adapter, "be exported to GGUF");
        if (adapter.IsDora)
            throw new InvalidOperationException(
                $"adapter '{adapter.Name}' is a DoRA adapter (use_dora): llama.cpp's LoRA format holds only lora_a/lora_b and applies W + s·B·A, with no DoRA magnitude; merge it into the model (merge-and-unload) and convert the merged model instead");
        if (adapter.ActivationShift != 0)
            throw new InvalidOperationException(
                $"adapter '{adapter.Name}' is a legacy IBM aLoRA (it activates one token after its invocation starts); llama.cpp's aLoRA activates at the start of the invocation, so the export would change its behaviour. Re-save it with alora_invocation_tokens first.");
        if (adapter.Modules.Count == 0) throw new InvalidOperationException($"adapter '{adapter.Name}' has no modules to export");

        // One alpha for the file: llama.cpp scales by alpha / r. The first module fixes it; others fold the rest into B.
        var firstModule = adapter.Modules[0];
        double alpha = (double)firstModule.Scaling * firstModule.Rank;
        if (alpha == 0) alpha = firstModule.Rank;   // alpha 0 would mean "scale 1" to llama.cpp
        bool permute = PermutesQueryKey(architecture);

        var metadata = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", architecture),
            new("general.type", "adapter"),
            new("general.name", adapter.Name),
            new("adapter.type", "lora"),
            new("adapter.lora.alpha", (float)alpha),
        };
        if (adapter.InvocationTokens is { } tokens)
            metadata.Add(new("adapter.alora.invocation_tokens", tokens.Select(t => checked((uint)t)).ToArray()));

        var tensors = new List<GgufTensorToWrite>();
        foreach (var m in adapter.Modules)
        {
            float fold = (float)(m.Scaling * m.Rank / alpha);
            float[] b = m.BValues.ToArray();   // [out, r]
            if (fold != 1f) for (int i = 0; i < b.Length; i++) b[i] *= fold;
            if (permute && m.Module is "q_proj" or "k_proj")
                b = PermuteRows(b, m.OutFeatures, m.Rank, m.Module == "q_proj" ? adapter.BaseConfig.HeadCount : adapter.BaseConfig.KeyValueHeadCount, toGguf: true);
            tensors.Add(Tensor(TensorName(m.Layer, m.Module, 'a'), [m.Rank, m.InFeatures], m.AValues.ToArray(), outType));
            tensors.Add(Tensor(TensorName(m.Layer, m.Module, 'b'), [m.OutFeatures, m.Rank], b, outType));
        }
        GgufWriter.Write(ggufPath, metadata, tensors);
    }

    private static GgufTensorToWrite Tensor(string name, long[] shape, float[] values, GgmlType type)
    {
        if (type == GgmlType.F32) return GgufTensorToWrite.FromFloats(name, shape, values);
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
        {
            ushort bits = type == GgmlType.F16 ? Half16.SingleToHalf(values[i]) : Half16.SingleToBFloat16(values[i]);
            bytes[2 * i] = (byte)bits;
            bytes[2 * i + 1] = (byte)(bits >> 8);
        }
        return new GgufTensorToWrite(name, shape, type, bytes);
    }

    /// <summary>
    /// Reads a GGUF LoRA adapter back (undoing the q/k permutation) and validates it against the base model. The
    /// config it builds has lora_alpha = the file's alpha, so each module's scaling is alpha / r as in llama.cpp.
    /// </summary>
    public static unsafe LoraAdapter Read(string ggufPath, ModelConfig baseConfig, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(baseConfig);
        using var gguf = GgufFile.Open(ggufPath);
        string? generalType = gguf.GetString("general.type");
        if (generalType != "adapter")
            throw new ModelFormatException($"{ggufPath}: general.type is {(generalType is null ? "missing" : $"\"{generalType}\"")}; expected \"adapter\" (is this a model rather than an adapter?)");
        string? adapterType = gguf.GetString("adapter.type");
        if (adapterType != "lora")
            throw new ModelFormatException($"{ggufPath}: adapter.type is {(adapterType is null ? "missing" : $"\"{adapterType}\"")}; expected \"lora\"");
        string expected = ArchitectureOf(baseConfig);
        string? architecture = gguf.GetString("general.architecture");
        if (architecture != expected)
            throw new ModelFormatException($"{ggufPath}: general.architecture is \"{architecture}\", but the base model is '{expected}': wrong base model?");
        double alpha = gguf.GetFloat("adapter.lora.alpha") ?? 0;
        int[]? invocation = gguf.GetInt32Array("adapter.alora.invocation_tokens");
        if (invocation is { Length: 0 })
            throw new ModelFormatException($"{ggufPath}: adapter.alora.invocation_tokens is empty; expected the invocation ids");

        var pairs = new SortedDictionary<(int Layer, int ModuleIndex), (GgufTensorInfo? A, GgufTensorInfo? B)>();
        var moduleByGguf = Projections.All.ToDictionary(p => p.GgufName(), p => p.PeftName(), StringComparer.Ordinal);
        foreach (var info in gguf.TensorOrder)
        {
            var match = s_tensorName.Match(info.Name);
            if (!match.Success || !moduleByGguf.TryGetValue(match.Groups["name"].Value, out string? module))
                throw new ModelFormatException($"{ggufPath}: unexpected tensor '{info.Name}' (expected blk.N.{{attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down}}.weight.lora_a / lora_b)");
            int layer = int.Parse(match.Groups["layer"].Value, System.Globalization.CultureInfo.InvariantCulture);
            if (layer >= baseConfig.LayerCount)
                throw new ModelFormatException($"{ggufPath}: tensor '{info.Name}' is for layer {layer}, but the base model has {baseConfig.LayerCount} layers: wrong base model?");
            var key = (layer, LoraConfig.ModuleIndex(module));
            var pair = pairs.GetValueOrDefault(key);
            pairs[key] = match.Groups["ab"].Value == "a" ? (info, pair.B) : (pair.A, info);
        }
        if (pairs.Count == 0) throw new ModelFormatException($"{ggufPath}: the adapter holds no LoRA tensors");

        var shapes = new List<(int Layer, string Module, int Rank)>();
        foreach (var ((layer, moduleIndex), (a, b)) in pairs)
        {
            string module = LoraConfig.ProjectionModules[moduleIndex];
            if (a is null || b is null)
                throw new ModelFormatException($"{ggufPath}: {TensorName(layer, module, a is null ? 'a' : 'b')} is missing (its partner is present)");
            var (outFeatures, inFeatures) = ParameterLayout.ProjectionShape(baseConfig, module);
            long[] shapeA = a.Shape, shapeB = b.Shape;
            if (shapeA.Length != 2 || shapeB.Length != 2 || shapeA[1] != inFeatures || shapeB[0] != outFeatures || shapeA[0] != shapeB[1])
                throw new ModelFormatException(
                    $"{ggufPath}: {a.Name} is {SafeTensorsFile.FormatShape(shapeA)} and {b.Name} is {SafeTensorsFile.FormatShape(shapeB)} (row-major); expected [r, {inFeatures}] and [{outFeatures}, r]: wrong base model or rank mismatch?");
            shapes.Add((layer, module, (int)shapeA[0]));
        }

        int rank = shapes.GroupBy(s => s.Rank).OrderByDescending(g => g.Count()).First().Key;
        var rankPattern = shapes.Where(s => s.Rank != rank)
            .ToDictionary(s => Regex.Escape(LoraConfig.ModuleKey(s.Layer, s.Module)), s => s.Rank, StringComparer.Ordinal);
        // alpha 0 means "scale 1" to llama.cpp: alpha = r per module expresses that.
        var alphaPattern = alpha == 0 ? rankPattern.ToDictionary(kv => kv.Key, kv => (double)kv.Value, StringComparer.Ordinal) : [];
        var config = new LoraConfig
        {
            R = rank,
            LoraAlpha = alpha == 0 ? rank : alpha,
            TargetModules = shapes.Select(s => s.Module).Distinct().OrderBy(LoraConfig.ModuleIndex).ToList(),
            RankPattern = rankPattern,
            AlphaPattern = alphaPattern,
            AloraInvocationTokens = invocation,
        }.SelectingExactly(shapes.Select(s => (s.Layer, s.Module)).ToList(), baseConfig);
        config.Validate(ggufPath);

        var adapter = LoraAdapter.Allocate(name ?? Path.GetFileNameWithoutExtension(ggufPath), ggufPath, config, baseConfig, invocation, 0, shapes);
        try
        {
            bool permute = PermutesQueryKey(expected);
            foreach (var m in adapter.Modules)
            {
                var (a, b) = pairs[(m.Layer, LoraConfig.ModuleIndex(m.Module))];
                gguf.ReadAsFloats(a!, (float*)m.A.Data);
                gguf.ReadAsFloats(b!, (float*)m.B.Data);
                if (permute && m.Module is "q_proj" or "k_proj")
                {
                    int heads = m.Module == "q_proj" ? baseConfig.HeadCount : baseConfig.KeyValueHeadCount;
                    PermuteRows(m.BValues.ToArray(), m.OutFeatures, m.Rank, heads, toGguf: false).CopyTo(m.BValues);
                }
            }
            return adapter;
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The q/k row permutation of llama.cpp's base conversion: within each head, Hugging Face row j·Dh/2 + i
    /// (rotate-half pairs) becomes GGUF row 2i + j (interleaved pairs). <paramref name="toGguf"/> false inverts it.
    /// </summary>
    public static float[] PermuteRows(float[] matrix, int rows, int cols, int heads, bool toGguf)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
            throw new ArgumentException($"cannot permute {rows} rows over {heads} heads (each head needs an even number of rows)");
        int headDim = rows / heads, half = headDim / 2;
        var result = new float[matrix.Length];
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < 2; j++)
                for (int i = 0; i < half; i++)
                {
                    int hfRow = h * headDim + j * half + i;
                    int ggufRow = h * headDim + 2 * i + j;
                    int from = toGguf ? hfRow : ggufRow, to = toGguf ? ggufRow : hfRow;
                    Array.Copy(matrix, (long)from * cols, result, (long)to * cols, cols);
                }
        return result;
    }
}

using Alora.Formats;
using Alora.Tensors;

namespace Alora.Models;

// Legend: ne[0] = a tensor's row length (GGUF's innermost dimension), QK = a type's block length.

/// <summary>
/// `alora quantize`: rewrites a llama-architecture GGUF with its matrices quantized (Alora's re-implementation of
/// ggml's reference quantizers, <see cref="Quantizer"/>), the metadata kept, the file type updated. A scheme is one
/// type for every matrix (Q8_0, Q4_0, …, Q6_K) or one of llama.cpp's mixes without an importance matrix:
/// Q4_K_M / Q5_K_M (Q6_K for the output matrix, or for token_embd when the embedding is tied, and for attn_v and
/// ffn_down in the layers llama.cpp's use_more_bits picks), Q4_K_S / Q5_K_S (the base type everywhere but the
/// output matrix). A matrix whose rows are not whole blocks falls back as llama.cpp does (Q4_K → Q5_0, Q5_K → Q5_1,
/// Q6_K → Q8_0, then F16). Vectors (norms, biases) stay F32.
/// </summary>
public static unsafe class GgufQuantize
{
    /// <summary>The schemes `--type` accepts.</summary>
    public static readonly string[] Schemes = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M"];

    /// <summary>What was written: the type each tensor got.</summary>
    public sealed record Report(string Output, IReadOnlyDictionary<string, GgmlType> Types, long InputBytes, long OutputBytes);

    public static Report Write(string inputPath, string outputPath, string scheme)
    {
        string normalized = scheme.ToUpperInvariant();
        if (!Schemes.Contains(normalized))
            throw new ArgumentException($"quantization type '{scheme}': expected one of {string.Join(", ", Schemes)}", nameof(scheme));
        if (!inputPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"{inputPath}: alora quantize reads a .gguf file (F32, F16, BF16 or already quantized tensors)", nameof(inputPath));
        using var input = GgufFile.Open(inputPath);
        int layers = (int)(input.GetInteger((input.GetString("general.architecture") ?? "llama") + ".block_count")
            ?? throw new ModelFormatException($"{inputPath}: metadata '{input.GetString("general.architecture")}.block_count' is missing"));
        bool hasOutput = input.Tensors.ContainsKey("output.weight");
        var types = new Dictionary<string, GgmlType>(StringComparer.Ordinal);
        var tensors = new List<GgufTensorToWrite>();
        long inputBytes = 0, outputBytes = 0;
        foreach (var info in input.TensorOrder)
        {
            var dtype = input.DirectDType(info);
            inputBytes += dtype.ByteCount(info.ElementCount);
            float[] values = input.ReadFloats(info.Name);
            GgufTensorToWrite tensor;
            if (info.Dimensions.Length < 2)
            {
                tensor = GgufTensorToWrite.FromFloats(info.Name, info.Shape, values);
            }
            else
            {
                DType target = Fallback(TypeFor(normalized, info.Name, layers, hasOutput), info.Dimensions[0]) ?? DType.F16;
                tensor = target == DType.F16
                    ? new GgufTensorToWrite(info.Name, info.Shape, GgmlType.F16, ToHalf(values))
                    : new GgufTensorToWrite(info.Name, info.Shape, GgufFile.ToGgmlType(target), Quantizer.Quantize(values, target));
            }
            types[info.Name] = tensor.Type;
            outputBytes += tensor.Data.Length;
            tensors.Add(tensor);
        }
        var metadata = input.Metadata.Where(kv => kv.Key is not ("general.file_type" or "general.quantization_version")).ToList();
        metadata.Add(new("general.file_type", FileType(normalized)));
        metadata.Add(new("general.quantization_version", 2u));
        GgufWriter.Write(outputPath, metadata, tensors);
        return new Report(outputPath, types, inputBytes, outputBytes);
    }

    /// <summary>The type a matrix gets under a scheme (before the row-length fallback).</summary>
    public static DType TypeFor(string scheme, string name, int layers, bool hasOutput)
    {
        bool isOutput = name == "output.weight" || (!hasOutput && name == "token_embd.weight");
        switch (scheme)
        {
            case "Q4_K_S" or "Q5_K_S":
                return isOutput ? DType.Q6_K : Enum.Parse<DType>(scheme[..4]);
            case "Q4_K_M" or "Q5_K_M":
                if (isOutput) return DType.Q6_K;
                if ((name.EndsWith(".attn_v.weight", StringComparison.Ordinal) || name.EndsWith(".ffn_down.weight", StringComparison.Ordinal))
                    && UseMoreBits(LayerOf(name), layers))
                    return DType.Q6_K;
                return Enum.Parse<DType>(scheme[..4]);
            default:
                return Enum.Parse<DType>(scheme);
        }
    }

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between.</summary>
    private static bool UseMoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private static int LayerOf(string name)
        => name.StartsWith("blk.", StringComparison.Ordinal) && int.TryParse(name.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture, out int layer) ? layer : 0;

    /// <summary>llama.cpp's fallbacks for rows that are not whole blocks; null means F16.</summary>
    internal static DType? Fallback(DType type, long rowLength)
    {
        if (rowLength % type.BlockLength() == 0) return type;
        DType? next = type switch { DType.Q4_K => DType.Q5_0, DType.Q5_K => DType.Q5_1, DType.Q6_K => DType.Q8_0, _ => null };
        return next is DType n && rowLength % n.BlockLength() == 0 ? n : null;
    }

    private static byte[] ToHalf(float[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), Half16.SingleToHalf(values[i]));
        return bytes;
    }

    /// <summary>llama_ftype of a scheme.</summary>
    private static uint FileType(string scheme) => scheme switch
    {
        "Q4_0" => 2, "Q4_1" => 3, "Q8_0" => 7, "Q5_0" => 8, "Q5_1" => 9,
        "Q4_K_S" or "Q4_K" => 14, "Q4_K_M" => 15, "Q5_K_S" or "Q5_K" => 16, "Q5_K_M" => 17, "Q6_K" => 18,
        _ => 0,
    };
}

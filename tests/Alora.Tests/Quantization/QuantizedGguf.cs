using Alora.Formats;
using Alora.Tensors;

namespace Alora.Tests.Quantization;

/// <summary>
/// Test GGUF files: a copy of a GGUF with chosen tensors quantized by llama.cpp's quantizer, its dequantized f32
/// twin (the same values as f32), and a random llama model of any width written from scratch.
/// </summary>
internal static unsafe class QuantizedGguf
{
    /// <summary>
    /// Writes <paramref name="quantizedPath"/> (2-D tensors in the type <paramref name="typeFor"/> picks, when their rows are
    /// whole blocks; the rest as in the source, as f32) and <paramref name="twinPath"/> (every tensor as f32, the quantized
    /// ones holding their dequantized values). Returns the types written.
    /// </summary>
    public static Dictionary<string, DType> Write(string sourcePath, string quantizedPath, string twinPath, Func<GgufTensorInfo, DType?> typeFor)
    {
        using var source = GgufFile.Open(sourcePath);
        var quantized = new List<GgufTensorToWrite>();
        var twin = new List<GgufTensorToWrite>();
        var types = new Dictionary<string, DType>();
        foreach (var info in source.TensorOrder)
        {
            float[] values = source.ReadFloats(info.Name);
            DType? type = info.Dimensions.Length == 2 ? typeFor(info) : null;
            if (type is DType t && info.Dimensions[0] % t.BlockLength() == 0)
            {
                byte[] blocks = GgmlReference.Quantize(t, values, (int)info.Dimensions[0]);
                quantized.Add(new GgufTensorToWrite(info.Name, info.Shape, GgufFile.ToGgmlType(t), blocks));
                var dequantized = new float[values.Length];
                fixed (byte* b = blocks)
                fixed (float* d = dequantized) QuantBlocks.Dequantize(d, b, t, values.Length);
                twin.Add(GgufTensorToWrite.FromFloats(info.Name, info.Shape, dequantized));
                types[info.Name] = t;
            }
            else
            {
                quantized.Add(GgufTensorToWrite.FromFloats(info.Name, info.Shape, values));
                twin.Add(GgufTensorToWrite.FromFloats(info.Name, info.Shape, values));
                types[info.Name] = DType.F32;
            }
        }
        GgufWriter.Write(quantizedPath, source.Metadata, quantized);
        GgufWriter.Write(twinPath, source.Metadata, twin);
        return types;
    }

    /// <summary>
    /// A random-weight llama model as an f32 GGUF, with stories260K's tokenizer (vocabulary 512): hidden size
    /// <paramref name="hidden"/>, FFN size <paramref name="ffn"/>, head size 32, and an untied output.weight.
    /// </summary>
    public static void WriteRandomLlama(string path, int hidden, int ffn, int layers, int seed)
    {
        using var stories = GgufFile.Open(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"));
        int heads = hidden / 32, kvHeads = Math.Max(1, heads / 2), vocab = 512;
        var metadata = stories.Metadata.Where(kv => kv.Key.StartsWith("tokenizer.", StringComparison.Ordinal) || kv.Key.StartsWith("general.", StringComparison.Ordinal))
            .Concat(new Dictionary<string, object>
            {
                ["llama.context_length"] = 256u,
                ["llama.embedding_length"] = (uint)hidden,
                ["llama.feed_forward_length"] = (uint)ffn,
                ["llama.attention.head_count"] = (uint)heads,
                ["llama.attention.head_count_kv"] = (uint)kvHeads,
                ["llama.block_count"] = (uint)layers,
                ["llama.rope.dimension_count"] = 32u,
                ["llama.attention.layer_norm_rms_epsilon"] = 1e-5f,
            }).ToList();
        var random = new Random(seed);
        GgufTensorToWrite Matrix(string name, int rows, int cols)
        {
            var v = new float[rows * cols];
            float scale = 1.5f / MathF.Sqrt(cols);
            for (int i = 0; i < v.Length; i++) v[i] = (float)(random.NextDouble() * 2 - 1) * scale;
            return GgufTensorToWrite.FromFloats(name, [rows, cols], v);
        }
        GgufTensorToWrite Norm(string name)
        {
            var v = new float[hidden];
            for (int i = 0; i < v.Length; i++) v[i] = 1f + (float)(random.NextDouble() - 0.5) * 0.2f;
            return GgufTensorToWrite.FromFloats(name, [hidden], v);
        }
        var tensors = new List<GgufTensorToWrite> { Matrix("token_embd.weight", vocab, hidden), Norm("output_norm.weight"), Matrix("output.weight", vocab, hidden) };
        for (int l = 0; l < layers; l++)
        {
            tensors.Add(Matrix($"blk.{l}.attn_q.weight", hidden, hidden));
            tensors.Add(Matrix($"blk.{l}.attn_k.weight", kvHeads * 32, hidden));
            tensors.Add(Matrix($"blk.{l}.attn_v.weight", kvHeads * 32, hidden));
            tensors.Add(Matrix($"blk.{l}.attn_output.weight", hidden, hidden));
            tensors.Add(Norm($"blk.{l}.attn_norm.weight"));
            tensors.Add(Matrix($"blk.{l}.ffn_gate.weight", ffn, hidden));
            tensors.Add(Matrix($"blk.{l}.ffn_down.weight", hidden, ffn));
            tensors.Add(Matrix($"blk.{l}.ffn_up.weight", ffn, hidden));
            tensors.Add(Norm($"blk.{l}.ffn_norm.weight"));
        }
        GgufWriter.Write(path, metadata, tensors);
    }

    /// <summary>llama.cpp's Q4_K_M choice for a llama model without an importance matrix: Q6_K for output.weight and for
    /// attn_v / ffn_down in the first and last layers' halves that llama.cpp's use_more_bits picks; Q4_K elsewhere.</summary>
    public static DType Q4KMedium(GgufTensorInfo info, int layers)
    {
        if (info.Name == "output.weight") return DType.Q6_K;
        if (info.Name.EndsWith("attn_v.weight", StringComparison.Ordinal) || info.Name.EndsWith("ffn_down.weight", StringComparison.Ordinal))
        {
            int layer = int.Parse(info.Name.Split('.')[1], System.Globalization.CultureInfo.InvariantCulture);
            bool moreBits = layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
            return moreBits ? DType.Q6_K : DType.Q4_K;
        }
        return DType.Q4_K;
    }
}

using System.Runtime.InteropServices;
using Alora.Formats;
using Alora.Tensors;

namespace Alora.Models;

public sealed unsafe partial class ModelWeights
{
    /// <summary>
    /// Quantizes the model's matrices in memory (`--quantize q8_0|q4_k|…` for a Hugging Face model; any loaded model):
    /// every matrix gets a quantized copy in a slab this ModelWeights owns (ggml's reference quantizers, as `alora
    /// quantize` writes them); rows that are not whole blocks fall back as llama.cpp's do (Q4_K → Q5_0, Q5_K → Q5_1,
    /// Q6_K → Q8_0), and a matrix no type fits keeps its dtype. Returns the type each quantized matrix got. The original
    /// memory (a map or a slab) is left as it was.
    /// </summary>
    public IReadOnlyDictionary<string, DType> QuantizeMatrices(DType requested)
    {
        if (!Quantizer.CanQuantize(requested))
            throw new ArgumentOutOfRangeException(nameof(requested), requested, "quantization: expected q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k or q6_k");
        var targets = new Dictionary<string, DType>(StringComparer.Ordinal);
        foreach (var (name, tensor) in Parameters)
            if (tensor.Shape.Length == 2 && GgufQuantize.Fallback(requested, tensor.Shape[1]) is DType type && type != tensor.DType)
                targets[name] = type;
        if (targets.Count == 0) return targets;
        long bytes = targets.Sum(t => NativeSlab.Align(t.Value.ByteCount(Parameters[t.Key].ElementCount)));
        var slab = Own(new NativeSlab(bytes, $"{requested} weights"));
        foreach (var (name, dtype) in targets)
        {
            var source = Parameters[name];
            int rows = checked((int)source.Shape[0]), cols = checked((int)source.Shape[1]);
            byte* destination = slab.Take(dtype.ByteCount((long)rows * cols), name);
            long sourceRowBytes = source.DType.RowBytes(cols), rowBytes = dtype.RowBytes(cols);
            byte* from = (byte*)source.Data;
            // Rows in parallel chunks: each thread converts its rows to f32, then quantizes them.
            const int chunkRows = 64;
            Parallel.For(0, (rows + chunkRows - 1) / chunkRows, chunk =>
            {
                int r0 = chunk * chunkRows, count = Math.Min(chunkRows, rows - r0);
                float* values = (float*)NativeMemory.Alloc((nuint)((long)count * cols * sizeof(float)));
                try
                {
                    Kernels.Convert.ToSingle(values, from + r0 * sourceRowBytes, source.DType, (long)count * cols);
                    Quantizer.Quantize(destination + r0 * rowBytes, values, dtype, (long)count * cols);
                }
                finally { NativeMemory.Free(values); }
            });
            Parameters[name] = new TensorRef(destination, dtype, source.Shape);
        }
        Bind();
        return targets;
    }

    /// <summary>Parses a `--quantize` value (q8_0, Q4_K, …) to the dtype it names.</summary>
    public static DType ParseQuantization(string value)
    {
        if (Enum.TryParse<DType>(value, ignoreCase: true, out var dtype) && Quantizer.CanQuantize(dtype)) return dtype;
        throw new ArgumentException($"quantization '{value}': expected q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k or q6_k");
    }
}

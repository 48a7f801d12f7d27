using Alora.Tensors;

namespace Alora.Kernels;

// Legend: n = element count (a multiple of the type's block length), QK = elements per block (32, or 256 for the
// k-quants), d / dmin = a block's f16 scale / min scale, sc / m = a sub-block's integer scale / min.
//
// ggml's block quantizations as GGUF stores them (docs/quantization.md). Dequantize runs the kernels' vector
// loads (QuantLoad.cs); DequantizeReference is the scalar twin (Tensors.QuantBlocks), written block by block in
// the order of ggml's dequantize_row_* (ggml-quants.c): the tests hold it to llama.cpp's own dequantization bit for bit, and the
// vector loads to it bit for bit.

/// <summary>Dequantization and reference dot products of ggml's block-quantized types.</summary>
public static unsafe class Quantized
{
    /// <summary>dst[n] = the f32 values of n quantized elements at <paramref name="src"/> (vector loads).</summary>
    public static void Dequantize(float* dst, void* src, DType dtype, long n)
    {
        CheckCount(dtype, n);
        switch (dtype)
        {
            case DType.Q8_0: Convert.ToSingle<Q8_0Load>(dst, src, n); break;
            case DType.Q4_0: Convert.ToSingle<Q4_0Load>(dst, src, n); break;
            case DType.Q4_1: Convert.ToSingle<Q4_1Load>(dst, src, n); break;
            case DType.Q5_0: Convert.ToSingle<Q5_0Load>(dst, src, n); break;
            case DType.Q5_1: Convert.ToSingle<Q5_1Load>(dst, src, n); break;
            case DType.Q4_K: Convert.ToSingle<Q4_KLoad>(dst, src, n); break;
            case DType.Q5_K: Convert.ToSingle<Q5_KLoad>(dst, src, n); break;
            case DType.Q6_K: Convert.ToSingle<Q6_KLoad>(dst, src, n); break;
            case DType.Q8_K: Convert.ToSingle<Q8_KLoad>(dst, src, n); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a quantized weight dtype");
        }
    }

    /// <summary>Scalar reference twin of <see cref="Dequantize"/>, block by block as ggml's dequantize_row_* runs.</summary>
    public static void DequantizeReference(float* dst, void* src, DType dtype, long n)
    {
        CheckCount(dtype, n);
        QuantBlocks.Dequantize(dst, src, dtype, n);
    }

    /// <summary>Reference dot product Σ w[p]·x[p] over n elements of a quantized row: dequantized, then summed in order in f32.</summary>
    public static float DotReference(void* w, DType dtype, float* x, long n)
    {
        CheckCount(dtype, n);
        int block = dtype.BlockLength();
        float* values = stackalloc float[256];
        float sum = 0;
        for (long i = 0; i < n; i += block)
        {
            DequantizeReference(values, (byte*)w + dtype.ByteCount(i), dtype, block);
            for (int j = 0; j < block; j++) sum += values[j] * x[i + j];
        }
        return sum;
    }

    private static void CheckCount(DType dtype, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (!dtype.IsQuantized()) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a quantized weight dtype");
        if (n % dtype.BlockLength() != 0)
            throw new ArgumentException($"{dtype} holds whole blocks of {dtype.BlockLength()} elements; {n} elements is not a multiple of {dtype.BlockLength()}", nameof(n));
    }
}

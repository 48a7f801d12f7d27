using System.Runtime.Intrinsics;
using Alora.Tensors;

namespace Alora.Kernels;

// Legend: n = element count.

/// <summary>Bulk conversion of stored weights (f32, bf16, f16, ggml block quantizations) to f32, for loaders and kernels.</summary>
public static unsafe class Convert
{
    /// <summary>dst[n] (f32) = src[n] (stored as <paramref name="dtype"/>). dst must not overlap src.</summary>
    public static void ToSingle(float* dst, void* src, DType dtype, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        switch (dtype)
        {
            case DType.F32: Buffer.MemoryCopy(src, dst, n * sizeof(float), n * sizeof(float)); break;
            case DType.BF16: ToSingle<BF16Load>(dst, src, n); break;
            case DType.F16: ToSingle<F16Load>(dst, src, n); break;
            default: Quantized.Dequantize(dst, src, dtype, n); break;
        }
    }

    /// <summary>Scalar reference twin of <see cref="ToSingle(float*, void*, DType, long)"/>.</summary>
    public static void ToSingleReference(float* dst, void* src, DType dtype, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (dtype.IsQuantized())
        {
            Quantized.DequantizeReference(dst, src, dtype, n);
            return;
        }
        for (long i = 0; i < n; i++)
        {
            dst[i] = dtype switch
            {
                DType.F32 => ((float*)src)[i],
                DType.BF16 => Half16.BFloat16ToSingle(((ushort*)src)[i]),
                DType.F16 => Half16.HalfToSingle(((ushort*)src)[i]),
                _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown weight dtype"),
            };
        }
    }

    internal static void ToSingle<TLoad>(float* dst, void* src, long n) where TLoad : struct, IWeightLoad
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16) TLoad.Load512(src, i).Store(dst + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8) TLoad.Load256(src, i).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = TLoad.Scalar(src, i);
    }
}

using Alora.Tensors;

namespace Alora.Kernels;

/// <summary>Bulk conversions of stored weights to f32.</summary>
public static unsafe class Convert
{
    /// <summary>dst[n] = (float)src[n] for src in any weight dtype.</summary>
    public static void ToSingle(float* dst, void* src, DType dtype, long n) => ToSingleReference(dst, src, dtype, n);

    public static void ToSingleReference(float* dst, void* src, DType dtype, long n)
    {
        switch (dtype)
        {
            case DType.F32:
                Buffer.MemoryCopy(src, dst, n * 4, n * 4);
                break;
            case DType.BF16:
                for (long i = 0; i < n; i++) dst[i] = Half16.BFloat16ToSingle(((ushort*)src)[i]);
                break;
            case DType.F16:
                for (long i = 0; i < n; i++) dst[i] = Half16.HalfToSingle(((ushort*)src)[i]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype");
        }
    }
}

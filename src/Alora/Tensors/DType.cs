namespace Alora.Tensors;

/// <summary>
/// Element types a weight can be stored in. Arithmetic is always f32. The Q… types are ggml's block quantizations,
/// stored exactly as GGUF stores them (docs/quantization.md): a row of K elements is K / <see cref="DTypeExtensions.BlockLength"/>
/// blocks of <see cref="DTypeExtensions.BlockBytes"/> bytes each.
/// </summary>
public enum DType
{
    F32,
    BF16,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
}

public static class DTypeExtensions
{
    /// <summary>Bytes per element of a dense type; a block-quantized type has no per-element size (use <see cref="RowBytes"/>).</summary>
    public static int ByteSize(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.F16 => 2,
        _ when dtype.IsQuantized() => throw new ArgumentOutOfRangeException(nameof(dtype), dtype,
            $"{dtype} stores blocks of {dtype.BlockLength()} elements in {dtype.BlockBytes()} bytes, not a whole number of bytes per element"),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>True for ggml's block quantizations.</summary>
    public static bool IsQuantized(this DType dtype) => dtype >= DType.Q8_0 && dtype <= DType.Q8_K;

    /// <summary>Elements per block (1 for a dense type; 32 for Q8_0/Q4_0/Q4_1/Q5_0/Q5_1; 256 for the k-quants).</summary>
    public static int BlockLength(this DType dtype) => dtype switch
    {
        DType.F32 or DType.BF16 or DType.F16 => 1,
        DType.Q8_0 or DType.Q4_0 or DType.Q4_1 or DType.Q5_0 or DType.Q5_1 => 32,
        DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.Q8_K => 256,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Bytes per block (the element size for a dense type).</summary>
    public static int BlockBytes(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 or DType.F16 => 2,
        DType.Q8_0 => 34,    // f16 d, i8 qs[32]
        DType.Q4_0 => 18,    // f16 d, u8 qs[16]
        DType.Q4_1 => 20,    // f16 d, f16 m, u8 qs[16]
        DType.Q5_0 => 22,    // f16 d, u8 qh[4], u8 qs[16]
        DType.Q5_1 => 24,    // f16 d, f16 m, u8 qh[4], u8 qs[16]
        DType.Q4_K => 144,   // f16 d, f16 dmin, u8 scales[12], u8 qs[128]
        DType.Q5_K => 176,   // f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
        DType.Q6_K => 210,   // u8 ql[128], u8 qh[64], i8 scales[16], f16 d
        DType.Q8_K => 292,   // f32 d, i8 qs[256], i16 bsums[16]
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Bytes of <paramref name="count"/> elements; for a quantized type, count must be a multiple of the block length.</summary>
    public static long ByteCount(this DType dtype, long count)
    {
        int block = dtype.BlockLength();
        if (count % block != 0)
            throw new ArgumentException($"{dtype} stores whole blocks of {block} elements; {count} elements is not a multiple of {block}", nameof(count));
        return count / block * dtype.BlockBytes();
    }

    /// <summary>Bytes of one row of <paramref name="cols"/> elements.</summary>
    public static long RowBytes(this DType dtype, long cols) => dtype.ByteCount(cols);
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Alora.Tensors;

namespace Alora.Kernels;

/// <summary>
/// Loads weight elements of one storage type as f32, at three widths. The kernels are generic over
/// a struct implementing this, so the JIT emits one specialised loop per dtype with no per-element branch.
/// </summary>
internal unsafe interface IWeightLoad
{
    /// <summary>
    /// Byte offset of element <paramref name="index"/>'s storage (for a block-quantized type: of its block, so it
    /// is exact only at block starts; the kernels use it for row starts and prefetch addresses).
    /// </summary>
    static abstract long ByteOffset(long index);
    /// <summary>True for f32 storage (the kernels then read W in place rather than converting a block first).</summary>
    static virtual bool IsF32 => false;
    /// <summary>Element <paramref name="index"/> of <paramref name="data"/> as f32.</summary>
    static abstract float Scalar(void* data, long index);
    /// <summary>16 consecutive elements starting at <paramref name="index"/>.</summary>
    static abstract Vector512<float> Load512(void* data, long index);
    /// <summary>8 consecutive elements starting at <paramref name="index"/>.</summary>
    static abstract Vector256<float> Load256(void* data, long index);
}

internal unsafe struct F32Load : IWeightLoad
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 4;
    public static bool IsF32 => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index) => ((float*)data)[index];
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index) => Vector512.Load((float*)data + index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index) => Vector256.Load((float*)data + index);
}

/// <summary>bf16 is the top half of an f32: widen to 32 bits and shift left by 16 (exact).</summary>
internal unsafe struct BF16Load : IWeightLoad
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 2;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index) => Half16.BFloat16ToSingle(((ushort*)data)[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        Vector256<ushort> bits = Vector256.Load((ushort*)data + index);
        Vector512<uint> wide = Vector512.WidenLower(bits.ToVector512Unsafe());
        return Vector512.ShiftLeft(wide, 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        Vector128<ushort> bits = Vector128.Load((ushort*)data + index);
        Vector256<uint> wide = Vector256.WidenLower(bits.ToVector256Unsafe());
        return Vector256.ShiftLeft(wide, 16).AsSingle();
    }
}

/// <summary>
/// IEEE half → f32, exact for every input, without floating-point arithmetic on subnormal inputs (Zen cores
/// take a slow microcode assist for those, and f16 checkpoints hold many tiny weights):
/// normals move their 15 exponent+mantissa bits up by 13 and add the exponent bias difference 127 − 15 = 112
/// as an integer; zeros and subnormals (exponent 0) are mantissa · 2⁻²⁴, an exact int→float conversion and a
/// multiply of normal numbers; Inf/NaN (exponent all ones) get the f32 all-ones exponent, keeping the payload.
/// The scalar path does the same in integer code, so it needs no call (a call in a GEMV loop makes the JIT
/// keep the vector accumulators in memory).
/// </summary>
internal unsafe struct F16Load : IWeightLoad
{
    private const uint ExponentRebias = 112u << 23;
    private const float SubnormalScale = 5.9604644775390625e-8f; // 2^-24

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => index * 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        uint h = ((ushort*)data)[index];
        uint sign = (h & 0x8000u) << 16;
        uint magnitude = h & 0x7FFFu;
        uint bits;
        if (magnitude >= 0x7C00u) bits = (magnitude << 13) | 0x7F800000u;
        else if (magnitude >= 0x0400u) bits = (magnitude << 13) + ExponentRebias;
        else bits = BitConverter.SingleToUInt32Bits((int)magnitude * SubnormalScale);
        return BitConverter.UInt32BitsToSingle(bits | sign);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        Vector256<ushort> raw = Vector256.Load((ushort*)data + index);
        Vector512<uint> h = Vector512.WidenLower(raw.ToVector512Unsafe());
        Vector512<uint> sign = Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16);
        Vector512<uint> magnitude = h & Vector512.Create(0x7FFFu);
        Vector512<uint> shifted = Vector512.ShiftLeft(magnitude, 13);
        Vector512<uint> normal = shifted + Vector512.Create(ExponentRebias);
        Vector512<uint> special = shifted | Vector512.Create(0x7F800000u);
        Vector512<uint> small = (Vector512.ConvertToSingle(magnitude.AsInt32()) * Vector512.Create(SubnormalScale)).AsUInt32();
        Vector512<uint> bits = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u)), special, normal);
        bits = Vector512.ConditionalSelect(Vector512.LessThan(magnitude, Vector512.Create(0x0400u)), small, bits);
        return (bits | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        Vector128<ushort> raw = Vector128.Load((ushort*)data + index);
        Vector256<uint> h = Vector256.WidenLower(raw.ToVector256Unsafe());
        Vector256<uint> sign = Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16);
        Vector256<uint> magnitude = h & Vector256.Create(0x7FFFu);
        Vector256<uint> shifted = Vector256.ShiftLeft(magnitude, 13);
        Vector256<uint> normal = shifted + Vector256.Create(ExponentRebias);
        Vector256<uint> special = shifted | Vector256.Create(0x7F800000u);
        Vector256<uint> small = (Vector256.ConvertToSingle(magnitude.AsInt32()) * Vector256.Create(SubnormalScale)).AsUInt32();
        Vector256<uint> bits = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)), special, normal);
        bits = Vector256.ConditionalSelect(Vector256.LessThan(magnitude, Vector256.Create(0x0400u)), small, bits);
        return (bits | sign).AsSingle();
    }
}

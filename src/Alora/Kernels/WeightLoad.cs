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
/// IEEE half → f32 with integer ops, exact for every input: moving the 15 exponent+mantissa bits up by 13
/// lands them in an f32 whose exponent is short by 127−15 = 112, so one multiply by 2¹¹² rebiases normals
/// and turns half subnormals (which land as f32 subnormals) into the right normal value. Inf/NaN
/// (exponent all ones) instead get the f32 all-ones exponent, keeping the NaN payload.
/// </summary>
internal unsafe struct F16Load : IWeightLoad
{
    private const float Rebias = 5.192296858534828e33f; // 2^112

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index) => Half16.HalfToSingle(((ushort*)data)[index]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        Vector256<ushort> bits = Vector256.Load((ushort*)data + index);
        Vector512<uint> h = Vector512.WidenLower(bits.ToVector512Unsafe());
        Vector512<uint> sign = Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16);
        Vector512<uint> magnitude = h & Vector512.Create(0x7FFFu);
        Vector512<uint> shifted = Vector512.ShiftLeft(magnitude, 13);
        Vector512<uint> finite = (shifted.AsSingle() * Vector512.Create(Rebias)).AsUInt32();
        Vector512<uint> special = shifted | Vector512.Create(0x7F800000u);
        Vector512<uint> isSpecial = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u));
        return (Vector512.ConditionalSelect(isSpecial, special, finite) | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        Vector128<ushort> bits = Vector128.Load((ushort*)data + index);
        Vector256<uint> h = Vector256.WidenLower(bits.ToVector256Unsafe());
        Vector256<uint> sign = Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16);
        Vector256<uint> magnitude = h & Vector256.Create(0x7FFFu);
        Vector256<uint> shifted = Vector256.ShiftLeft(magnitude, 13);
        Vector256<uint> finite = (shifted.AsSingle() * Vector256.Create(Rebias)).AsUInt32();
        Vector256<uint> special = shifted | Vector256.Create(0x7F800000u);
        Vector256<uint> isSpecial = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u));
        return (Vector256.ConditionalSelect(isSpecial, special, finite) | sign).AsSingle();
    }
}

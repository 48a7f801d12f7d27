namespace Alora.Tensors;

/// <summary>Scalar bf16/f16 conversions (the reference twins of the vector converts in the kernels).</summary>
public static class Half16
{
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round-to-nearest-even, as torch's float→bfloat16 does; NaN stays NaN.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort SingleToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);
}

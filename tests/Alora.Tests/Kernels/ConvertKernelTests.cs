using Alora.Tensors;
using KernelConvert = Alora.Kernels.Convert;

namespace Alora.Tests.Kernels;

public unsafe class ConvertKernelTests
{
    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void ToSingle_MatchesReference_ForEveryLength(DType dtype)
    {
        for (int n = 0; n <= 256; n++)
        {
            byte[] src = KernelTestData.Encode(KernelTestData.Random(n, n, 100f), dtype);
            float[] expected = new float[n], actual = new float[n];
            fixed (byte* ps = src) fixed (float* pe = expected) fixed (float* pa = actual)
            {
                KernelConvert.ToSingleReference(pe, ps, dtype, n);
                KernelConvert.ToSingle(pa, ps, dtype, n);
            }
            Assert.Equal(expected, actual);
        }
    }

    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void ToSingle_IsExactForEveryBitPattern(DType dtype)
    {
        // All 65536 16-bit patterns: zeros, subnormals, normals, infinities and NaN payloads.
        ushort[] bits = new ushort[65536];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)i;
        float[] expected = new float[bits.Length], actual = new float[bits.Length];
        fixed (ushort* ps = bits) fixed (float* pe = expected) fixed (float* pa = actual)
        {
            KernelConvert.ToSingleReference(pe, ps, dtype, bits.Length);
            KernelConvert.ToSingle(pa, ps, dtype, bits.Length);
        }
        for (int i = 0; i < bits.Length; i++)
        {
            uint e = BitConverter.SingleToUInt32Bits(expected[i]), a = BitConverter.SingleToUInt32Bits(actual[i]);
            // NaN payloads may differ in the quiet bit between conversions; any NaN matches any NaN.
            if (float.IsNaN(expected[i]) && float.IsNaN(actual[i])) continue;
            Assert.True(e == a, $"{dtype} bits 0x{i:X4}: expected {expected[i]:R} (0x{e:X8}) got {actual[i]:R} (0x{a:X8})");
        }
    }

    [Fact]
    public void ToSingle_RejectsNegativeCount()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelConvert.ToSingle(null, null, DType.F32, -1));
    }
}

using Alora.Tensors;

namespace Alora.Tests.Kernels;

/// <summary>Deterministic random inputs and tolerance checks shared by the kernel tests.</summary>
internal static class KernelTestData
{
    /// <summary>Uniform values in [-scale, scale), the same for the same seed.</summary>
    public static float[] Random(int length, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>Stores <paramref name="values"/> as <paramref name="dtype"/>; returns the raw bytes.</summary>
    public static byte[] Encode(float[] values, DType dtype)
    {
        var bytes = new byte[values.Length * dtype.ByteSize()];
        for (int i = 0; i < values.Length; i++)
        {
            switch (dtype)
            {
                case DType.F32: BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), values[i]); break;
                case DType.BF16: BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), Half16.SingleToBFloat16(values[i])); break;
                case DType.F16: BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), Half16.SingleToHalf(values[i])); break;
                default: throw new ArgumentOutOfRangeException(nameof(dtype));
            }
        }
        return bytes;
    }

    /// <summary>Fails with the first index outside |actual − expected| ≤ rel·|expected| + abs.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float relative, float absolute, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            float e = expected[i], a = actual[i];
            if (float.IsNaN(e) && float.IsNaN(a)) continue;
            if (e == a) continue; // also covers equal infinities
            float diff = MathF.Abs(e - a);
            if (!(diff <= relative * MathF.Abs(e) + absolute))
                Assert.Fail($"{what}: element {i} expected {e:R} got {a:R} (|diff| {diff:E3}, allowed {relative * MathF.Abs(e) + absolute:E3})");
        }
    }
}

using Alora.Tensors;

namespace Alora.Tests.Quantization;

/// <summary>Inputs for the quantization tests: weights with varied block magnitudes, and raw random blocks.</summary>
internal static class QuantTestData
{
    public static readonly DType[] Types = [DType.Q8_0, DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q5_1, DType.Q4_K, DType.Q5_K, DType.Q6_K, DType.Q8_K];

    public static TheoryData<DType> AllTypes()
    {
        var data = new TheoryData<DType>();
        foreach (var t in Types) data.Add(t);
        return data;
    }

    /// <summary>
    /// Weights whose 32-element groups have magnitudes from 1e-4 to 10, a few outliers, an all-zero group, an
    /// all-positive and an all-negative group (the cases that exercise the quantizers' min/max and sign logic).
    /// </summary>
    public static float[] Weights(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int g = 0; g < length; g += 32)
        {
            int kind = (g / 32) % 7;
            float scale = MathF.Pow(10, (float)(random.NextDouble() * 5 - 4));
            for (int i = g; i < Math.Min(length, g + 32); i++)
            {
                float v = (float)(random.NextDouble() * 2 - 1) * scale;
                values[i] = kind switch
                {
                    1 => 0,
                    2 => MathF.Abs(v) + scale * 0.1f,
                    3 => -MathF.Abs(v),
                    4 when i % 13 == 0 => v * 40,
                    _ => v,
                };
            }
        }
        return values;
    }

    /// <summary>Random bytes as blocks of <paramref name="dtype"/>, with finite, moderate f16/f32 scale fields.</summary>
    public static byte[] RandomBlocks(DType dtype, int elements, int seed)
    {
        var random = new Random(seed);
        var bytes = new byte[dtype.ByteCount(elements)];
        random.NextBytes(bytes);
        int blockBytes = dtype.BlockBytes();
        for (int b = 0; b < bytes.Length; b += blockBytes)
        {
            void Half(int offset)
            {
                float v = (float)((random.NextDouble() * 2 - 1) * Math.Pow(10, random.NextDouble() * 3 - 4));
                BitConverter.TryWriteBytes(bytes.AsSpan(b + offset), Half16.SingleToHalf(v));
            }
            switch (dtype)
            {
                case DType.Q8_0 or DType.Q4_0 or DType.Q5_0: Half(0); break;
                case DType.Q4_1 or DType.Q5_1 or DType.Q4_K or DType.Q5_K: Half(0); Half(2); break;
                case DType.Q6_K: Half(208); break;
                case DType.Q8_K: BitConverter.TryWriteBytes(bytes.AsSpan(b), (float)(random.NextDouble() * 0.01)); break;
            }
        }
        return bytes;
    }

    public static void AssertBitsEqual(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i}: expected {expected[i]:R}, got {actual[i]:R}");
    }
}

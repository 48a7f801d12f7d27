using Alora.Tensors;

namespace Alora.Tests.Quantization;

/// <summary>Alora's quantizers write the bytes llama.cpp's reference quantizers write, for every type a file can hold.</summary>
public sealed class QuantizerTests
{
    public static TheoryData<DType> WritableTypes()
    {
        var data = new TheoryData<DType>();
        foreach (var t in QuantTestData.Types) if (Quantizer.CanQuantize(t)) data.Add(t);
        return data;
    }

    [Theory]
    [MemberData(nameof(WritableTypes))]
    public void Quantize_WritesLlamaCppsBytes(DType dtype)
    {
        foreach (int seed in new[] { 1, 2, 3 })
        {
            float[] values = QuantTestData.Weights(16 * 256, seed * 31 + (int)dtype);
            byte[] ours = Quantizer.Quantize(values, dtype);
            byte[] theirs = GgmlReference.Quantize(dtype, values, 256);
            int block = dtype.BlockBytes();
            for (int i = 0; i < ours.Length; i++)
                if (ours[i] != theirs[i])
                    Assert.Fail($"{dtype} seed {seed}: block {i / block} byte {i % block}: Alora 0x{ours[i]:X2}, llama.cpp 0x{theirs[i]:X2}");
        }
    }

    [Fact]
    public void Q8_K_IsRefused()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Quantizer.Quantize(new float[256], DType.Q8_K));
        Assert.Contains("Q8_0", e.Message);
    }
}

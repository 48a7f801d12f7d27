using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Tests.Kernels;

public unsafe class EmbeddingKernelTests
{
    [Theory]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 33)]
    [InlineData(DType.BF16, 17)]
    [InlineData(DType.BF16, 64)]
    [InlineData(DType.F16, 15)]
    [InlineData(DType.F16, 129)]
    public void Lookup_MatchesReference(DType dtype, int d)
    {
        const int vocab = 11;
        byte[] table = KernelTestData.Encode(KernelTestData.Random(vocab * d, d), dtype);
        int[] ids = [3, 0, 10, 3, 7];
        float[] expected = new float[ids.Length * d], actual = new float[ids.Length * d];
        fixed (byte* pt = table) fixed (int* pi = ids) fixed (float* pe = expected) fixed (float* pa = actual)
        {
            var weights = new WeightMatrix(pt, dtype, vocab, d);
            Embedding.LookupReference(pe, weights, pi, ids.Length);
            Embedding.Lookup(pa, weights, pi, ids.Length);
        }
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Lookup_MatchesReference_ForEveryRowWidth()
    {
        foreach (DType dtype in new[] { DType.F32, DType.BF16, DType.F16 })
        {
            for (int d = 0; d <= 256; d++)
            {
                const int vocab = 5;
                byte[] table = KernelTestData.Encode(KernelTestData.Random(vocab * d, d + 7), dtype);
                int[] ids = [4, 1, 1, 0];
                float[] expected = new float[ids.Length * d], actual = new float[ids.Length * d];
                fixed (byte* pt = table) fixed (int* pi = ids) fixed (float* pe = expected) fixed (float* pa = actual)
                {
                    var weights = new WeightMatrix(pt, dtype, vocab, d);
                    Embedding.LookupReference(pe, weights, pi, ids.Length);
                    Embedding.Lookup(pa, weights, pi, ids.Length);
                }
                Assert.Equal(expected, actual);
            }
        }
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(11)]
    public void Lookup_RejectsOutOfRangeIds_NamingTheIdAndRow(int badId)
    {
        float[] table = new float[11 * 4], y = new float[8];
        int[] ids = [2, badId];
        fixed (float* pt = table) fixed (int* pi = ids) fixed (float* py = y)
        {
            var weights = new WeightMatrix(pt, DType.F32, 11, 4);
            nint yp = (nint)py, ip = (nint)pi;
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => Embedding.Lookup((float*)yp, weights, (int*)ip, 2));
            Assert.Contains($"token id {badId} at row 1", error.Message);
            Assert.Contains("11 rows", error.Message);
        }
    }
}

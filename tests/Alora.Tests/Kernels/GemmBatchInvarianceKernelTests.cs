using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Tests.Kernels;

/// <summary>With Gemm.BatchInvariant (the default), a row's output bits do not depend on how many rows share the call.</summary>
public sealed unsafe class GemmBatchInvarianceKernelTests
{
    [Theory]
    [InlineData(DType.F32, 5, 67, 33)]
    [InlineData(DType.BF16, 17, 576, 200)]
    [InlineData(DType.F16, 64, 131, 96)]
    [InlineData(DType.F32, 130, 64, 172)]
    [InlineData(DType.F32, 7, 1040, 12)]        // one 6-row tile and a single row; K just past one chunk
    [InlineData(DType.F32, 53, 1100, 37)]       // K in three chunks plus a scalar tail; x rows past one x block
    [InlineData(DType.BF16, 100, 2064, 70)]
    [InlineData(DType.F16, 49, 4870, 9, true)]  // accumulating into y
    public void EachRowEqualsItsOwnGemv(DType dtype, int m, int k, int n, bool accumulate = false)
    {
        var random = new Random(m * 31 + k);
        var x = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var wBytes = new byte[(long)n * k * dtype.ByteSize()];
        fixed (byte* wb = wBytes)
        {
            for (long i = 0; i < (long)n * k; i++)
            {
                float v = (float)(random.NextDouble() * 2 - 1);
                switch (dtype)
                {
                    case DType.F32: ((float*)wb)[i] = v; break;
                    case DType.BF16: ((ushort*)wb)[i] = Half16.SingleToBFloat16(v); break;
                    default: ((ushort*)wb)[i] = Half16.SingleToHalf(v); break;
                }
            }
            var w = new WeightMatrix(wb, dtype, n, k);
            var start = Enumerable.Range(0, m * n).Select(_ => accumulate ? (float)random.NextDouble() : 0f).ToArray();
            var all = (float[])start.Clone();
            var one = new float[n];
            fixed (float* px = x, py = all, p1 = one)
            {
                Gemm.MatMul(py, px, w, m, accumulate);
                for (int row = 0; row < m; row++)
                {
                    Array.Copy(start, row * n, one, 0, n);
                    Gemm.MatMul(p1, px + (long)row * k, w, 1, accumulate);
                    for (int j = 0; j < n; j++)
                        Assert.True(BitConverter.SingleToInt32Bits(all[row * n + j]) == BitConverter.SingleToInt32Bits(one[j]),
                            $"row {row} col {j}: batched {all[row * n + j]:R}, alone {one[j]:R}");
                }
            }
        }
    }
}

using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Tests.Kernels;

/// <summary>DoRA's kernels against their scalar twins: every length 0..256, with and without a bias, and every weight dtype.</summary>
public sealed unsafe class DoraKernelTests
{
    [Fact]
    public void CombineRowEqualsItsTwinBitForBitAtEveryLength()
    {
        var random = new Random(3);
        for (int n = 0; n <= 256; n++)
        {
            float[] y = Values(n, random), lora = Values(n, random), g = Values(n, random, 1f), bias = Values(n, random);
            foreach (bool withBias in new[] { false, true })
            {
                float[] expected = (float[])y.Clone(), actual = (float[])y.Clone();
                fixed (float* e = expected) fixed (float* a = actual) fixed (float* l = lora) fixed (float* gp = g) fixed (float* b = bias)
                {
                    Dora.CombineRowReference(e, l, gp, withBias ? b : null, n);
                    Dora.CombineRow(a, l, gp, withBias ? b : null, n);
                }
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"n = {n}, bias {withBias}");
                // The value itself: y + (g − 1)·(y − bias) + g·lora.
                for (int j = 0; j < n; j++)
                {
                    double want = y[j] + ((double)g[j] - 1) * (y[j] - (withBias ? bias[j] : 0)) + (double)g[j] * lora[j];
                    Assert.True(Math.Abs(actual[j] - want) <= 1e-5 * (1 + Math.Abs(want)), $"n = {n}, j = {j}: {actual[j]} vs {want}");
                }
            }
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void WeightNormsMatchTheF64Twin(DType dtype)
    {
        foreach (var (rows, cols, rank) in new[] { (1, 1, 1), (7, 33, 3), (64, 48, 4), (130, 17, 0) })
        {
            var random = new Random(rows * 31 + cols);
            float[] w = Values(rows * cols, random), a = Values(Math.Max(rank, 1) * cols, random), b = Values(rows * Math.Max(rank, 1), random);
            byte[] stored = new byte[rows * cols * dtype.ByteSize()];
            fixed (float* wp = w) fixed (byte* sp = stored)
            {
                for (int i = 0; i < w.Length; i++)
                {
                    if (dtype == DType.F32) ((float*)sp)[i] = w[i];
                    else if (dtype == DType.BF16) ((ushort*)sp)[i] = Half16.SingleToBFloat16(w[i]);
                    else ((ushort*)sp)[i] = Half16.SingleToHalf(w[i]);
                }
                var matrix = new WeightMatrix(sp, dtype, rows, cols);
                float[] expected = new float[rows], actual = new float[rows];
                fixed (float* e = expected) fixed (float* ac = actual) fixed (float* ap = a) fixed (float* bp = b)
                {
                    Dora.WeightNormsReference(e, matrix, ap, bp, rank, 1.5f);
                    Dora.WeightNorms(ac, matrix, ap, bp, rank, 1.5f);
                }
                for (int j = 0; j < rows; j++)
                    Assert.True(Math.Abs(actual[j] - expected[j]) <= 2e-6 * expected[j] + 1e-7, $"{dtype} [{rows}, {cols}] r {rank} row {j}: {actual[j]} vs {expected[j]}");
            }
        }
    }

    private static float[] Values(int n, Random random, float offset = 0) => Enumerable.Range(0, n).Select(_ => offset + (float)(random.NextDouble() * 2 - 1)).ToArray();
}

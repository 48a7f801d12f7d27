using System.Runtime.Intrinsics;
using Alora.Kernels;
using Alora.Tensors;
using Alora.Tests.Quantization;

namespace Alora.Tests.Kernels;

// Legend: M = rows in the call (1..80: the GEMV's 1..4, the batched decode path's 5..64, the row groups' 65..80),
// K = input features (whole blocks), N = output features.

/// <summary>
/// ggml's block quantizations: the scalar dequantization equals llama.cpp's own bit for bit, on blocks llama.cpp's
/// quantizer wrote and on random blocks; the vector loads equal the scalar twin bit for bit at every offset; and
/// every GEMM path on a quantized matrix gives exactly the bits of the same path on its dequantized f32 twin
/// (the loads produce the same values, the arithmetic after them is shared), so each row is batch invariant.
/// </summary>
public sealed unsafe class QuantizedKernelTests
{
    public static TheoryData<DType> Types() => QuantTestData.AllTypes();

    [Theory]
    [MemberData(nameof(Types))]
    public void BlocksLlamaCppQuantized_DequantizeAsLlamaCppDoes(DType dtype)
    {
        int rowLength = 3 * 256, rows = 4;
        float[] weights = QuantTestData.Weights(rows * rowLength, seed: (int)dtype);
        byte[] blocks = GgmlReference.Quantize(dtype, weights, rowLength);
        CheckDequantization(dtype, blocks, rows * rowLength, "llama.cpp-quantized blocks");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void RandomBlocks_DequantizeAsLlamaCppDoes(DType dtype)
    {
        int count = 8 * 256;
        byte[] blocks = QuantTestData.RandomBlocks(dtype, count, seed: 100 + (int)dtype);
        CheckDequantization(dtype, blocks, count, "random blocks");
    }

    private static void CheckDequantization(DType dtype, byte[] blocks, int count, string what)
    {
        var llama = new float[count];
        GgmlReference.Dequantize(dtype, blocks, llama);
        var reference = new float[count];
        var vector = new float[count];
        var scalar = new float[count];
        fixed (byte* b = blocks)
        fixed (float* r = reference, v = vector)
        {
            Quantized.DequantizeReference(r, b, dtype, count);
            Quantized.Dequantize(v, b, dtype, count);
            var matrix = new WeightMatrix(b, dtype, count / 256, 256);
            for (int i = 0; i < count; i++) scalar[i] = matrix[i / 256, i % 256];
        }
        QuantTestData.AssertBitsEqual(llama, reference, $"{dtype} {what}: reference vs llama.cpp's dequantize_row");
        QuantTestData.AssertBitsEqual(reference, vector, $"{dtype} {what}: vector loads vs reference");
        QuantTestData.AssertBitsEqual(reference, scalar, $"{dtype} {what}: scalar load vs reference");
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void VectorLoadsAtAnyOffset_EqualTheScalarLoad(DType dtype)
    {
        switch (dtype)
        {
            case DType.Q8_0: CheckLoads<Q8_0Load>(dtype); break;
            case DType.Q4_0: CheckLoads<Q4_0Load>(dtype); break;
            case DType.Q4_1: CheckLoads<Q4_1Load>(dtype); break;
            case DType.Q5_0: CheckLoads<Q5_0Load>(dtype); break;
            case DType.Q5_1: CheckLoads<Q5_1Load>(dtype); break;
            case DType.Q4_K: CheckLoads<Q4_KLoad>(dtype); break;
            case DType.Q5_K: CheckLoads<Q5_KLoad>(dtype); break;
            case DType.Q6_K: CheckLoads<Q6_KLoad>(dtype); break;
            case DType.Q8_K: CheckLoads<Q8_KLoad>(dtype); break;
        }
    }

    private static void CheckLoads<TLoad>(DType dtype) where TLoad : struct, IWeightLoad
    {
        int count = 2 * 256;
        byte[] blocks = QuantTestData.RandomBlocks(dtype, count, seed: 7);
        fixed (byte* b = blocks)
        {
            // Every start index, aligned (the fast path) or not (assembled element by element, as the packed GEMM's K blocks need).
            for (int i = 0; i + 16 <= count; i++)
            {
                Vector512<float> v = TLoad.Load512(b, i);
                for (int j = 0; j < 16; j++)
                    Assert.True(BitConverter.SingleToInt32Bits(v.GetElement(j)) == BitConverter.SingleToInt32Bits(TLoad.Scalar(b, i + j)),
                        $"{dtype}: Load512 at {i}, element {j}: {v.GetElement(j):R} vs scalar {TLoad.Scalar(b, i + j):R}");
            }
            for (int i = 0; i + 8 <= count; i++)
            {
                Vector256<float> v = TLoad.Load256(b, i);
                for (int j = 0; j < 8; j++)
                    Assert.True(BitConverter.SingleToInt32Bits(v.GetElement(j)) == BitConverter.SingleToInt32Bits(TLoad.Scalar(b, i + j)),
                        $"{dtype}: Load256 at {i}, element {j}: {v.GetElement(j):R} vs scalar {TLoad.Scalar(b, i + j):R}");
            }
            Assert.Equal(dtype.ByteCount(256), TLoad.ByteOffset(256));
        }
    }

    public static TheoryData<DType, int, int> Shapes()
    {
        var data = new TheoryData<DType, int, int>();
        foreach (var dtype in QuantTestData.Types)
        {
            int block = dtype.BlockLength();
            // One block; several blocks with N past a 64-column stage window and tail columns; K long enough that the
            // row groups (M > 64) chunk it.
            (int K, int N)[] shapes = block == 32 ? [(32, 9), (576, 70), (1120, 23)] : [(256, 9), (768, 70), (1280, 23)];
            foreach (var (k, n) in shapes) data.Add(dtype, k, n);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryPathOnQuantizedW_EqualsTheDequantizedTwin_AndEveryRowIsBatchInvariant(DType dtype, int k, int n)
    {
        const int maxM = 80;
        byte[] blocks = QuantTestData.RandomBlocks(dtype, n * k, seed: k + n);   // W [N, K]
        float[] twin = new float[n * k];                                          // W dequantized, as f32
        float[] x = KernelTestData.Random(maxM * k, seed: k * 3 + n);            // [maxM, K]
        var alone = new float[maxM * n];
        var reference = new float[maxM * n];
        var quantized = new float[maxM * n];
        var dense = new float[maxM * n];
        fixed (byte* pb = blocks)
        fixed (float* pt = twin, px = x, pAlone = alone, pRef = reference, pq = quantized, pd = dense)
        {
            Quantized.DequantizeReference(pt, pb, dtype, (long)n * k);
            var w = new WeightMatrix(pb, dtype, n, k);
            var wTwin = new WeightMatrix(pt, DType.F32, n, k);
            for (int row = 0; row < maxM; row++) Gemm.MatMul(pAlone + (long)row * n, px + (long)row * k, w, 1);
            // Right, within f32 rounding of a different summation order (as the dense kernels' tests bound it).
            Gemm.MatMulReference(pRef, px, w, maxM);
            float scale = 0;
            foreach (float v in reference) scale = MathF.Max(scale, MathF.Abs(v));
            KernelTestData.AssertClose(reference, alone, 1e-4f, 2e-6f * k * MathF.Max(scale, 1e-3f), $"{dtype} K={k} N={n}: rows alone vs the reference");
            foreach (int m in new[] { 1, 2, 3, 4, 5, 6, 7, 13, 16, 31, 64, 65, 71, 80 })
            {
                int offset = (m * 7) % (maxM - m + 1);
                Gemm.MatMul(pq, px + (long)offset * k, w, m);
                Gemm.MatMul(pd, px + (long)offset * k, wTwin, m);
                QuantTestData.AssertBitsEqual(dense.AsSpan(0, m * n), quantized.AsSpan(0, m * n), $"{dtype} K={k} N={n} M={m}: quantized W vs its f32 twin");
                QuantTestData.AssertBitsEqual(alone.AsSpan(offset * n, m * n), quantized.AsSpan(0, m * n), $"{dtype} K={k} N={n} M={m}: batch vs rows alone");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void InputGradientAndEmbedding_OnQuantizedW_EqualTheDequantizedTwin(DType dtype)
    {
        int k = 2 * 256, n = 40, m = 5;
        byte[] blocks = QuantTestData.RandomBlocks(dtype, n * k, seed: 3);
        float[] twin = new float[n * k];
        float[] dy = KernelTestData.Random(m * n, seed: 4);
        var dxQuantized = new float[m * k];
        var dxDense = new float[m * k];
        var rows = new float[3 * k];
        int[] ids = [7, 0, 39];
        fixed (byte* pb = blocks)
        fixed (float* pt = twin, pdy = dy, pq = dxQuantized, pd = dxDense, pr = rows)
        fixed (int* pid = ids)
        {
            Quantized.DequantizeReference(pt, pb, dtype, (long)n * k);
            var w = new WeightMatrix(pb, dtype, n, k);
            Gemm.MatMulNoTranspose(pq, pdy, w, m);
            Gemm.MatMulNoTranspose(pd, pdy, new WeightMatrix(pt, DType.F32, n, k), m);
            QuantTestData.AssertBitsEqual(dxDense, dxQuantized, $"{dtype}: dX = dY·W");
            Embedding.Lookup(pr, w, pid, 3);
        }
        for (int r = 0; r < 3; r++)
            QuantTestData.AssertBitsEqual(twin.AsSpan(ids[r] * k, k), rows.AsSpan(r * k, k), $"{dtype}: embedding row {ids[r]}");
    }

    [Fact]
    public void RowsThatAreNotWholeBlocks_AreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new WeightMatrix(null, DType.Q4_K, 4, 100));
        Assert.Contains("100", e.Message);
        Assert.Contains("256", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => Quantized.DequantizeReference(null, null, DType.Q8_0, 33));
        Assert.Contains("multiple of 32", e2.Message);
    }
}

using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Tests.Kernels;

// Legend: M = rows in the call (1..80: the GEMV's 1..4, the batched decode path's 5..64, the row groups' 65..80),
// K = input features, N = output features.

/// <summary>
/// The batched decode path (<see cref="Gemv.RunBatch{TLoad}"/>, M in 5..<see cref="Gemv.BatchMaxRows"/>) gives every
/// row the bits that row gets alone (M = 1, the GEMV), for every M across the three paths and their boundaries.
/// </summary>
public sealed unsafe class GemmDecodeBatchKernelTests
{
    private const int MaxM = 80;

    public static TheoryData<DType, int, int, bool> Shapes()
    {
        var data = new TheoryData<DType, int, int, bool>();
        (int K, int N)[] shapes =
        [
            (67, 37),     // K and N tails: a 3-element K tail after 4 vectors, one column past 9 tiles
            (576, 70),    // SmolLM2's K (no K tail), N past one 64-column stage window, 2 tail columns
            (15, 9),      // K shorter than one vector: the scalar tail only
            (160, 150),   // many 16-row panels, three stage windows, two tasks
            (1100, 23),   // long K (row groups chunk it above M = 64), 8-row panels, 3 tail columns
        ];
        foreach (DType dtype in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (var (k, n) in shapes)
                foreach (bool accumulate in new[] { false, true })
                    data.Add(dtype, k, n, accumulate);
        return data;
    }

    [Fact]
    public void BatchedPathCoversTheDecodeRange()
        => Assert.True(Gemv.BatchMaxRows >= 64 && Gemv.BatchMaxRows < MaxM, $"BatchMaxRows = {Gemv.BatchMaxRows}: these tests assume 64 ≤ it < {MaxM}");

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryRowOfEveryM_EqualsThatRowAlone(DType dtype, int k, int n, bool accumulate)
    {
        float[] x = KernelTestData.Random(MaxM * k, seed: k * 131 + n);       // [MaxM, K]
        float[] wValues = KernelTestData.Random(n * k, seed: n * 17 + k, 0.5f); // [N, K]
        float[] start = accumulate ? KernelTestData.Random(MaxM * n, seed: 5) : new float[MaxM * n];   // y before the call
        byte[] wBytes = KernelTestData.Encode(wValues, dtype);
        var alone = (float[])start.Clone();   // [MaxM, N] each row computed by itself (M = 1)
        var batch = new float[MaxM * n];
        var reference = new float[MaxM * n];
        fixed (byte* pw = wBytes)
        fixed (float* px = x, pAlone = alone, pBatch = batch, pReference = reference)
        {
            var w = new WeightMatrix(pw, dtype, n, k);
            for (int row = 0; row < MaxM; row++) Gemm.MatMul(pAlone + (long)row * n, px + (long)row * k, w, 1, accumulate);
            // The single rows themselves are right (within f32 rounding of a different summation order).
            Array.Copy(start, reference, start.Length);
            Gemm.MatMulReference(pReference, px, w, MaxM, accumulate);
            KernelTestData.AssertClose(reference, alone, 1e-4f, 1e-5f * k, $"{dtype} K={k} N={n}: rows alone vs the reference");

            for (int m = 1; m <= MaxM; m++)
            {
                // Rows [offset, offset + m) of x, so a row sits at different places in different batches.
                int offset = (m * 7) % (MaxM - m + 1);
                Array.Copy(start, offset * n, batch, 0, m * n);
                Gemm.MatMul(pBatch, px + (long)offset * k, w, m, accumulate);
                for (int i = 0; i < m * n; i++)
                {
                    int row = offset + i / n, column = i % n;
                    if (BitConverter.SingleToInt32Bits(batch[i]) != BitConverter.SingleToInt32Bits(alone[row * n + column]))
                        Assert.Fail($"{dtype} K={k} N={n} accumulate={accumulate}, M={m}: x row {row} (batch row {i / n}) column {column}: " +
                            $"batched {batch[i]:R}, alone {alone[row * n + column]:R}");
                }
            }
        }
    }

    [Fact]
    public void ManyRowsAgainstAWideMatrix_EqualTheRowsAlone()
    {
        // An LM-head-like shape: y rows 4 KiB-aligned apart (N = 1024), so every row's stage window lands in one cache set.
        const int m = 16, k = 64, n = 1024;
        float[] x = KernelTestData.Random(m * k, seed: 3);
        byte[] wBytes = KernelTestData.Encode(KernelTestData.Random(n * k, seed: 4), DType.BF16);
        var batch = new float[m * n];
        var one = new float[n];
        fixed (byte* pw = wBytes)
        fixed (float* px = x, pBatch = batch, pOne = one)
        {
            var w = new WeightMatrix(pw, DType.BF16, n, k);
            Gemm.MatMul(pBatch, px, w, m);
            for (int row = 0; row < m; row++)
            {
                Gemm.MatMul(pOne, px + (long)row * k, w, 1);
                for (int j = 0; j < n; j++)
                    Assert.True(BitConverter.SingleToInt32Bits(batch[row * n + j]) == BitConverter.SingleToInt32Bits(one[j]),
                        $"row {row} column {j}: batched {batch[row * n + j]:R}, alone {one[j]:R}");
            }
        }
    }
}

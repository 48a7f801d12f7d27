using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Tests.Kernels;

public unsafe class GemmKernelTests
{
    public static TheoryData<int, int, int> OddShapes()
    {
        var data = new TheoryData<int, int, int>();
        // M covers the GEMV path (1..4), partial register tiles and several row blocks;
        // K and N cover vector tails, several K blocks and a partial last column panel.
        int[] ms = [1, 2, 3, 4, 5, 9, 17, 33, 129];
        int[] ks = [1, 3, 17, 33, 65, 257];
        int[] ns = [1, 3, 17, 33, 65, 129];
        foreach (int m in ms)
            foreach (int k in ks)
                foreach (int n in ns)
                    if ((long)m * k * n <= 600_000) data.Add(m, k, n);
        // Larger shapes: more than one K block (K > MaxKc = 768, split evenly), several N chunks, M past Mc = 96.
        data.Add(1, 511, 257);
        data.Add(4, 257, 511);
        data.Add(65, 511, 33);
        data.Add(257, 65, 129);
        data.Add(17, 33, 1100);
        data.Add(200, 300, 70);
        data.Add(9, 1000, 40);
        data.Add(33, 1601, 23);
        data.Add(3, 1601, 23);
        return data;
    }

    [Theory]
    [MemberData(nameof(OddShapes))]
    public void MatMul_MatchesReference_ForAllDTypes(int m, int k, int n)
    {
        foreach (DType dtype in new[] { DType.F32, DType.BF16, DType.F16 })
        {
            foreach (bool accumulate in new[] { false, true })
                CheckAgainstReference(m, k, n, dtype, accumulate);
        }
    }

    [Fact]
    public void MatMul_ZeroSizes_LeaveOrClearOutput()
    {
        float[] y = [5, 6, 7];
        float[] x = [1, 2, 3];
        fixed (float* py = y)
        fixed (float* px = x)
        {
            // K = 0: the product is all zeros; accumulate leaves y as it was.
            var empty = new WeightMatrix(px, DType.F32, 3, 0);
            Gemm.MatMul(py, px, empty, 1, accumulate: true);
            Assert.Equal([5f, 6f, 7f], y);
            Gemm.MatMul(py, px, empty, 1);
            Assert.Equal([0f, 0f, 0f], y);
            // M = 0 and N = 0 touch nothing.
            y[0] = 9;
            Gemm.MatMul(py, px, new WeightMatrix(px, DType.F32, 3, 1), 0);
            Gemm.MatMul(py, px, new WeightMatrix(px, DType.F32, 0, 3), 1);
            Assert.Equal(9f, y[0]);
        }
    }

    [Fact]
    public void MatMul_RejectsNullBuffersAndNegativeRows()
    {
        float[] w = new float[6];
        fixed (float* pinned = w)
        {
            nint buffer = (nint)pinned; // lambdas cannot capture a fixed local
            var weight = new WeightMatrix(pinned, DType.F32, 2, 3);
            var nullY = Assert.Throws<ArgumentNullException>(() => Gemm.MatMul(null, (float*)buffer, weight, 1));
            Assert.Contains("[1, 2]", nullY.Message);
            Assert.Throws<ArgumentNullException>(() => Gemm.MatMul((float*)buffer, null, weight, 1));
            Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.MatMul((float*)buffer, (float*)buffer, weight, -1));
        }
    }

    [Fact]
    public void MatMulF32_MatchesWeightMatrixPath()
    {
        const int m = 7, k = 19, n = 23;
        float[] x = KernelTestData.Random(m * k, 1), w = KernelTestData.Random(n * k, 2);
        float[] expected = new float[m * n], actual = new float[m * n];
        fixed (float* px = x) fixed (float* pw = w) fixed (float* pe = expected) fixed (float* pa = actual)
        {
            Gemm.MatMulReference(pe, px, new WeightMatrix(pw, DType.F32, n, k), m);
            Gemm.MatMulF32(pa, px, pw, m, k, n);
        }
        KernelTestData.AssertClose(expected, actual, 1e-5f, 1e-5f, "MatMulF32");
    }

    /// <summary>
    /// The fast paths sum in a different order than the reference, so each element may differ by a few
    /// ulps of Σ|x·w| (not of the result, which can be much smaller after cancellation).
    /// </summary>
    private static void CheckAgainstReference(int m, int k, int n, DType dtype, bool accumulate)
    {
        float[] x = KernelTestData.Random(m * k, 1000 + m * 7 + k);
        float[] wValues = KernelTestData.Random(n * k, 2000 + n * 13 + k);
        byte[] wBytes = KernelTestData.Encode(wValues, dtype);
        float[] initial = KernelTestData.Random(m * n, 3000 + m);
        float[] expected = (float[])initial.Clone(), actual = (float[])initial.Clone();
        float[] magnitude = new float[m * n];
        float[] xAbs = Array.ConvertAll(x, MathF.Abs);
        fixed (float* px = x) fixed (float* pxAbs = xAbs) fixed (byte* pw = wBytes)
        fixed (float* pe = expected) fixed (float* pa = actual) fixed (float* pmag = magnitude)
        {
            var w = new WeightMatrix(pw, dtype, n, k);
            Gemm.MatMulReference(pe, px, w, m, accumulate);
            Gemm.MatMul(pa, px, w, m, accumulate);
            float[] wAbs = new float[n * k];
            for (int j = 0; j < n; j++) for (int p = 0; p < k; p++) wAbs[j * k + p] = MathF.Abs(w[j, p]);
            fixed (float* pwAbs = wAbs) Gemm.MatMulReference(pmag, pxAbs, new WeightMatrix(pwAbs, DType.F32, n, k), m);
        }
        for (int i = 0; i < expected.Length; i++)
        {
            float bound = 1e-5f * (magnitude[i] + (accumulate ? MathF.Abs(initial[i]) : 0)) + 1e-7f;
            float diff = MathF.Abs(expected[i] - actual[i]);
            if (!(diff <= bound))
                Assert.Fail($"M={m} K={k} N={n} {dtype} accumulate={accumulate}: y[{i / n},{i % n}] expected {expected[i]:R} got {actual[i]:R} (|diff| {diff:E3} > {bound:E3})");
        }
    }
}

public unsafe class GemmBackwardKernelTests
{
    public static TheoryData<int, int, int> Shapes()
    {
        var data = new TheoryData<int, int, int>();
        int[] sizes = [1, 3, 17, 33, 65, 257];
        foreach (int m in sizes)
            foreach (int n in sizes)
                foreach (int k in sizes)
                    if ((long)m * n * k <= 300_000) data.Add(m, n, k);
        data.Add(129, 511, 33);
        data.Add(511, 17, 129);
        data.Add(5, 600, 70);
        data.Add(20, 1000, 40);
        data.Add(1000, 20, 40);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatMulNoTranspose_MatchesReference_ForAllDTypes(int m, int n, int k)
    {
        foreach (DType dtype in new[] { DType.F32, DType.BF16, DType.F16 })
        {
            foreach (bool accumulate in new[] { false, true })
            {
                float[] x = KernelTestData.Random(m * n, m + n);
                float[] wValues = KernelTestData.Random(n * k, n + k + 1);
                byte[] wBytes = KernelTestData.Encode(wValues, dtype);
                float[] initial = KernelTestData.Random(m * k, k);
                float[] expected = (float[])initial.Clone(), actual = (float[])initial.Clone(), magnitude = new float[m * k];
                float[] xAbs = Array.ConvertAll(x, MathF.Abs);
                fixed (float* px = x) fixed (float* pxa = xAbs) fixed (byte* pw = wBytes)
                fixed (float* pe = expected) fixed (float* pa = actual) fixed (float* pm = magnitude)
                {
                    var w = new WeightMatrix(pw, dtype, n, k);
                    Gemm.MatMulNoTransposeReference(pe, px, w, m, accumulate);
                    Gemm.MatMulNoTranspose(pa, px, w, m, accumulate);
                    float[] wAbs = new float[n * k];
                    for (int j = 0; j < n; j++) for (int p = 0; p < k; p++) wAbs[j * k + p] = MathF.Abs(w[j, p]);
                    fixed (float* pwa = wAbs) Gemm.MatMulNoTransposeReference(pm, pxa, new WeightMatrix(pwa, DType.F32, n, k), m);
                }
                AssertWithinSumOfMagnitudes(expected, actual, magnitude, initial, accumulate, $"NoTranspose M={m} N={n} K={k} {dtype} acc={accumulate}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatMulTransposeA_MatchesReference(int m, int n, int k)
    {
        foreach (bool accumulate in new[] { false, true })
        {
            float[] a = KernelTestData.Random(m * n, m * 3 + n), b = KernelTestData.Random(m * k, k * 5 + m);
            float[] initial = KernelTestData.Random(n * k, n);
            float[] expected = (float[])initial.Clone(), actual = (float[])initial.Clone(), magnitude = new float[n * k];
            float[] aAbs = Array.ConvertAll(a, MathF.Abs), bAbs = Array.ConvertAll(b, MathF.Abs);
            fixed (float* pa = a) fixed (float* pb = b) fixed (float* paa = aAbs) fixed (float* pba = bAbs)
            fixed (float* pe = expected) fixed (float* pr = actual) fixed (float* pm = magnitude)
            {
                Gemm.MatMulTransposeAReference(pe, pa, pb, m, n, k, accumulate);
                Gemm.MatMulTransposeA(pr, pa, pb, m, n, k, accumulate);
                Gemm.MatMulTransposeAReference(pm, paa, pba, m, n, k);
            }
            AssertWithinSumOfMagnitudes(expected, actual, magnitude, initial, accumulate, $"TransposeA M={m} N={n} K={k} acc={accumulate}");
        }
    }

    [Fact]
    public void BackwardProducts_WithEmptyInnerDimension_ClearOrKeepOutput()
    {
        float[] y = [1, 2, 3, 4];
        float[] operand = [0];
        fixed (float* py = y) fixed (float* po = operand)
        {
            Gemm.MatMulTransposeA(py, po, po, 0, 2, 2, accumulate: true);
            Assert.Equal([1f, 2f, 3f, 4f], y);
            Gemm.MatMulTransposeA(py, po, po, 0, 2, 2);
            Assert.Equal([0f, 0f, 0f, 0f], y);
            y[0] = 7;
            Gemm.MatMulNoTranspose(py, po, new WeightMatrix(po, DType.F32, 0, 2), 2, accumulate: true);
            Assert.Equal(7f, y[0]);
            Gemm.MatMulNoTranspose(py, po, new WeightMatrix(po, DType.F32, 0, 2), 2);
            Assert.Equal([0f, 0f, 0f, 0f], y);
        }
    }

    private static void AssertWithinSumOfMagnitudes(float[] expected, float[] actual, float[] magnitude, float[] initial, bool accumulate, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            float bound = 1e-5f * (magnitude[i] + (accumulate ? MathF.Abs(initial[i]) : 0)) + 1e-7f;
            float diff = MathF.Abs(expected[i] - actual[i]);
            if (!(diff <= bound)) Assert.Fail($"{what}: element {i} expected {expected[i]:R} got {actual[i]:R} (|diff| {diff:E3} > {bound:E3})");
        }
    }
}

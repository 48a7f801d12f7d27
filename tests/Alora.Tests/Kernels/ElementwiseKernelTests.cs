using Alora.Kernels;

namespace Alora.Tests.Kernels;

public unsafe class ElementwiseKernelTests
{
    private const int MaxLength = 256;

    public static TheoryData<int> Lengths()
    {
        var data = new TheoryData<int>();
        for (int n = 0; n <= MaxLength; n++) data.Add(n);
        return data;
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void VectorOps_MatchReference_ForEveryLength(int n)
    {
        float[] x = KernelTestData.Random(n, n + 1), y = KernelTestData.Random(n, n + 2, 3f);
        // Add, Axpy and Scale round exactly as the reference: results must be identical.
        CompareInPlace(y, x, (yp, xp) => Elementwise.Add(yp, xp, n), (yp, xp) => Elementwise.AddReference(yp, xp, n), 0, "Add");
        CompareInPlace(y, x, (yp, xp) => Elementwise.Axpy(yp, -0.75f, xp, n), (yp, xp) => Elementwise.AxpyReference(yp, -0.75f, xp, n), 0, "Axpy");
        CompareInPlace(y, x, (yp, _) => Elementwise.Scale(yp, 1.5f, n), (yp, _) => Elementwise.ScaleReference(yp, 1.5f, n), 0, "Scale");
        fixed (float* px = x)
        {
            fixed (float* py = y)
            {
                float expected = Elementwise.DotReference(px, py, n), actual = Elementwise.Dot(px, py, n);
                float magnitude = 0;
                for (int i = 0; i < n; i++) magnitude += MathF.Abs(x[i] * y[i]);
                Assert.True(MathF.Abs(expected - actual) <= 1e-6f * magnitude + 1e-7f, $"Dot n={n}: expected {expected} got {actual}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SiluMul_MatchesReference_ForEveryLength(int n)
    {
        float[] gate = KernelTestData.Random(n, 10 + n, 12f), up = KernelTestData.Random(n, 20 + n, 2f);
        CompareInPlace(gate, up, (g, u) => Elementwise.SiluMul(g, u, n), (g, u) => Elementwise.SiluMulReference(g, u, n), 2e-6f, "SiluMul");
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Softmax_MatchesReference_ForEveryLength(int n)
    {
        float[] x = KernelTestData.Random(n, 30 + n, 20f);
        CompareInPlace(x, [], (p, _) => Elementwise.Softmax(p, n), (p, _) => Elementwise.SoftmaxReference(p, n), 2e-6f, "Softmax");
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void RmsNorm_MatchesReference_ForEveryWidth_OutOfPlaceAndInPlace(int d)
    {
        const int m = 3;
        float[] x = KernelTestData.Random(m * d, 40 + d, 4f), gamma = KernelTestData.Random(d, 50 + d);
        float[] expected = new float[m * d], actual = new float[m * d], inPlace = (float[])x.Clone();
        fixed (float* px = x) fixed (float* pg = gamma) fixed (float* pe = expected) fixed (float* pa = actual) fixed (float* pi = inPlace)
        {
            Elementwise.RmsNormReference(pe, px, pg, m, d, 1e-5f);
            Elementwise.RmsNorm(pa, px, pg, m, d, 1e-5f);
            Elementwise.RmsNorm(pi, pi, pg, m, d, 1e-5f);
        }
        KernelTestData.AssertClose(expected, actual, 1e-6f, 1e-7f, $"RmsNorm d={d}");
        KernelTestData.AssertClose(expected, inPlace, 1e-6f, 1e-7f, $"RmsNorm in place d={d}");
    }

    [Fact]
    public void SiluMul_HandlesTheWholeFloatRange()
    {
        // Saturation, overflow of exp(−g), subnormal results, infinities and NaN, in vector-sized runs.
        float[] special = [-1e30f, -200f, -104f, -100f, -89f, -88.5f, -87.5f, -30f, -1e-30f, 0f, -0f, 1e-30f, 30f, 87.5f, 88.8f, 100f,
                           float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-40f, -1e-40f, 3e38f, -3e38f, 0.5f];
        float[] gate = [.. special, .. special, .. special], up = new float[gate.Length];
        Array.Fill(up, 1.25f);
        CompareInPlace(gate, up, (g, u) => Elementwise.SiluMul(g, u, gate.Length), (g, u) => Elementwise.SiluMulReference(g, u, gate.Length), 2e-6f, "SiluMul special");
    }

    [Fact]
    public void Softmax_HandlesLargeSpreadAndNegativeInfinity()
    {
        // −inf is a masked position: it must come out exactly 0; huge spreads underflow to 0 or subnormals.
        float[] x = new float[40];
        for (int i = 0; i < x.Length; i++) x[i] = i % 5 == 0 ? float.NegativeInfinity : i * 3.1f - 60f;
        CompareInPlace(x, [], (p, _) => Elementwise.Softmax(p, x.Length), (p, _) => Elementwise.SoftmaxReference(p, x.Length), 2e-6f, "Softmax special");
        fixed (float* p = x)
        {
            Elementwise.Softmax(p, x.Length);
            Assert.Equal(0f, x[0]);
        }
    }

    [Fact]
    public void VectorExp_IsWithinTwoMillionthsOfMathF_AcrossTheRange()
    {
        // Dense sweep of the finite range through softmax's exp (max pinned at 0 by a leading 0).
        const int count = 200_001;
        float[] x = new float[count + 1];
        for (int i = 0; i < count; i++) x[i + 1] = -103f + 103f * i / (count - 1);
        float[] copy = (float[])x.Clone();
        fixed (float* p = x) fixed (float* q = copy)
        {
            Elementwise.Softmax(p, x.Length);
            Elementwise.SoftmaxReference(q, copy.Length);
        }
        KernelTestData.AssertClose(copy, x, 2e-6f, 1e-44f, "exp sweep");
    }

    /// <summary>An operation that rewrites data in place, reading other (which it leaves alone).</summary>
    private delegate void InPlace(float* data, float* other);

    private static void CompareInPlace(float[] input, float[] other, InPlace fast, InPlace reference, float relative, string what)
    {
        float[] expected = (float[])input.Clone(), actual = (float[])input.Clone();
        fixed (float* po = other)
        {
            fixed (float* pe = expected) reference(pe, po);
            fixed (float* pa = actual) fast(pa, po);
        }
        if (relative == 0) Assert.Equal(expected, actual);
        else KernelTestData.AssertClose(expected, actual, relative, 1e-37f, $"{what} n={input.Length}");
    }
}

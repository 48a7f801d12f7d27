using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = rows (tokens), D = row width (hidden or head size), n = element count.
//
// Each operation's vector loop is written once, generic over the width (IFloatVectorOps): it runs with 512-bit
// vectors when those are accelerated, else with 256-bit ones, then a scalar tail finishes; without vector
// hardware only the scalar loop runs. Element order and rounding follow the reference
// twins (separate multiply and add where the reference has them), so results differ only where a
// reduction (sum, max) is reassociated, or by the vector exp's ulp.
// In-place use: y may equal x in RmsNorm; the other operations work in place by contract.

/// <summary>RMSNorm, SiLU-gated MLP activation, softmax and small vector ops.</summary>
public static unsafe class Elementwise
{
    /// <summary>y[M,D] = x / sqrt(mean(x²) + eps) * gamma[D]. y may alias x. invRms[M], when given, receives each row's 1 / sqrt(…).</summary>
    public static void RmsNorm(float* y, float* x, float* gamma, int m, int d, float eps, float* invRms = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * d, yi = y + (long)i * d;
            float inv = 1f / MathF.Sqrt(SumOfSquares(xi, d) / d + eps);
            if (invRms != null) invRms[i] = inv;   // [M] kept for the backward (training)
            long j = Vector512.IsHardwareAccelerated ? ScaleByAndMultiply<Vector512<float>, Vector512Ops>(yi, xi, inv, gamma, d)
                : Vector256.IsHardwareAccelerated ? ScaleByAndMultiply<Vector256<float>, Vector256Ops>(yi, xi, inv, gamma, d) : 0;
            for (; j < d; j++) yi[j] = xi[j] * inv * gamma[j];
        }
    }

    /// <summary>y = x · a · g over whole vectors; returns where the scalar tail starts.</summary>
    private static long ScaleByAndMultiply<TVec, TOps>(float* y, float* x, float a, float* g, long n) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int w = TOps.Count;
        var scale = TOps.Create(a);
        long j = 0;
        for (; j + w <= n; j += w) TOps.Store(TOps.Multiply(TOps.Multiply(TOps.Load(x + j), scale), TOps.Load(g + j)), y + j);
        return j;
    }

    public static void RmsNormReference(float* y, float* x, float* gamma, int m, int d, float eps)
    {
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * d, yi = y + (long)i * d;
            float ss = 0;
            for (int j = 0; j < d; j++) ss += xi[j] * xi[j];
            float inv = 1f / MathF.Sqrt(ss / d + eps);
            for (int j = 0; j < d; j++) yi[j] = xi[j] * inv * gamma[j];
        }
    }

    private static float SumOfSquares(float* x, int n)
    {
        int i = 0;
        float sum = Vector512.IsHardwareAccelerated ? SumOfSquares<Vector512<float>, Vector512Ops>(x, n, ref i)
            : Vector256.IsHardwareAccelerated ? SumOfSquares<Vector256<float>, Vector256Ops>(x, n, ref i) : 0;
        for (; i < n; i++) sum += x[i] * x[i];
        return sum;
    }

    private static float SumOfSquares<TVec, TOps>(float* x, int n, ref int next) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int i = next;   // a local, so the loop counter stays in a register (a ref would go through memory)
        int w = TOps.Count;
        TVec a0 = TOps.Zero, a1 = TOps.Zero;
        for (; i + 2 * w <= n; i += 2 * w)
        {
            TVec v0 = TOps.Load(x + i), v1 = TOps.Load(x + i + w);
            a0 = TOps.FusedMultiplyAdd(v0, v0, a0);
            a1 = TOps.FusedMultiplyAdd(v1, v1, a1);
        }
        for (; i + w <= n; i += w) { TVec v = TOps.Load(x + i); a0 = TOps.FusedMultiplyAdd(v, v, a0); }
        next = i;
        return TOps.Sum(TOps.Add(a0, a1));
    }

    /// <summary>gate[n] = silu(gate) * up, in place: the SiLU-gated MLP's activation.</summary>
    public static void SiluMul(float* gate, float* up, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = Vector512.IsHardwareAccelerated ? SiluMul<Vector512<float>, Vector512Ops>(gate, up, n)
            : Vector256.IsHardwareAccelerated ? SiluMul<Vector256<float>, Vector256Ops>(gate, up, n) : 0;
        for (; i < n; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    private static long SiluMul<TVec, TOps>(float* gate, float* up, long n) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int w = TOps.Count;
        long i = 0;
        for (; i + w <= n; i += w)
        {
            TVec g = TOps.Load(gate + i);
            TOps.Store(TOps.Multiply(TOps.Divide(g, TOps.Add(TOps.One, VectorMath.Exp<TVec, TOps>(TOps.Negate(g)))), TOps.Load(up + i)), gate + i);
        }
        return i;
    }

    public static void SiluMulReference(float* gate, float* up, long n)
    {
        for (long i = 0; i < n; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>In-place softmax over x[n] (max-subtracted).</summary>
    public static void Softmax(float* x, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (n == 0) return;
        float max = Max(x, n);
        float sum = ExpSubtractAndSum(x, n, max);
        Scale(x, 1f / sum, n);
    }

    public static void SoftmaxReference(float* x, int n)
    {
        if (n == 0) return;
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = MathF.Max(max, x[i]);
        float sum = 0;
        for (int i = 0; i < n; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        float inv = 1f / sum;
        for (int i = 0; i < n; i++) x[i] *= inv;
    }

    /// <summary>The largest of x[n] (−∞ when n is 0).</summary>
    internal static float Max(float* x, int n)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16) max = Max<Vector512<float>, Vector512Ops>(x, n, ref i);
        else if (Vector256.IsHardwareAccelerated && n >= 8) max = Max<Vector256<float>, Vector256Ops>(x, n, ref i);
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        return max;
    }

    private static float Max<TVec, TOps>(float* x, int n, ref int next) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int i = next;   // a local, so the loop counter stays in a register (a ref would go through memory)
        int w = TOps.Count;
        TVec m = TOps.Create(float.NegativeInfinity);
        for (; i + w <= n; i += w) m = TOps.Max(m, TOps.Load(x + i));
        float max = float.NegativeInfinity;
        for (int lane = 0; lane < w; lane++) max = MathF.Max(max, TOps.Element(m, lane));
        next = i;
        return max;
    }

    /// <summary>x[i] = exp(x[i] − max) in place; returns the sum of the new values.</summary>
    internal static float ExpSubtractAndSum(float* x, int n, float max)
    {
        int i = 0;
        float sum = Vector512.IsHardwareAccelerated ? ExpSubtractAndSum<Vector512<float>, Vector512Ops>(x, n, max, ref i)
            : Vector256.IsHardwareAccelerated ? ExpSubtractAndSum<Vector256<float>, Vector256Ops>(x, n, max, ref i) : 0;
        for (; i < n; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        return sum;
    }

    private static float ExpSubtractAndSum<TVec, TOps>(float* x, int n, float max, ref int next) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int i = next;   // a local, so the loop counter stays in a register (a ref would go through memory)
        int w = TOps.Count;
        TVec shift = TOps.Create(max), total = TOps.Zero;
        for (; i + w <= n; i += w)
        {
            TVec e = VectorMath.Exp<TVec, TOps>(TOps.Subtract(TOps.Load(x + i), shift));
            TOps.Store(e, x + i);
            total = TOps.Add(total, e);
        }
        next = i;
        return TOps.Sum(total);
    }

    /// <summary>y[n] += x[n].</summary>
    public static void Add(float* y, float* x, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = Vector512.IsHardwareAccelerated ? Axpy<Vector512<float>, Vector512Ops>(y, null, x, n)
            : Vector256.IsHardwareAccelerated ? Axpy<Vector256<float>, Vector256Ops>(y, null, x, n) : 0;
        for (; i < n; i++) y[i] += x[i];
    }

    public static void AddReference(float* y, float* x, long n)
    {
        for (long i = 0; i < n; i++) y[i] += x[i];
    }

    /// <summary>y[n] += a * x[n].</summary>
    public static void Axpy(float* y, float a, float* x, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = Vector512.IsHardwareAccelerated ? Axpy<Vector512<float>, Vector512Ops>(y, &a, x, n)
            : Vector256.IsHardwareAccelerated ? Axpy<Vector256<float>, Vector256Ops>(y, &a, x, n) : 0;
        for (; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>y += a·x (a null: y += x) over whole vectors, multiply then add (not fused) as the reference rounds; returns where the tail starts.</summary>
    private static long Axpy<TVec, TOps>(float* y, float* a, float* x, long n) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int w = TOps.Count;
        long i = 0;
        if (a is null)
            for (; i + w <= n; i += w) TOps.Store(TOps.Add(TOps.Load(y + i), TOps.Load(x + i)), y + i);
        else
        {
            var av = TOps.Create(*a);
            for (; i + w <= n; i += w) TOps.Store(TOps.Add(TOps.Load(y + i), TOps.Multiply(av, TOps.Load(x + i))), y + i);
        }
        return i;
    }

    public static void AxpyReference(float* y, float a, float* x, long n)
    {
        for (long i = 0; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>x[n] *= a.</summary>
    public static void Scale(float* x, float a, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = Vector512.IsHardwareAccelerated ? Scale<Vector512<float>, Vector512Ops>(x, a, n)
            : Vector256.IsHardwareAccelerated ? Scale<Vector256<float>, Vector256Ops>(x, a, n) : 0;
        for (; i < n; i++) x[i] *= a;
    }

    private static long Scale<TVec, TOps>(float* x, float a, long n) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int w = TOps.Count;
        var av = TOps.Create(a);
        long i = 0;
        for (; i + w <= n; i += w) TOps.Store(TOps.Multiply(TOps.Load(x + i), av), x + i);
        return i;
    }

    public static void ScaleReference(float* x, float a, long n)
    {
        for (long i = 0; i < n; i++) x[i] *= a;
    }

    /// <summary>Σ x[i]·y[i] over n.</summary>
    public static float Dot(float* x, float* y, int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        int i = 0;
        float sum = Vector512.IsHardwareAccelerated ? Dot<Vector512<float>, Vector512Ops>(x, y, n, ref i)
            : Vector256.IsHardwareAccelerated ? Dot<Vector256<float>, Vector256Ops>(x, y, n, ref i) : 0;
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    private static float Dot<TVec, TOps>(float* x, float* y, int n, ref int next) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        int i = next;   // a local, so the loop counter stays in a register (a ref would go through memory)
        int w = TOps.Count;
        TVec a0 = TOps.Zero, a1 = TOps.Zero, a2 = TOps.Zero, a3 = TOps.Zero;
        for (; i + 4 * w <= n; i += 4 * w)
        {
            a0 = TOps.FusedMultiplyAdd(TOps.Load(x + i), TOps.Load(y + i), a0);
            a1 = TOps.FusedMultiplyAdd(TOps.Load(x + i + w), TOps.Load(y + i + w), a1);
            a2 = TOps.FusedMultiplyAdd(TOps.Load(x + i + 2 * w), TOps.Load(y + i + 2 * w), a2);
            a3 = TOps.FusedMultiplyAdd(TOps.Load(x + i + 3 * w), TOps.Load(y + i + 3 * w), a3);
        }
        for (; i + w <= n; i += w) a0 = TOps.FusedMultiplyAdd(TOps.Load(x + i), TOps.Load(y + i), a0);
        next = i;
        return TOps.Sum(TOps.Add(TOps.Add(a0, a1), TOps.Add(a2, a3)));
    }

    public static float DotReference(float* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * y[i];
        return sum;
    }
}

using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = rows (tokens), D = row width (hidden or head size), n = element count.
//
// Each operation runs a 512-bit loop when those vectors are accelerated, else a 256-bit loop, then a scalar
// tail; without vector hardware only the scalar loop runs. Element order and rounding follow the reference
// twins (separate multiply and add where the reference has them), so results differ only where a
// reduction (sum, max) is reassociated, or by the vector exp's ulp.
// In-place use: y may equal x in RmsNorm; the other operations work in place by contract.

/// <summary>RMSNorm, SiLU-gated MLP activation, softmax and small vector ops.</summary>
public static unsafe class Elementwise
{
    /// <summary>y[M,D] = x / sqrt(mean(x²) + eps) * gamma[D]. y may alias x.</summary>
    public static void RmsNorm(float* y, float* x, float* gamma, int m, int d, float eps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * d, yi = y + (long)i * d;
            float inv = 1f / MathF.Sqrt(SumOfSquares(xi, d) / d + eps);
            int j = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var scale = Vector512.Create(inv);
                for (; j + 16 <= d; j += 16) (Vector512.Load(xi + j) * scale * Vector512.Load(gamma + j)).Store(yi + j);
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var scale = Vector256.Create(inv);
                for (; j + 8 <= d; j += 8) (Vector256.Load(xi + j) * scale * Vector256.Load(gamma + j)).Store(yi + j);
            }
            for (; j < d; j++) yi[j] = xi[j] * inv * gamma[j];
        }
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
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a0 = default, a1 = default;
            for (; i + 32 <= n; i += 32)
            {
                Vector512<float> v0 = Vector512.Load(x + i), v1 = Vector512.Load(x + i + 16);
                a0 = Vector512.FusedMultiplyAdd(v0, v0, a0);
                a1 = Vector512.FusedMultiplyAdd(v1, v1, a1);
            }
            for (; i + 16 <= n; i += 16) { Vector512<float> v = Vector512.Load(x + i); a0 = Vector512.FusedMultiplyAdd(v, v, a0); }
            sum = Vector512.Sum(a0 + a1);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a0 = default, a1 = default;
            for (; i + 16 <= n; i += 16)
            {
                Vector256<float> v0 = Vector256.Load(x + i), v1 = Vector256.Load(x + i + 8);
                a0 = Vector256.FusedMultiplyAdd(v0, v0, a0);
                a1 = Vector256.FusedMultiplyAdd(v1, v1, a1);
            }
            for (; i + 8 <= n; i += 8) { Vector256<float> v = Vector256.Load(x + i); a0 = Vector256.FusedMultiplyAdd(v, v, a0); }
            sum = Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) sum += x[i] * x[i];
        return sum;
    }

    /// <summary>gate[n] = silu(gate) * up, in place: the SiLU-gated MLP's activation.</summary>
    public static void SiluMul(float* gate, float* up, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16)
            {
                Vector512<float> g = Vector512.Load(gate + i);
                (g / (Vector512<float>.One + VectorMath.Exp(-g)) * Vector512.Load(up + i)).Store(gate + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8)
            {
                Vector256<float> g = Vector256.Load(gate + i);
                (g / (Vector256<float>.One + VectorMath.Exp(-g)) * Vector256.Load(up + i)).Store(gate + i);
            }
        }
        for (; i < n; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
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

    private static float Max(float* x, int n)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> m = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16) m = Vector512.Max(m, Vector512.Load(x + i));
            for (int lane = 0; lane < 16; lane++) max = MathF.Max(max, m[lane]);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> m = Vector256.Create(float.NegativeInfinity);
            for (; i + 8 <= n; i += 8) m = Vector256.Max(m, Vector256.Load(x + i));
            for (int lane = 0; lane < 8; lane++) max = MathF.Max(max, m[lane]);
        }
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        return max;
    }

    /// <summary>x[i] = exp(x[i] − max) in place; returns the sum of the new values.</summary>
    private static float ExpSubtractAndSum(float* x, int n, float max)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> shift = Vector512.Create(max), total = default;
            for (; i + 16 <= n; i += 16)
            {
                Vector512<float> e = VectorMath.Exp(Vector512.Load(x + i) - shift);
                e.Store(x + i);
                total += e;
            }
            sum = Vector512.Sum(total);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> shift = Vector256.Create(max), total = default;
            for (; i + 8 <= n; i += 8)
            {
                Vector256<float> e = VectorMath.Exp(Vector256.Load(x + i) - shift);
                e.Store(x + i);
                total += e;
            }
            sum = Vector256.Sum(total);
        }
        for (; i < n; i++) { x[i] = MathF.Exp(x[i] - max); sum += x[i]; }
        return sum;
    }

    /// <summary>y[n] += x[n].</summary>
    public static void Add(float* y, float* x, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16) (Vector512.Load(y + i) + Vector512.Load(x + i)).Store(y + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8) (Vector256.Load(y + i) + Vector256.Load(x + i)).Store(y + i);
        }
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
        long i = 0;
        // Multiply then add (not fused), as the reference rounds.
        if (Vector512.IsHardwareAccelerated)
        {
            var av = Vector512.Create(a);
            for (; i + 16 <= n; i += 16) (Vector512.Load(y + i) + av * Vector512.Load(x + i)).Store(y + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(a);
            for (; i + 8 <= n; i += 8) (Vector256.Load(y + i) + av * Vector256.Load(x + i)).Store(y + i);
        }
        for (; i < n; i++) y[i] += a * x[i];
    }

    public static void AxpyReference(float* y, float a, float* x, long n)
    {
        for (long i = 0; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>x[n] *= a.</summary>
    public static void Scale(float* x, float a, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var av = Vector512.Create(a);
            for (; i + 16 <= n; i += 16) (Vector512.Load(x + i) * av).Store(x + i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var av = Vector256.Create(a);
            for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) * av).Store(x + i);
        }
        for (; i < n; i++) x[i] *= a;
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
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 64 <= n; i += 64)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 16), Vector512.Load(y + i + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 32), Vector512.Load(y + i + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i + 48), Vector512.Load(y + i + 48), a3);
            }
            for (; i + 16 <= n; i += 16) a0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Load(y + i), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 32 <= n; i += 32)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 8), Vector256.Load(y + i + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 16), Vector256.Load(y + i + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i + 24), Vector256.Load(y + i + 24), a3);
            }
            for (; i + 8 <= n; i += 8) a0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Load(y + i), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    public static float DotReference(float* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * y[i];
        return sum;
    }
}

namespace Alora.Kernels;

// Legend: M = rows (tokens), D = row width (hidden or head size).

/// <summary>RMSNorm, SiLU-gated MLP activation, softmax and small vector ops.</summary>
public static unsafe class Elementwise
{
    /// <summary>y[M,D] = x / sqrt(mean(x²) + eps) * gamma[D]. y may alias x.</summary>
    public static void RmsNorm(float* y, float* x, float* gamma, int m, int d, float eps)
        => RmsNormReference(y, x, gamma, m, d, eps);

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

    /// <summary>gate[n] = silu(gate) * up, in place: the SiLU-gated MLP's activation.</summary>
    public static void SiluMul(float* gate, float* up, long n) => SiluMulReference(gate, up, n);

    public static void SiluMulReference(float* gate, float* up, long n)
    {
        for (long i = 0; i < n; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>In-place softmax over x[n] (max-subtracted).</summary>
    public static void Softmax(float* x, int n) => SoftmaxReference(x, n);

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

    /// <summary>y[n] += x[n].</summary>
    public static void Add(float* y, float* x, long n) => AddReference(y, x, n);

    public static void AddReference(float* y, float* x, long n)
    {
        for (long i = 0; i < n; i++) y[i] += x[i];
    }

    /// <summary>y[n] += a * x[n].</summary>
    public static void Axpy(float* y, float a, float* x, long n) => AxpyReference(y, a, x, n);

    public static void AxpyReference(float* y, float a, float* x, long n)
    {
        for (long i = 0; i < n; i++) y[i] += a * x[i];
    }

    /// <summary>x[n] *= a.</summary>
    public static void Scale(float* x, float a, long n) => ScaleReference(x, a, n);

    public static void ScaleReference(float* x, float a, long n)
    {
        for (long i = 0; i < n; i++) x[i] *= a;
    }

    /// <summary>Σ x[i]·y[i] over n.</summary>
    public static float Dot(float* x, float* y, int n) => DotReference(x, y, n);

    public static float DotReference(float* x, float* y, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += x[i] * y[i];
        return sum;
    }
}

using Alora.Kernels;

namespace Alora.Training;

// Legend: M = token rows, D = row width (hidden).

/// <summary>RMSNorm for training: the forward keeps 1/rms per row; the backward gives dx (and dγ on request).</summary>
public static unsafe class RmsNormTraining
{
    /// <summary>y[M,D] = x·r·γ with r = 1/sqrt(mean(x²) + eps); invRms[M] = r.</summary>
    public static void Forward(float* y, float* invRms, float* x, float* gamma, int m, int d, float eps)
        => Elementwise.RmsNorm(y, x, gamma, m, d, eps, invRms);

    /// <summary>
    /// dx[M,D] += r·(γ⊙dy − x·r²·mean(x⊙γ⊙dy)) per row; dγ[D] += Σ_rows dy⊙x·r when <paramref name="dgamma"/>
    /// is not null. dx accumulates because it is a residual stream's gradient.
    /// </summary>
    public static void Backward(float* dx, float* dgamma, float* dy, float* x, float* gamma, float* invRms, int m, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * d, dyi = dy + (long)i * d, dxi = dx + (long)i * d;
            float r = invRms[i];
            float dot = 0;   // Σ_j x_j γ_j dy_j
            for (int j = 0; j < d; j++) dot += xi[j] * gamma[j] * dyi[j];
            float coefficient = r * r * r * dot / d;
            for (int j = 0; j < d; j++) dxi[j] += r * gamma[j] * dyi[j] - coefficient * xi[j];
            if (dgamma != null)
                for (int j = 0; j < d; j++) dgamma[j] += dyi[j] * xi[j] * r;
        }
    }

    /// <summary>Reference twin of <see cref="Backward"/> in double, with r recomputed from x.</summary>
    public static void BackwardReference(float* dx, float* dgamma, float* dy, float* x, float* gamma, int m, int d, float eps)
    {
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * d, dyi = dy + (long)i * d;
            double ss = 0, dot = 0;
            for (int j = 0; j < d; j++) { ss += (double)xi[j] * xi[j]; dot += (double)xi[j] * gamma[j] * dyi[j]; }
            double r = 1 / Math.Sqrt(ss / d + eps);
            for (int j = 0; j < d; j++)
            {
                dx[(long)i * d + j] += (float)(r * gamma[j] * dyi[j] - r * r * r * dot / d * xi[j]);
                if (dgamma != null) dgamma[j] += (float)(dyi[j] * xi[j] * r);
            }
        }
    }
}

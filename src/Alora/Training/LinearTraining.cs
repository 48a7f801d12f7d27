using Alora.Kernels;

namespace Alora.Training;

// Legend: M = token rows, K = in features, N = out features, r = LoRA rank.

/// <summary>
/// A Linear layer with a frozen weight and an optional LoRA side path, y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ, where the
/// side path applies only to the adapted rows. Backward gives dx through W and the side path, and dA, dB.
/// </summary>
public static unsafe class LinearTraining
{
    /// <summary>y[M,N] = x[M,K]·Wᵀ (+ bias[N]).</summary>
    public static void Forward(float* y, float* x, in WeightMatrix weight, float* bias, int m)
    {
        Gemm.MatMul(y, x, weight, m);
        if (bias != null)
            for (int i = 0; i < m; i++) Elementwise.Add(y + (long)i * weight.Rows, bias, weight.Rows);
    }

    /// <summary>dx[M,K] (+)= dy[M,N]·W: the input gradient through the frozen weight (the shared backward GEMM).</summary>
    public static void Backward(float* dx, float* dy, in WeightMatrix weight, int m, bool accumulate)
        => Gemm.MatMulNoTranspose(dx, dy, weight, m, accumulate);

    /// <summary>y[M,N] += s·(x[M,K]·Aᵀ)·Bᵀ for M adapted rows; scratch u[M, r] receives s·x·Aᵀ.</summary>
    public static void LoraForward(float* y, float* scratch, float* x, TrainableModule lora, int m)
    {
        if (m == 0) return;
        LowRankKernels.Project(scratch, x, lora.A, m, lora.InFeatures, lora.Rank, lora.Scaling);
        LowRankKernels.Expand(y, scratch, lora.B, m, lora.OutFeatures, lora.Rank);
    }

    /// <summary>
    /// For M adapted rows: dB[N,r] += s·dyᵀ·(x·Aᵀ), dA[r,K] += s·(dy·B)ᵀ·x, and dx[M,K] += s·(dy·B)·A.
    /// scratchU and scratchG are [M, r] work buffers.
    /// </summary>
    public static void LoraBackward(float* dx, float* dy, float* x, TrainableModule lora, int m, float* scratchU, float* scratchG)
    {
        if (m == 0) return;
        LowRankKernels.Backward(dx, lora.DA, lora.DB, dy, x, lora.A, lora.B, lora.Scaling,
            m, lora.InFeatures, lora.OutFeatures, lora.Rank, scratchU, scratchG);
    }

    /// <summary>Reference twin of <see cref="LoraBackward"/> from the definition, in double.</summary>
    public static void LoraBackwardReference(float* dx, float* dy, float* x, TrainableModule lora, int m)
    {
        int r = lora.Rank, k = lora.InFeatures, n = lora.OutFeatures;
        float s = lora.Scaling;
        var u = new double[r];
        var g = new double[r];
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * k, dyi = dy + (long)i * n;
            for (int a = 0; a < r; a++)
            {
                u[a] = 0;
                for (int p = 0; p < k; p++) u[a] += (double)lora.A[(long)a * k + p] * xi[p];
                g[a] = 0;
                for (int j = 0; j < n; j++) g[a] += (double)dyi[j] * lora.B[(long)j * r + a];
                g[a] *= s;
            }
            for (int j = 0; j < n; j++)
                for (int a = 0; a < r; a++) lora.DB[(long)j * r + a] += (float)(s * dyi[j] * u[a]);
            for (int a = 0; a < r; a++)
                for (int p = 0; p < k; p++)
                {
                    lora.DA[(long)a * k + p] += (float)(g[a] * xi[p]);
                    dx[(long)i * k + p] += (float)(g[a] * lora.A[(long)a * k + p]);
                }
        }
    }
}

using Alora.Tensors;

namespace Alora.Kernels;

// Legend: M = activation rows (tokens), K = input features, N = output features.
// y [M, N] = x [M, K] · Wᵀ, with W [N, K] row-major (a Hugging Face Linear weight).

/// <summary>Activations × weightᵀ. The public entry point picks the fastest path for the shape.</summary>
public static unsafe class Gemm
{
    /// <summary>y[M,N] = x[M,K]·Wᵀ, or y += x·Wᵀ when <paramref name="accumulate"/>.</summary>
    public static void MatMul(float* y, float* x, in WeightMatrix w, int m, bool accumulate = false)
        => MatMulReference(y, x, w, m, accumulate);

    /// <summary>Scalar reference twin: plain triple loop with f32 accumulation.</summary>
    public static void MatMulReference(float* y, float* x, in WeightMatrix w, int m, bool accumulate = false)
    {
        int n = w.Rows, k = w.Cols;
        for (int i = 0; i < m; i++)
        {
            float* xi = x + (long)i * k;
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++) sum += xi[p] * w[j, p];
                float* yij = y + (long)i * n + j;
                *yij = accumulate ? *yij + sum : sum;
            }
        }
    }
}

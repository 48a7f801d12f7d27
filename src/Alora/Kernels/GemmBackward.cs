using System.Runtime.Intrinsics;
using Alora.Tensors;

namespace Alora.Kernels;

// Legend: M = activation rows (tokens), K = input features, N = output features of the Linear W [N, K].
// The two products a Linear's backward pass needs, on the same packed micro-kernels as the forward:
//   dX [M, K] = dY [M, N] · W [N, K]        MatMulNoTranspose (W read depth-major: no transpose in packing)
//   dW [N, K] = dY [M, N]ᵀ · X [M, K]       MatMulTransposeA (dY read column-wise in place, X depth-major)

public static unsafe partial class Gemm
{
    /// <summary>y[M,K] = x[M,N]·W with W [N,K] (the input gradient of a Linear), or y += x·W when <paramref name="accumulate"/>.</summary>
    public static void MatMulNoTranspose(float* y, float* x, in WeightMatrix w, int m, bool accumulate = false)
        => MatMulNoTranspose(y, x, w, m, accumulate, WorkerPool.Shared);

    internal static void MatMulNoTranspose(float* y, float* x, in WeightMatrix w, int m, bool accumulate, WorkerPool pool)
    {
        int n = w.Rows, k = w.Cols;
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        if (m == 0 || k == 0) return;
        if (y == null) throw new ArgumentNullException(nameof(y), $"output y [{m}, {k}] is null");
        if (n > 0 && x == null) throw new ArgumentNullException(nameof(x), $"input x [{m}, {n}] is null");
        if (n > 0 && w.Data == null) throw new ArgumentException($"weight [{n}, {k}] has no data", nameof(w));
        if (n == 0)
        {
            if (!accumulate) Clear(y, (long)m * k);
            return;
        }
        switch (w.DType)
        {
            case DType.F32: DispatchDepthMajor<F32Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.BF16: DispatchDepthMajor<BF16Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.F16: DispatchDepthMajor<F16Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q8_0: DispatchDepthMajor<Q8_0Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q4_0: DispatchDepthMajor<Q4_0Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q4_1: DispatchDepthMajor<Q4_1Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q5_0: DispatchDepthMajor<Q5_0Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q5_1: DispatchDepthMajor<Q5_1Load>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q4_K: DispatchDepthMajor<Q4_KLoad>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q5_K: DispatchDepthMajor<Q5_KLoad>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q6_K: DispatchDepthMajor<Q6_KLoad>(y, x, w.Data, m, n, k, accumulate, pool); break;
            case DType.Q8_K: DispatchDepthMajor<Q8_KLoad>(y, x, w.Data, m, n, k, accumulate, pool); break;
            default: throw new ArgumentException($"unknown weight dtype {w.DType}", nameof(w));
        }
    }

    /// <summary>Scalar reference twin of <see cref="MatMulNoTranspose(float*, float*, in WeightMatrix, int, bool)"/>.</summary>
    public static void MatMulNoTransposeReference(float* y, float* x, in WeightMatrix w, int m, bool accumulate = false)
    {
        int n = w.Rows, k = w.Cols;
        for (int i = 0; i < m; i++)
        {
            for (int p = 0; p < k; p++)
            {
                float sum = 0;
                for (int j = 0; j < n; j++) sum += x[(long)i * n + j] * w[j, p];
                float* yip = y + (long)i * k + p;
                *yip = accumulate ? *yip + sum : sum;
            }
        }
    }

    /// <summary>
    /// y[N,K] = a[M,N]ᵀ·b[M,K] (the weight gradient dW = dYᵀ·X), or y += aᵀ·b when <paramref name="accumulate"/>.
    /// f32 only.
    /// </summary>
    public static void MatMulTransposeA(float* y, float* a, float* b, int m, int n, int k, bool accumulate = false)
        => MatMulTransposeA(y, a, b, m, n, k, accumulate, WorkerPool.Shared);

    internal static void MatMulTransposeA(float* y, float* a, float* b, int m, int n, int k, bool accumulate, WorkerPool pool)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (n == 0 || k == 0) return;
        if (y == null) throw new ArgumentNullException(nameof(y), $"output y [{n}, {k}] is null");
        if (m == 0)
        {
            if (!accumulate) Clear(y, (long)n * k);
            return;
        }
        if (a == null) throw new ArgumentNullException(nameof(a), $"input a [{m}, {n}] is null");
        if (b == null) throw new ArgumentNullException(nameof(b), $"input b [{m}, {k}] is null");
        // aᵀ is read in place: row j of aᵀ at depth i is a[i·N + j], so the micro-kernel's rows of one depth
        // step are adjacent floats of a.
        DispatchDepthMajor<F32Load>(y, a, b, n, m, k, accumulate, pool, xTransposed: true);
    }

    /// <summary>Scalar reference twin of <see cref="MatMulTransposeA(float*, float*, float*, int, int, int, bool)"/>.</summary>
    public static void MatMulTransposeAReference(float* y, float* a, float* b, int m, int n, int k, bool accumulate = false)
    {
        for (int j = 0; j < n; j++)
        {
            for (int p = 0; p < k; p++)
            {
                float sum = 0;
                for (int i = 0; i < m; i++) sum += a[(long)i * n + j] * b[(long)i * k + p];
                float* yjp = y + (long)j * k + p;
                *yjp = accumulate ? *yjp + sum : sum;
            }
        }
    }

    /// <summary>y[rows, cols] (+)= x[rows, depth] · w[depth, cols].</summary>
    private static void DispatchDepthMajor<TLoad>(float* y, float* x, void* w, int rows, int depth, int cols, bool accumulate, WorkerPool pool,
        bool xTransposed = false)
        where TLoad : struct, IWeightLoad
    {
        if (Vector512.IsHardwareAccelerated)
            GemmPacked.Run<MicroKernel512, TLoad>(y, x, w, rows, depth, cols, accumulate, pool, outputsMajor: false, xTransposed);
        else if (Vector256.IsHardwareAccelerated)
            GemmPacked.Run<MicroKernel256, TLoad>(y, x, w, rows, depth, cols, accumulate, pool, outputsMajor: false, xTransposed);
        else
            GemmPacked.Run<MicroKernelScalar, TLoad>(y, x, w, rows, depth, cols, accumulate, pool, outputsMajor: false, xTransposed);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Alora.Tensors;

namespace Alora.Kernels;

// Legend: M = activation rows (tokens), K = input features, N = output features.
// y [M, N] = x [M, K] · Wᵀ, with W [N, K] row-major (a Hugging Face Linear weight).

/// <summary>Activations × weightᵀ. The public entry point picks the fastest path for the shape.</summary>
/// <remarks>
/// Paths: M ≤ <see cref="Gemv.MaxRows"/> streams W once (<see cref="Gemv"/>); larger M packs W panels and
/// runs a register-tile micro-kernel (<see cref="GemmPacked"/>) on 512-bit vectors when they are
/// accelerated, else on 256-bit vectors; without either, a threaded scalar loop. All accumulate in f32.
/// y must not overlap x or W.
/// </remarks>
public static unsafe class Gemm
{
    /// <summary>
    /// When true (the default), every row's result is bit-identical whatever the number of rows in the call:
    /// prefill rows take the GEMV's dot-product tiles (<see cref="Gemv.RunRowGroups"/>) instead of the packed
    /// micro-kernel, whose per-element summation order differs from the decode path's. That is what makes an
    /// aLoRA on a reused base KV cache equal a from-scratch recompute, and chunked prefill equal one pass.
    /// False selects the packed kernel for M &gt; 4 (faster on some shapes; results then differ in the last bits).
    /// </summary>
    public static bool BatchInvariant { get; set; } = true;

    /// <summary>y[M,N] = x[M,K]·Wᵀ, or y += x·Wᵀ when <paramref name="accumulate"/>.</summary>
    public static void MatMul(float* y, float* x, in WeightMatrix w, int m, bool accumulate = false)
        => MatMul(y, x, w, m, accumulate, WorkerPool.Shared);

    /// <summary>As <see cref="MatMul(float*, float*, in WeightMatrix, int, bool)"/> on a given pool (benchmarks run it on a 1-thread pool).</summary>
    internal static void MatMul(float* y, float* x, in WeightMatrix w, int m, bool accumulate, WorkerPool pool)
    {
        Validate(y, x, w, m);
        int n = w.Rows, k = w.Cols;
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            if (!accumulate) new Span<float>(y, checked(m * n)).Clear();
            return;
        }
        switch (w.DType)
        {
            case DType.F32: Dispatch<F32Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.BF16: Dispatch<BF16Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.F16: Dispatch<F16Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            default: throw new ArgumentException($"unknown weight dtype {w.DType}", nameof(w));
        }
    }

    /// <summary>y[M,N] (+)= x[M,K]·w[N,K]ᵀ for a plain f32 matrix (adapter factors, gradients).</summary>
    public static void MatMulF32(float* y, float* x, float* w, int m, int k, int n, bool accumulate = false)
        => MatMul(y, x, new WeightMatrix(w, DType.F32, n, k), m, accumulate);

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

    private static void Validate(float* y, float* x, in WeightMatrix w, int m)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        if (m == 0 || w.Rows == 0) return;
        if (y == null) throw new ArgumentNullException(nameof(y), $"output y [{m}, {w.Rows}] is null");
        if (w.Cols > 0 && x == null) throw new ArgumentNullException(nameof(x), $"input x [{m}, {w.Cols}] is null");
        if (w.Cols > 0 && w.Data == null) throw new ArgumentException($"weight [{w.Rows}, {w.Cols}] has no data", nameof(w));
        if ((long)m * w.Rows > int.MaxValue || (long)m * w.Cols > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(m), m, $"x [{m}, {w.Cols}] or y [{m}, {w.Rows}] has more than {int.MaxValue} elements");
    }

    private static void Dispatch<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        if (Vector512.IsHardwareAccelerated)
        {
            if (m <= Gemv.MaxRows) Gemv.Run<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else if (BatchInvariant) Gemv.RunRowGroups<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else GemmPacked.Run<MicroKernel512, TLoad>(y, x, w, m, k, n, accumulate, pool);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            if (m <= Gemv.MaxRows) Gemv.Run<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else if (BatchInvariant) Gemv.RunRowGroups<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else GemmPacked.Run<MicroKernel256, TLoad>(y, x, w, m, k, n, accumulate, pool);
        }
        else
        {
            var task = new ScalarTask<TLoad> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate };
            task.TaskCount = Math.Min(n, pool.ThreadCount * 2);
            pool.For(task.TaskCount, ref task);
        }
    }

    /// <summary>
    /// The fallback without vector hardware: each task converts its W rows to f32 one at a time and takes
    /// the dot product with every x row, with four partial sums to shorten the dependency chain.
    /// </summary>
    private struct ScalarTask<TLoad> : IParallelTask where TLoad : struct, IWeightLoad
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K]
        public void* W;    // [N, K]
        public int M, K, N, TaskCount;
        public bool Accumulate;

        [SkipLocalsInit]
        public void Execute(int index)
        {
            int j0 = (int)((long)N * index / TaskCount), j1 = (int)((long)N * (index + 1) / TaskCount);
            const int StackLimit = 8192;
            float[]? heapRow = K > StackLimit ? new float[K] : null;
            Span<float> rowSpan = heapRow ?? stackalloc float[Math.Min(K, StackLimit)];
            fixed (float* row = rowSpan) // [K] W row j as f32
            {
                for (int j = j0; j < j1; j++)
                {
                    long wj = (long)j * K;
                    for (int p = 0; p < K; p++) row[p] = TLoad.Scalar(W, wj + p);
                    for (int i = 0; i < M; i++)
                    {
                        float* xi = X + (long)i * K;
                        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                        int p = 0;
                        for (; p + 4 <= K; p += 4)
                        {
                            s0 += xi[p] * row[p];
                            s1 += xi[p + 1] * row[p + 1];
                            s2 += xi[p + 2] * row[p + 2];
                            s3 += xi[p + 3] * row[p + 3];
                        }
                        for (; p < K; p++) s0 += xi[p] * row[p];
                        float sum = (s0 + s1) + (s2 + s3);
                        float* yij = Y + (long)i * N + j;
                        *yij = Accumulate ? *yij + sum : sum;
                    }
                }
            }
        }
    }
}

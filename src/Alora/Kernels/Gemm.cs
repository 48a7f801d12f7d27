using System.Runtime.Intrinsics;
using Alora.Tensors;

namespace Alora.Kernels;

// Legend: M = activation rows (tokens), K = input features, N = output features.
// y [M, N] = x [M, K] · Wᵀ, with W [N, K] row-major (a Hugging Face Linear weight).

/// <summary>Activations × weightᵀ. The public entry point picks the fastest path for the shape.</summary>
/// <remarks>
/// Paths: M ≤ <see cref="Gemv.MaxRows"/> streams W once (<see cref="Gemv"/>); with <see cref="BatchInvariant"/>
/// (the default), M up to <see cref="Gemv.BatchMaxRows"/> (a batched decode step) also streams W once
/// (<see cref="Gemv.RunBatch{TLoad}"/>) and larger M runs the row groups (<see cref="Gemv.RunRowGroups{TLoad}"/>),
/// all three with the same per-element arithmetic. Without it, M &gt; 4 packs W panels and
/// runs a register-tile micro-kernel (<see cref="GemmPacked"/>) on 512-bit vectors when they are
/// accelerated, else on 256-bit vectors; without either, the same blocking with a scalar tile. All accumulate in f32.
/// y must not overlap x or W.
/// </remarks>
public static unsafe partial class Gemm
{
    /// <summary>
    /// When true (the default), every row's result is bit-identical whatever the number of rows in the call:
    /// batched decode rows (<see cref="Gemv.RunBatch"/>) and prefill rows (<see cref="Gemv.RunRowGroups"/>) take
    /// the GEMV's dot-product tiles instead of the packed
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
            if (!accumulate) Clear(y, (long)m * n);
            return;
        }
        switch (w.DType)
        {
            case DType.F32: Dispatch<F32Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.BF16: Dispatch<BF16Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.F16: Dispatch<F16Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q8_0: DispatchQuantized<Q8_0Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q4_0: DispatchQuantized<Q4_0Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q4_1: DispatchQuantized<Q4_1Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q5_0: DispatchQuantized<Q5_0Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q5_1: DispatchQuantized<Q5_1Load>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q4_K: DispatchQuantized<Q4_KLoad>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q5_K: DispatchQuantized<Q5_KLoad>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q6_K: DispatchQuantized<Q6_KLoad>(y, x, w.Data, m, k, n, accumulate, pool); break;
            case DType.Q8_K: DispatchQuantized<Q8_KLoad>(y, x, w.Data, m, k, n, accumulate, pool); break;
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
    }

    /// <summary>y[n] = 0 for any n (a Span covers at most int.MaxValue elements at a time).</summary>
    private static void Clear(float* y, long n)
    {
        for (long done = 0; done < n; done += int.MaxValue)
            new Span<float>(y + done, (int)Math.Min(int.MaxValue, n - done)).Clear();
    }

    /// <summary>
    /// Block-quantized W: decode rows (M ≤ 4) on 512-bit machines take the quantized GEMV (whole blocks decoded once
    /// per tile); everything else runs the dense paths on the type's loads. Both give the same bits (see GemvQuant.cs).
    /// </summary>
    private static void DispatchQuantized<TBlock>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TBlock : struct, IWeightLoad, IQuantBlock
    {
        if (Vector512.IsHardwareAccelerated && m <= Gemv.MaxRows) Gemv.RunQuantized<TBlock>(y, x, w, m, k, n, accumulate, pool);
        else Dispatch<TBlock>(y, x, w, m, k, n, accumulate, pool);
    }

    private static void Dispatch<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        if (Vector512.IsHardwareAccelerated)
        {
            if (m <= Gemv.MaxRows) Gemv.Run<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else if (BatchInvariant && m <= Gemv.BatchMaxRows) Gemv.RunBatch<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else if (BatchInvariant) Gemv.RunRowGroups<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else GemmPacked.Run<MicroKernel512, TLoad>(y, x, w, m, k, n, accumulate, pool);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            if (m <= Gemv.MaxRows) Gemv.Run<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else if (BatchInvariant && m <= Gemv.BatchMaxRows) Gemv.RunBatch<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else if (BatchInvariant) Gemv.RunRowGroups<TLoad>(y, x, w, m, k, n, accumulate, pool);
            else GemmPacked.Run<MicroKernel256, TLoad>(y, x, w, m, k, n, accumulate, pool);
        }
        else
        {
            GemmPacked.Run<MicroKernelScalar, TLoad>(y, x, w, m, k, n, accumulate, pool);
        }
    }
}

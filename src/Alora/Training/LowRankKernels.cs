using System.Buffers;
using Alora.Kernels;

namespace Alora.Training;

// Legend: M = adapted token rows, K = in features, N = out features, r = rank (small: 4–64).

/// <summary>
/// The LoRA side path's products. With r this small the general GEMMs spend their time packing and dispatching,
/// so each product here is a loop of long vectorized dots or axpys (length K or N), with B transposed to [r, N]
/// first so every inner loop runs over contiguous memory. Tasks own disjoint output rows.
/// </summary>
internal static unsafe class LowRankKernels
{
    /// <summary>u[M, r] = scale · x[M, K]·A[r, K]ᵀ.</summary>
    public static void Project(float* u, float* x, float* a, int m, int k, int r, float scale)
    {
        var task = new RowDots { Output = u, Rows = x, Vectors = a, M = m, Width = k, Count = r, Scale = scale };
        RunOverRows(ref task, m, (long)m * r * k);
    }

    /// <summary>y[M, N] += u[M, r]·B[N, r]ᵀ.</summary>
    public static void Expand(float* y, float* u, float* b, int m, int n, int r)
    {
        float[] rented = ArrayPool<float>.Shared.Rent(r * n);
        try
        {
            fixed (float* bt = rented)   // [r, N] Bᵀ
            {
                Transpose(bt, b, n, r);
                var task = new RowAxpys { Output = y, Coefficients = u, Vectors = bt, M = m, Width = n, Count = r };
                RunOverRows(ref task, m, (long)m * r * n);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// The side path's backward for M adapted rows, given dy [M, N] and x [M, K]:
    /// dB[N, r] += s·dyᵀ·u, dA[r, K] += gᵀ·x and dx[M, K] += g·A, with u = x·Aᵀ and g = s·dy·B (both [M, r], in
    /// the scratch buffers).
    /// </summary>
    public static void Backward(float* dx, float* dA, float* dB, float* dy, float* x, float* a, float* b, float scale,
        int m, int k, int n, int r, float* u, float* g)
    {
        float[] rented = ArrayPool<float>.Shared.Rent(2 * r * n);
        try
        {
            fixed (float* bt = rented)   // [r, N] Bᵀ, then [r, N] dBᵀ
            {
                float* dbt = bt + r * n;
                Transpose(bt, b, n, r);
                Project(u, x, a, m, k, r, 1f);                                          // u = x·Aᵀ
                var dots = new RowDots { Output = g, Rows = dy, Vectors = bt, M = m, Width = n, Count = r, Scale = scale };
                RunOverRows(ref dots, m, (long)m * r * n);                                // g = s·dy·B
                new Span<float>(dbt, r * n).Clear();
                var sums = new ColumnSums { Output = dbt, Coefficients = u, Rows = dy, M = m, Width = n, Count = r, Scale = scale };
                WorkerPool.Shared.For(r, ref sums);                                      // dBᵀ = s·uᵀ·dy
                for (int j = 0; j < n; j++)
                    for (int c = 0; c < r; c++) dB[(long)j * r + c] += dbt[(long)c * n + j];
                var weightSums = new ColumnSums { Output = dA, Coefficients = g, Rows = x, M = m, Width = k, Count = r, Scale = 1f };
                WorkerPool.Shared.For(r, ref weightSums);                                // dA += gᵀ·x
                var axpys = new RowAxpys { Output = dx, Coefficients = g, Vectors = a, M = m, Width = k, Count = r };
                RunOverRows(ref axpys, m, (long)m * r * k);                              // dx += g·A
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>t[r, N] = b[N, r]ᵀ.</summary>
    private static void Transpose(float* t, float* b, int n, int r)
    {
        for (int j = 0; j < n; j++)
            for (int c = 0; c < r; c++) t[(long)c * n + j] = b[(long)j * r + c];
    }

    /// <summary>Splits M rows into contiguous chunks, one per task, when the work is worth the dispatch.</summary>
    private static void RunOverRows<T>(ref T task, int m, long work) where T : struct, IRowTask
    {
        var pool = WorkerPool.Shared;
        int chunks = work < 32_768 ? 1 : Math.Min(m, pool.ThreadCount * 2);
        task.Chunks = Math.Max(1, chunks);
        if (task.Chunks == 1) task.Execute(0);
        else pool.For(task.Chunks, ref task);
    }

    private interface IRowTask : IParallelTask
    {
        int Chunks { get; set; }
    }

    /// <summary>Output[i, c] = Scale · Dot(Rows[i, :Width], Vectors[c, :Width]).</summary>
    private struct RowDots : IRowTask
    {
        public float* Output, Rows, Vectors;
        public int M, Width, Count;
        public float Scale;
        public int Chunks { get; set; }

        public readonly void Execute(int index)
        {
            int i0 = (int)((long)M * index / Chunks), i1 = (int)((long)M * (index + 1) / Chunks);
            for (int i = i0; i < i1; i++)
                for (int c = 0; c < Count; c++)
                    Output[(long)i * Count + c] = Scale * Elementwise.Dot(Rows + (long)i * Width, Vectors + (long)c * Width, Width);
        }
    }

    /// <summary>Output[i, :Width] += Σ_c Coefficients[i, c] · Vectors[c, :Width].</summary>
    private struct RowAxpys : IRowTask
    {
        public float* Output, Coefficients, Vectors;
        public int M, Width, Count;
        public int Chunks { get; set; }

        public readonly void Execute(int index)
        {
            int i0 = (int)((long)M * index / Chunks), i1 = (int)((long)M * (index + 1) / Chunks);
            for (int i = i0; i < i1; i++)
                for (int c = 0; c < Count; c++)
                {
                    float coefficient = Coefficients[(long)i * Count + c];
                    if (coefficient != 0) Elementwise.Axpy(Output + (long)i * Width, coefficient, Vectors + (long)c * Width, Width);
                }
        }
    }

    /// <summary>Output[c, :Width] += Scale · Σ_i Coefficients[i, c] · Rows[i, :Width]; task c owns output row c.</summary>
    private struct ColumnSums : IParallelTask
    {
        public float* Output, Coefficients, Rows;
        public int M, Width, Count;
        public float Scale;

        public readonly void Execute(int c)
        {
            float* row = Output + (long)c * Width;
            for (int i = 0; i < M; i++)
            {
                float coefficient = Scale * Coefficients[(long)i * Count + c];
                if (coefficient != 0) Elementwise.Axpy(row, coefficient, Rows + (long)i * Width, Width);
            }
        }
    }
}

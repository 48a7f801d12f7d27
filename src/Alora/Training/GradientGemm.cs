using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Training;

// Legend: M = token rows, N = output features of the layer, K = input features of the layer.
// A Linear computes y[M,N] = x[M,K]·Wᵀ with W [N,K]; its backward needs the two products below.

/// <summary>
/// The two matrix products of a Linear's backward pass: the input gradient dx = dy·W (through a frozen weight
/// of any dtype) and a weight-shaped gradient dW += dyᵀ·x (used for the small LoRA factors).
/// </summary>
/// <remarks>
/// dx = dy·W runs whole column blocks through a register-tiled kernel (<see cref="InputGradientPanels"/>) and the
/// leftover columns through <see cref="Elementwise.Axpy"/> one W row at a time. dW += dyᵀ·x gives each task its
/// own dW rows, so no two tasks write the same memory. (The `kernels` branch adds packed-GEMM versions of these
/// products; they can replace these once merged.)
/// </remarks>
public static unsafe class GradientGemm
{
    private const int RowTile = 32;      // dx rows a task updates per W row it converts
    private const int MinColumnChunk = 64;

    /// <summary>dx[M,K] = dy[M,N]·W[N,K], or dx += dy·W when <paramref name="accumulate"/>.</summary>
    public static void InputGradient(float* dx, float* dy, in WeightMatrix w, int m, bool accumulate)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        int n = w.Rows, k = w.Cols;
        if (m == 0 || k == 0) return;
        var pool = WorkerPool.Shared;
        if (n == 0)
        {
            if (!accumulate) new Span<float>(dx, checked(m * k)).Clear();
            return;
        }
        // Whole column blocks take the register-tiled path when there are enough rows to reuse each panel;
        // the leftover columns (and small M) take the axpy path below.
        int done = m >= 4 ? InputGradientPanels.Run(dx, dy, w, m, accumulate, pool) : 0;
        if (done == k) return;
        int rest = k - done;
        if (!accumulate)
            for (int i = 0; i < m; i++) new Span<float>(dx + (long)i * k + done, rest).Clear();
        int rowTiles = (m + RowTile - 1) / RowTile;
        // Split columns too when there are few row tiles, so every thread has work.
        int columnChunks = Math.Clamp(pool.ThreadCount * 2 / rowTiles, 1, Math.Max(1, rest / MinColumnChunk));
        var task = new InputGradientTask
        {
            Dx = dx, Dy = dy, W = w.Data, DType = w.DType, M = m, N = n, K = k, FirstColumn = done,
            RowTiles = rowTiles, ColumnChunks = columnChunks,
        };
        pool.For(rowTiles * columnChunks, ref task);
    }

    private struct InputGradientTask : IParallelTask
    {
        public float* Dx;   // [M, K]
        public float* Dy;   // [M, N]
        public void* W;     // [N, K]
        public DType DType;
        public int M, N, K, FirstColumn, RowTiles, ColumnChunks;

        public void Execute(int index)
        {
            int tile = index / ColumnChunks, chunk = index % ColumnChunks;
            int i0 = tile * RowTile, i1 = Math.Min(M, i0 + RowTile);
            int rest = K - FirstColumn;
            int k0 = FirstColumn + (int)((long)rest * chunk / ColumnChunks), k1 = FirstColumn + (int)((long)rest * (chunk + 1) / ColumnChunks);
            int width = k1 - k0;
            const int StackLimit = 4096;
            Span<float> rowBuffer = width <= StackLimit ? stackalloc float[width] : new float[width];   // [K chunk] one W row as f32
            int elementSize = DType.ByteSize();
            fixed (float* row = rowBuffer)
            {
                for (int j = 0; j < N; j++)
                {
                    Kernels.Convert.ToSingle(row, (byte*)W + ((long)j * K + k0) * elementSize, DType, width);
                    for (int i = i0; i < i1; i++)
                    {
                        float g = Dy[(long)i * N + j];
                        if (g != 0) Elementwise.Axpy(Dx + (long)i * K + k0, g, row, width);
                    }
                }
            }
        }
    }

    /// <summary>Scalar reference twin of <see cref="InputGradient"/>.</summary>
    public static void InputGradientReference(float* dx, float* dy, in WeightMatrix w, int m, bool accumulate)
    {
        int n = w.Rows, k = w.Cols;
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++)
            {
                float sum = 0;
                for (int j = 0; j < n; j++) sum += dy[(long)i * n + j] * w[j, p];
                float* target = dx + (long)i * k + p;
                *target = accumulate ? *target + sum : sum;
            }
    }

    /// <summary>dw[N,K] += dy[M,N]ᵀ·x[M,K]·<paramref name="scale"/>.</summary>
    public static void WeightGradient(float* dw, float* dy, float* x, int m, int n, int k, float scale = 1f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        if (m == 0 || n == 0 || k == 0) return;
        var pool = WorkerPool.Shared;
        var task = new WeightGradientTask { Dw = dw, Dy = dy, X = x, M = m, N = n, K = k, Scale = scale, TaskCount = Math.Min(n, pool.ThreadCount * 2) };
        pool.For(task.TaskCount, ref task);
    }

    private struct WeightGradientTask : IParallelTask
    {
        public float* Dw;   // [N, K]
        public float* Dy;   // [M, N]
        public float* X;    // [M, K]
        public int M, N, K, TaskCount;
        public float Scale;

        public void Execute(int index)
        {
            int j0 = (int)((long)N * index / TaskCount), j1 = (int)((long)N * (index + 1) / TaskCount);
            for (int j = j0; j < j1; j++)
            {
                float* dwRow = Dw + (long)j * K;
                for (int i = 0; i < M; i++)
                {
                    float g = Dy[(long)i * N + j] * Scale;
                    if (g != 0) Elementwise.Axpy(dwRow, g, X + (long)i * K, K);
                }
            }
        }
    }

    /// <summary>Scalar reference twin of <see cref="WeightGradient"/>.</summary>
    public static void WeightGradientReference(float* dw, float* dy, float* x, int m, int n, int k, float scale = 1f)
    {
        for (int j = 0; j < n; j++)
            for (int p = 0; p < k; p++)
            {
                float sum = 0;
                for (int i = 0; i < m; i++) sum += dy[(long)i * n + j] * x[(long)i * k + p];
                dw[(long)j * k + p] += sum * scale;
            }
    }
}

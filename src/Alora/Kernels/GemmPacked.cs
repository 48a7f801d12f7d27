using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = activation rows, K = depth (the summed dimension), N = output columns.
// The weight operand is either W [N, K] (a Linear weight, y = x·Wᵀ: "outputs-major") or W [K, N]
// (y = x·W: "depth-major"); packing reads either layout and writes the same panels.
// Mr×Nr = register tile of the micro-kernel; Kc = depth of one packed block (K split evenly, at most
// MaxKc); Mc = rows of x kept in L2; Nc = columns of W packed together (PackFloats / Kc, kept in L2).
//
// Loop nest of one task (a contiguous range of Nr-wide column panels):
//   for each Nc chunk of its panels
//     for each Kc block:      pack W[chunk, block] transposed → packed [panels, Kc, Nr]   (converted to f32)
//       for each Mc block of rows:
//         for each panel:     for each Mr rows: micro-kernel  C[Mr,Nr] (+)= x[Mr,Kc] · packed[Kc,Nr]
// The micro-kernel keeps the C tile in registers, broadcasts one x element per row and multiplies it by
// Nr/lanes vectors of the packed panel, so each loaded W vector is used Mr times and each x element Nr times.

/// <summary>Row count of a micro-kernel call as a type, so the JIT unrolls one kernel per row count.</summary>
internal interface IRowCount { static abstract int Value { get; } }
internal struct Rows1 : IRowCount { public static int Value => 1; }
internal struct Rows2 : IRowCount { public static int Value => 2; }
internal struct Rows3 : IRowCount { public static int Value => 3; }
internal struct Rows4 : IRowCount { public static int Value => 4; }
internal struct Rows5 : IRowCount { public static int Value => 5; }
internal struct Rows6 : IRowCount { public static int Value => 6; }
internal struct Rows7 : IRowCount { public static int Value => 7; }
internal struct Rows8 : IRowCount { public static int Value => 8; }

/// <summary>A register-tile kernel family: its tile shape and the kernel for 1..Mr rows.</summary>
internal unsafe interface IMicroKernel
{
    static abstract int Mr { get; }
    static abstract int Nr { get; }
    /// <summary>c[rows, Nr] (+)= a[rows, kc] (row stride lda) · b[kc, Nr] (packed, 64-byte aligned).</summary>
    static abstract void Run(int rows, float* c, long ldc, float* a, long lda, float* b, int kc, bool load);
    /// <summary>As <see cref="Run"/> with a stored transposed: element (r, p) at a[p·lda + r].</summary>
    static abstract void RunTransposedA(int rows, float* c, long ldc, float* a, long lda, float* b, int kc, bool load);
}

internal static unsafe class GemmPacked
{
    /// <summary>Deepest K block. K is split into equal blocks no deeper than this.</summary>
    public const int MaxKc = 768;
    /// <summary>Floats of packed W per thread (512 KiB: half of a Zen 4/5 L2); Nc = this / Kc.</summary>
    public const int PackFloats = 128 * 1024;
    public const int Mc = 96;

    [ThreadStatic] private static float* t_packBuffer; // [Nc/Nr, Kc, Nr] per thread, never freed (one per pool thread)

    private static float* PackBuffer()
    {
        if (t_packBuffer == null) t_packBuffer = (float*)NativeMemory.AlignedAlloc(PackFloats * sizeof(float), 64);
        return t_packBuffer;
    }

    /// <summary>
    /// y[M,N] (+)= A · B, where B[k, j] = w[j, k] when <paramref name="outputsMajor"/> (w is [N, K]) else w[k, j]
    /// (w is [K, N]), and A[i, k] = x[i, k] (x is [M, K]) or, when <paramref name="xTransposed"/>, x[k, i] (x is [K, M]).
    /// </summary>
    public static void Run<TKernel, TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool,
        bool outputsMajor = true, bool xTransposed = false)
        where TKernel : struct, IMicroKernel where TLoad : struct, IWeightLoad
    {
        int panels = (n + TKernel.Nr - 1) / TKernel.Nr;
        // A few tasks per thread so a thread slowed by the neighbours does not hold up the others.
        int taskCount = Math.Min(panels, pool.ThreadCount * 3);
        // Few, deep K blocks: every K block is one more pass over the y tile (load, add, store), which costs
        // most when y is too big for the caches (an lm_head's [512, vocab]).
        int kBlocks = (k + MaxKc - 1) / MaxKc;
        int kc = (k + kBlocks - 1) / kBlocks;
        int panelsPerChunk = Math.Max(1, PackFloats / (kc * TKernel.Nr));
        var task = new PackedTask<TKernel, TLoad>
        {
            Kc = kc, PanelsPerChunk = panelsPerChunk,
            Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, OutputsMajor = outputsMajor, XTransposed = xTransposed,
            Panels = panels, TaskCount = taskCount,
        };
        pool.For(taskCount, ref task);
    }

    private struct PackedTask<TKernel, TLoad> : IParallelTask
        where TKernel : struct, IMicroKernel where TLoad : struct, IWeightLoad
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K], or [K, M] when XTransposed
        public void* W;    // [N, K] when OutputsMajor, else [K, N]
        public int M, K, N, Panels, TaskCount, Kc, PanelsPerChunk;
        public bool Accumulate, OutputsMajor, XTransposed;

        public void Execute(int index)
        {
            int panelStart = (int)((long)Panels * index / TaskCount);
            int panelEnd = (int)((long)Panels * (index + 1) / TaskCount);
            ComputePanels(panelStart, panelEnd);
        }

        [SkipLocalsInit]
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void ComputePanels(int panelStart, int panelEnd)
        {
            int nr = TKernel.Nr, mr = TKernel.Mr;
            int panelsPerChunk = PanelsPerChunk;
            float* packed = PackBuffer();
            float* edgeTile = stackalloc float[TKernel.Mr * TKernel.Nr]; // [Mr, Nr] for a last, narrower panel
            for (int chunkStart = panelStart; chunkStart < panelEnd; chunkStart += panelsPerChunk)
            {
                int chunkEnd = Math.Min(panelEnd, chunkStart + panelsPerChunk);
                for (int k0 = 0; k0 < K; k0 += Kc)
                {
                    int kc = Math.Min(Kc, K - k0);
                    bool load = Accumulate || k0 > 0;
                    for (int panel = chunkStart; panel < chunkEnd; panel++)
                    {
                        int j0 = panel * nr;
                        PackPanel(packed + (long)(panel - chunkStart) * kc * nr, j0, Math.Min(nr, N - j0), k0, kc);
                    }
                    for (int i0 = 0; i0 < M; i0 += Mc)
                    {
                        int i1 = Math.Min(M, i0 + Mc);
                        for (int panel = chunkStart; panel < chunkEnd; panel++)
                        {
                            int j0 = panel * nr, cols = Math.Min(nr, N - j0);
                            float* b = packed + (long)(panel - chunkStart) * kc * nr;
                            for (int i = i0; i < i1; i += mr)
                            {
                                int rows = Math.Min(mr, i1 - i);
                                float* c = Y + (long)i * N + j0;
                                if (cols == nr)
                                {
                                    RunTile(rows, c, N, i, k0, b, kc, load);
                                }
                                else
                                {
                                    // Last panel narrower than Nr: run on a full tile, copy back the real columns.
                                    if (load) CopyTile(edgeTile, nr, c, N, rows, cols);
                                    RunTile(rows, edgeTile, nr, i, k0, b, kc, load);
                                    CopyTile(c, N, edgeTile, nr, rows, cols);
                                }
                            }
                        }
                    }
                }
            }
        }

        /// <summary>One micro-kernel call for rows [i, i+rows) and depth block [k0, k0+kc).</summary>
        private readonly void RunTile(int rows, float* c, long ldc, int i, int k0, float* b, int kc, bool load)
        {
            if (XTransposed) TKernel.RunTransposedA(rows, c, ldc, X + (long)k0 * M + i, M, b, kc, load);
            else TKernel.Run(rows, c, ldc, X + (long)i * K + k0, K, b, kc, load);
        }

        /// <summary>dst[kc, Nr] = B[k0 .. k0+kc, j0 .. j0+cols] as f32, columns past cols zero.</summary>
        private readonly void PackPanel(float* dst, int j0, int cols, int k0, int kc)
        {
            if (!OutputsMajor)
            {
                PackDepthMajor(dst, j0, cols, k0, kc);
                return;
            }
            int nr = TKernel.Nr;
            int c = 0;
            // 16 rows at a time: load 16 k-values from each row and transpose them through a small block,
            // so every read is a contiguous vector and every write a contiguous 16-float run.
            if (Vector512.IsHardwareAccelerated && nr % 16 == 0)
            {
                for (; c + 16 <= cols; c += 16) PackBlock16(dst + c, nr, (long)(j0 + c) * K + k0, kc);
            }
            for (; c < cols; c++)
            {
                long rowStart = (long)(j0 + c) * K + k0;
                float* d = dst + c;
                for (int p = 0; p < kc; p++) d[(long)p * nr] = TLoad.Scalar(W, rowStart + p);
            }
            for (; c < nr; c++)
            {
                float* d = dst + c;
                for (int p = 0; p < kc; p++) d[(long)p * nr] = 0;
            }
        }

        /// <summary>W [K, N]: each packed row is a contiguous run of one W row, converted.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void PackDepthMajor(float* dst, int j0, int cols, int k0, int kc)
        {
            int nr = TKernel.Nr;
            for (int p = 0; p < kc; p++)
            {
                long source = (long)(k0 + p) * N + j0;
                float* d = dst + (long)p * nr;
                int c = 0;
                if (Vector512.IsHardwareAccelerated)
                {
                    for (; c + 16 <= cols; c += 16) TLoad.Load512(W, source + c).Store(d + c);
                }
                else if (Vector256.IsHardwareAccelerated)
                {
                    for (; c + 8 <= cols; c += 8) TLoad.Load256(W, source + c).Store(d + c);
                }
                for (; c < cols; c++) d[c] = TLoad.Scalar(W, source + c);
                for (; c < nr; c++) d[c] = 0;
            }
        }

        [SkipLocalsInit]
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void PackBlock16(float* dst, int nr, long rowStart, int kc)
        {
            float* block = stackalloc float[16 * 16]; // [16 rows, 16 k]
            int p = 0;
            for (; p + 16 <= kc; p += 16)
            {
                for (int r = 0; r < 16; r++) TLoad.Load512(W, rowStart + (long)r * K + p).Store(block + r * 16);
                for (int q = 0; q < 16; q++)
                {
                    // Column q of the block: a strided gather from L1.
                    float* d = dst + (long)(p + q) * nr;
                    for (int r = 0; r < 16; r++) d[r] = block[r * 16 + q];
                }
            }
            for (; p < kc; p++)
            {
                float* d = dst + (long)p * nr;
                for (int r = 0; r < 16; r++) d[r] = TLoad.Scalar(W, rowStart + (long)r * K + p);
            }
        }

        private static void CopyTile(float* dst, long ldd, float* src, long lds, int rows, int cols)
        {
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++) dst[r * ldd + c] = src[r * lds + c];
        }
    }
}

/// <summary>
/// The micro-kernel without vector hardware: a 4×8 tile of scalar accumulators. Only the fallback path
/// (DOTNET_EnableHWIntrinsic=0 or a machine without SIMD) runs it.
/// </summary>
internal unsafe struct MicroKernelScalar : IMicroKernel
{
    public static int Mr => 4;
    public static int Nr => 8;

    public static void Run(int rows, float* c, long ldc, float* a, long lda, float* b, int kc, bool load)
        => Tile(rows, c, ldc, a, lda, 1, b, kc, load);

    public static void RunTransposedA(int rows, float* c, long ldc, float* a, long lda, float* b, int kc, bool load)
        => Tile(rows, c, ldc, a, 1, lda, b, kc, load);

    /// <summary>Element (r, p) of a is at a[r·rowStride + p·depthStride].</summary>
    [SkipLocalsInit]
    private static void Tile(int rows, float* c, long ldc, float* a, long rowStride, long depthStride, float* b, int kc, bool load)
    {
        float* tile = stackalloc float[4 * 8]; // [Mr, Nr]
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) tile[r * 8 + j] = load && r < rows ? c[r * ldc + j] : 0;
        for (int p = 0; p < kc; p++)
        {
            float* bp = b + p * 8;
            for (int r = 0; r < rows; r++)
            {
                float av = a[r * rowStride + p * depthStride];
                float* t = tile + r * 8;
                t[0] += av * bp[0]; t[1] += av * bp[1]; t[2] += av * bp[2]; t[3] += av * bp[3];
                t[4] += av * bp[4]; t[5] += av * bp[5]; t[6] += av * bp[6]; t[7] += av * bp[7];
            }
        }
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < 8; j++) c[r * ldc + j] = tile[r * 8 + j];
    }
}

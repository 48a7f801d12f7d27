using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Alora.Kernels;

// Legend: M = activation rows (MaxRows < M ≤ BatchMaxRows here: one decode token per sequence of a batch),
// K = input features, N = output features (rows of W), P = W rows in one panel (a multiple of 4).
//
// A batched decode step is a product whose W (the whole model, hundreds of MB) is far larger than its x
// (≤ 64 rows): W must be read from memory exactly once. Threads take contiguous ranges of W rows (one
// sequential stream each, the next panel prefetched while this one runs); a range runs panel by panel, and
// every group of ≤ 6 x rows runs DotTile's 6×4 tiles over all of K against the panel: the first group pulls
// it into L1, the others reuse it there. bf16/f16 are widened in registers, once per row group (converting
// each panel to an f32 scratch once measured slower: the extra store and reload cost more than the widening,
// which runs beside the FMAs). x (≤ 64 × K floats) stays in L2 for the whole call.

/// <summary>y[M,N] (+)= x[M,K]·Wᵀ for a decode batch of rows, streaming W once with DotTile's arithmetic.</summary>
internal static unsafe partial class Gemv
{
    /// <summary>
    /// Most rows the batched decode path takes (above it, <see cref="RunRowGroups{TLoad}"/>, whose W blocks stay
    /// in L2 while x streams past them). Settable so benchmarks can race the row groups on the same shapes.
    /// </summary>
    internal static int BatchMaxRows { get; set; } = 64;

    /// <summary>
    /// Target f32-equivalent bytes of one W panel (K·4 per row; 16 rows at K = 576, 8 at K = 1536). Tuned on the
    /// SmolLM2 shapes at M = 8, 16, 64, one thread: 64 KiB beat 16 KiB by 0–8 %; prefetching two to eight panels
    /// ahead, or into L2 only, measured the same as one panel ahead into L1.
    /// </summary>
    internal static int PanelBytes { get; set; } = 64 << 10;

    /// <summary>Output columns per stage window (a multiple of 4): [M, StageColumns] f32 per thread (16 and 256 measured no better).</summary>
    private const int StageColumns = 64;

    /// <summary>
    /// y[M,N] (+)= x·Wᵀ with exactly <see cref="DotTile"/>'s per-element arithmetic (the one the GEMV and the row
    /// groups run; on 256-bit machines the 256-bit tiles of <see cref="GemvTask{TLoad}"/>), so each row's bits do not
    /// depend on M. Each W element is read from memory once per call.
    /// </summary>
    public static void RunBatch<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        // P W rows per panel: PanelBytes of f32, a multiple of 4, at least one tile, at most 16 (four tiles).
        int panelRows = Math.Clamp(PanelBytes / Math.Max(1, k * sizeof(float)) / 4 * 4, 4, 16);
        int panels = (n + panelRows - 1) / panelRows;
        int taskCount = (long)m * n * k < WorkerPool.InlineMultiplyAdds ? 1 : Math.Max(1, Math.Min(pool.ThreadCount, panels));
        var task = new BatchTask<TLoad> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, PanelRows = panelRows, Panels = panels, TaskCount = taskCount };
        pool.For(taskCount, ref task);
    }

    [ThreadStatic] private static ThreadScratch t_stage;   // [M, StageColumns] outputs of one window of columns

    private struct BatchTask<TLoad> : IParallelTask where TLoad : struct, IWeightLoad
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K]
        public void* W;    // [N, K]
        public int M, K, N, PanelRows, Panels, TaskCount;
        public bool Accumulate;

        /// <summary>Task = a contiguous range of panels: outputs [all M rows, the range's columns].</summary>
        public readonly void Execute(int index)
        {
            int first = (int)((long)Panels * index / TaskCount), last = (int)((long)Panels * (index + 1) / TaskCount);
            int j0 = first * PanelRows, j1 = Math.Min(N, last * PanelRows);
            if (j0 >= j1) return;
            // Tiles write a [M, StageColumns] stage, flushed to y a window at a time: y's rows can lie a multiple of
            // 64 KiB apart (the LM head's 49152 columns), so 16 rows' 16-byte pieces would all fall into one L1 and
            // one L2 set and evict each other on every tile. A stage row is 256 contiguous bytes.
            const int stageColumns = StageColumns;
            float* stage = t_stage.Get((long)M * stageColumns);
            long panelBytes = TLoad.ByteOffset((long)PanelRows * K);
            for (int js = j0; js < j1; js += stageColumns)
            {
                int je = Math.Min(j1, js + stageColumns);
                float* stageY = stage - js;   // column j of the window lands at stage[r, j − js]
                for (int j = js; j < je; j += PanelRows)
                {
                    int rows = Math.Min(PanelRows, je - j);
                    // The next panel is the next stretch of this task's one sequential run of W: ask for it now, so
                    // its DRAM reads overlap this panel's arithmetic.
                    int ahead = j + PanelRows;
                    if (Sse.IsSupported && ahead < j1)
                    {
                        byte* next = (byte*)W + TLoad.ByteOffset((long)ahead * K);
                        long nextBytes = Math.Min(panelBytes, TLoad.ByteOffset((long)(j1 - ahead) * K));
                        for (long b = 0; b < nextBytes; b += 64) Sse.Prefetch0(next + b);
                    }
                    Panel(stageY, stageColumns, j, rows);
                }
                // y = stage, or y + stage: the same single rounding StoreTile's accumulate would make (y + sum).
                int width = je - js;
                for (int r = 0; r < M; r++)
                {
                    float* from = stage + (long)r * stageColumns, to = Y + (long)r * N + js;
                    if (Accumulate) Elementwise.Add(to, from, width);
                    else Buffer.MemoryCopy(from, to, (long)width * sizeof(float), (long)width * sizeof(float));
                }
            }
        }

        /// <summary>All M x rows against W rows [j, j + rows): y[r, j..] at <paramref name="y"/> + r·ldy + j.</summary>
        private readonly void Panel(float* y, int ldy, int j, int rows)
        {
            int tiles = rows / 4;
            if (Vector512.IsHardwareAccelerated)
            {
                // Near-equal groups of ≤ 6 rows (5 + 4 + 4 for M = 13 rather than 6 + 6 + 1: a 1-row tile runs at
                // a quarter of the FMA rate, its four accumulators one latency chain each). The first group pulls
                // the panel from memory into L1; the others read it from there.
                int groups = (M + DotTile.MaxRows - 1) / DotTile.MaxRows;
                int baseRows = M / groups, extra = M % groups;
                for (int g = 0, i = 0; g < groups; g++)
                {
                    int groupRows = baseRows + (g < extra ? 1 : 0);
                    switch (groupRows)
                    {
                        case 6: Tiles<Rows6>(y, ldy, i, j, tiles); break;
                        case 5: Tiles<Rows5>(y, ldy, i, j, tiles); break;
                        case 4: Tiles<Rows4>(y, ldy, i, j, tiles); break;
                        case 3: Tiles<Rows3>(y, ldy, i, j, tiles); break;
                        case 2: Tiles<Rows2>(y, ldy, i, j, tiles); break;
                        default: Tiles<Rows1>(y, ldy, i, j, tiles); break;
                    }
                    i += groupRows;
                }
                int kVec = K & ~15;
                // Columns past the last whole tile (only in the matrix's last panel): one dot product each.
                for (int c = j + tiles * 4; c < j + rows; c++)
                    for (int r = 0; r < M; r++)
                    {
                        float* xr = X + (long)r * K;
                        StoreOne<TLoad>(y + (long)r * ldy + c, xr, K, W, c, kVec, DotTile.Single<TLoad>(xr, W, (long)c * K, kVec), accumulate: false);
                    }
                return;
            }
            // 256-bit tiles, as the row groups run them: 4 x rows at a time with AVX-512's 32 registers, 2 on AVX2.
            int groupMax = Avx512F.VL.IsSupported ? MaxRows : 2;
            for (int i = 0; i < M; i += groupMax)
            {
                var group = new GemvTask<TLoad> { Y = y + (long)i * ldy, X = X + (long)i * K, W = W, M = Math.Min(groupMax, M - i), K = K, N = ldy, Accumulate = false, TaskCount = 1 };
                group.RunRange(j, j + rows);
            }
        }

        /// <summary>x rows [i, i + TRows) against whole tiles (columns j.., four at a time), over all of K at once.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Tiles<TRows>(float* y, int ldy, int i, int j, int tiles) where TRows : struct, IRowCount
        {
            float* x = X + (long)i * K;
            int kVec = K & ~15;
            for (int t = 0; t < tiles; t++)
            {
                int c = j + t * 4;
                DotTile.Run<TLoad, TRows>(x, K, W, (long)c * K, 0, kVec, K, null, resume: false, save: false, prefetch: false, out Vector512<float> low, out Vector512<float> high);
                StoreTile<TLoad>(y + (long)i * ldy, ldy, x, K, W, c, 1, Math.Min(4, TRows.Value), kVec, low, accumulate: false);
                if (TRows.Value > 4) StoreTile<TLoad>(y + (long)(i + 4) * ldy, ldy, x + 4L * K, K, W, c, 1, TRows.Value - 4, kVec, high, accumulate: false);
            }
        }
    }
}

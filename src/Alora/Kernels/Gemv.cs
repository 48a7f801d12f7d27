using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = activation rows (1..MaxRows here), K = input features, N = output features (rows of W).
//
// Decode-sized products are memory-bound: W is read once, as four sequential runs per task (a tile takes
// one row from each quarter of the task's range), and each vector of W meets every x row while it is in a
// register. Threads take contiguous ranges of W rows, so each streams its own part of the matrix.

/// <summary>y[M,N] (+)= x[M,K]·Wᵀ for a few rows of x, streaming W once.</summary>
internal static unsafe partial class Gemv
{
    public const int MaxRows = 4;

    public static void Run<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        // One contiguous range per thread: each then streams four long runs. More, smaller ranges (to absorb a
        // thread that the neighbours' processes preempt) measured slower: 0.72–0.74× of the read roofline with
        // four per thread against 0.84–0.93× with one, on two free cores. A tiny product (stories260K's, a LoRA
        // factor) takes less time than waking and syncing another thread, so it runs on the caller alone.
        int taskCount = (long)m * n * k < WorkerPool.InlineMultiplyAdds ? 1 : Math.Max(1, Math.Min(pool.ThreadCount, n / 16));
        var task = new GemvTask<TLoad> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, TaskCount = taskCount };
        pool.For(taskCount, ref task);
    }

    /// <summary>
    /// y[M,N] (+)= x·Wᵀ for any M with exactly the GEMV's per-element arithmetic (one 16-lane accumulator over
    /// K, a fixed horizontal sum, the scalar tail): each x row's result is the same bits whatever M is and
    /// whichever rows share its batch. Batch invariance is what lets an aLoRA on a reused base KV cache match a
    /// from-scratch recompute to the last bit of the base rows. It runs <see cref="DotTile"/>'s 6×4 tiles (the
    /// GEMV runs the same tiles with ≤ 4 rows): tasks take blocks of W rows whose current K chunk stays in L2
    /// while groups of 6 x rows pass over it; long K is cut into chunks with the lane accumulators saved
    /// between them, which leaves every lane's sequence of FMAs, and so the bits, unchanged.
    /// </summary>
    public static void RunRowGroups<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        int kVec = k & ~15;
        int chunk = ChunkLength(kVec);
        // W rows per task: the block's current chunk (f32 after conversion) stays in L2 while x rows pass over it.
        long chunkRowBytes = (long)Math.Max(16, Vector512.IsHardwareAccelerated ? chunk : k) * sizeof(float);
        int fitsL2 = (int)Math.Clamp(WBlockBytes / chunkRowBytes, 4, 1024);
        // A few tasks per thread, so a thread that the neighbours' processes preempt holds up only a small part.
        int wantedTasks = pool.ThreadCount * 4;
        int balanced = (n + wantedTasks - 1) / wantedTasks;
        int blockRows = Math.Max(4, (Math.Min(fitsL2, Math.Max(balanced, MinBlockRows)) + 3) / 4 * 4);
        int blocks = (n + blockRows - 1) / blockRows;
        // Narrow W (k/v projections) gives too few blocks: split x's rows too, rather than shrink the blocks
        // until every task streams all of x past a handful of W rows.
        int rowRanges = Math.Min((wantedTasks + blocks - 1) / blocks, (m + 11) / 12);
        int rangeRows = ((m + rowRanges - 1) / rowRanges + 11) / 12 * 12;   // a multiple of both tile heights
        rowRanges = (m + rangeRows - 1) / rangeRows;
        var task = new RowGroupTask<TLoad> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, BlockRows = blockRows, Blocks = blocks, RangeRows = rangeRows, Chunk = chunk };
        pool.For(blocks * rowRanges, ref task);
    }

    // Blocking of the row-group path, tuned on Zen 5 (48 KiB L1d, 1 MiB L2 per core) against OpenBLAS on the
    // prefill shapes: a W block's chunk of ≤ 256 KiB stays in L2; K up to 1024 runs as one chunk, longer K in
    // chunks of ≤ 512 (one 6-row group of x is then ≤ 12 KiB of L1); when K is chunked, 48 x rows pass
    // together, so the saved accumulators (48 × block rows × 64 B) stay in L2 beside the two chunks.
    private const long WBlockBytes = 256 << 10;
    private const int SingleChunkMax = 1024;
    private const int ChunkMax = 512;
    private const int XBlockRows = 48;
    private const int MinBlockRows = 48;

    /// <summary>
    /// Length of the K chunks (a multiple of 16) that the row-group path runs tile by tile, saving the lane
    /// accumulators in between: the whole vector part when it is short, else near-equal chunks of at most
    /// the maximum, so one group's x rows (6 × chunk) stay in L1 while the W block's chunk stays in L2.
    /// </summary>
    private static int ChunkLength(int kVec)
    {
        if (kVec <= SingleChunkMax) return Math.Max(kVec, 16);
        int chunks = (kVec + ChunkMax - 1) / ChunkMax;
        return (kVec / 16 + chunks - 1) / chunks * 16;
    }

    private struct RowGroupTask<TLoad> : IParallelTask where TLoad : struct, IWeightLoad
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K]
        public void* W;    // [N, K]
        public int M, K, N, BlockRows, Blocks, RangeRows, Chunk;
        public bool Accumulate;

        /// <summary>Task = (block of W rows, range of x rows): outputs [rows of the range, columns of the block].</summary>
        public readonly void Execute(int index)
        {
            int block = index % Blocks, range = index / Blocks;
            int j0 = block * BlockRows, j1 = Math.Min(N, j0 + BlockRows);
            int rowStart = range * RangeRows, rowEnd = Math.Min(M, rowStart + RangeRows);
            if (TLoad.IsF32)
            {
                Run<TLoad>(W, j0, j1, rowStart, rowEnd);
                return;
            }
            // bf16/f16/quantized: convert the block once (exactly) instead of once per group of 4 rows. The f32 tiles
            // then do the same arithmetic on the same values, so the result bits do not change.
            long count = (long)(j1 - j0) * K;
            float* converted = ConvertedBlock(count);
            Convert.ToSingle<TLoad>(converted, (byte*)W + TLoad.ByteOffset((long)j0 * K), count);
            Run<F32Load>(converted - (long)j0 * K, j0, j1, rowStart, rowEnd);   // indexed by absolute row j
        }

        private readonly void Run<TBlockLoad>(void* w, int j0, int j1, int rowStart, int rowEnd) where TBlockLoad : struct, IWeightLoad
        {
            if (!Vector512.IsHardwareAccelerated)
            {
                // 256-bit tiles: with AVX-512's 32 registers a 4×4 tile's 16 accumulators fit; with AVX2's 16 they
                // spill (0.55× of OpenBLAS), so take 2 x rows at a time (8 accumulators + 4 W + 1 x).
                int groupRows = System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported ? MaxRows : 2;
                for (int i = rowStart; i < rowEnd; i += groupRows)
                {
                    var group = new GemvTask<TBlockLoad> { Y = Y + (long)i * N, X = X + (long)i * K, W = w, M = Math.Min(groupRows, rowEnd - i), K = K, N = N, Accumulate = Accumulate, TaskCount = 1 };
                    group.RunRange(j0, j1);
                }
                return;
            }
            int kVec = K & ~15;
            int tiles = (j1 - j0) / 4;
            bool chunked = kVec > Chunk;
            // Rows of x per pass: all of them when K is one chunk, else as many as the saved accumulators allow.
            int xBlock = chunked ? XBlockRows : rowEnd - rowStart;
            float* partials = chunked ? PartialBuffer((long)((xBlock + DotTile.MaxRows - 1) / DotTile.MaxRows) * tiles * DotTile.PartialFloats) : null;
            for (int i0 = rowStart; i0 < rowEnd; i0 += xBlock)
            {
                int i1 = Math.Min(rowEnd, i0 + xBlock);
                for (int p0 = 0; p0 < Math.Max(kVec, 1); p0 += Chunk)
                {
                    int p1 = Math.Min(kVec, p0 + Chunk);
                    bool resume = p0 > 0, last = p1 == kVec;
                    for (int i = i0; i < i1; i += DotTile.MaxRows)
                    {
                        int rows = Math.Min(DotTile.MaxRows, i1 - i);
                        float* groupPartials = chunked ? partials + (long)((i - i0) / DotTile.MaxRows) * tiles * DotTile.PartialFloats : null;
                        switch (rows)
                        {
                            case 6: Tiles<TBlockLoad, Rows6>(w, i, j0, tiles, p0, p1, groupPartials, resume, last); break;
                            case 5: Tiles<TBlockLoad, Rows5>(w, i, j0, tiles, p0, p1, groupPartials, resume, last); break;
                            case 4: Tiles<TBlockLoad, Rows4>(w, i, j0, tiles, p0, p1, groupPartials, resume, last); break;
                            case 3: Tiles<TBlockLoad, Rows3>(w, i, j0, tiles, p0, p1, groupPartials, resume, last); break;
                            case 2: Tiles<TBlockLoad, Rows2>(w, i, j0, tiles, p0, p1, groupPartials, resume, last); break;
                            default: Tiles<TBlockLoad, Rows1>(w, i, j0, tiles, p0, p1, groupPartials, resume, last); break;
                        }
                        if (!last) continue;
                        // Columns past the last whole tile: one dot product each, over all of K at once.
                        for (int j = j0 + tiles * 4; j < j1; j++)
                            for (int r = i; r < i + rows; r++)
                            {
                                float* xr = X + (long)r * K;
                                StoreOne<TBlockLoad>(Y + (long)r * N + j, xr, K, w, j, kVec, DotTile.Single<TBlockLoad>(xr, w, (long)j * K, kVec), Accumulate);
                            }
                    }
                }
            }
        }

        private readonly void Tiles<TBlockLoad, TRows>(void* w, int i, int j0, int tiles, int p0, int p1, float* partials, bool resume, bool last)
            where TBlockLoad : struct, IWeightLoad where TRows : struct, IRowCount
        {
            float* x = X + (long)i * K;
            int kVec = K & ~15;
            for (int t = 0; t < tiles; t++)
            {
                int j = j0 + t * 4;
                float* partial = partials == null ? null : partials + (long)t * DotTile.PartialFloats;
                DotTile.Run<TBlockLoad, TRows>(x, K, w, (long)j * K, p0, p1, K, partial, resume, save: !last, prefetch: false, out Vector512<float> low, out Vector512<float> high);
                if (!last) continue;
                StoreTile<TBlockLoad>(Y + (long)i * N, N, x, K, w, j, 1, Math.Min(4, TRows.Value), kVec, low, Accumulate);
                if (TRows.Value > 4) StoreTile<TBlockLoad>(Y + (long)(i + 4) * N, N, x + 4L * K, K, w, j, 1, TRows.Value - 4, kVec, high, Accumulate);
            }
        }
    }

    // Per-thread f32 scratch, grown when a bigger call comes and kept for the thread's life (pool threads live
    // as long as the process), so a prefill allocates only on its first call of each size.
    [ThreadStatic] private static ThreadScratch t_partials;        // saved tile accumulators
    [ThreadStatic] private static ThreadScratch t_convertedBlock;  // one W block converted from bf16/f16

    private static float* PartialBuffer(long count) => t_partials.Get(count);
    private static float* ConvertedBlock(long count) => t_convertedBlock.Get(count);

    private struct ThreadScratch
    {
        private nint _data;
        private long _count;

        public float* Get(long count)
        {
            if (_count < count)
            {
                if (_data != 0) System.Runtime.InteropServices.NativeMemory.AlignedFree((void*)_data);
                _data = (nint)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
                _count = count;
            }
            return (float*)_data;
        }
    }

    /// <summary>
    /// Writes (or adds) a reduced 4×4 tile of sums (block r = x row r, element c = column j + c·step) for the
    /// first <paramref name="rows"/> rows, after adding each element's scalar K tail [kVec, K) in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTile<TLoad>(float* y, int n, float* x, int k, void* w, int j, int step, int rows, int kVec, Vector512<float> sums, bool accumulate)
        where TLoad : struct, IWeightLoad
    {
        for (int r = 0; r < rows; r++)
        {
            Vector128<float> block = r switch
            {
                0 => sums.GetLower().GetLower(),
                1 => sums.GetLower().GetUpper(),
                2 => sums.GetUpper().GetLower(),
                _ => sums.GetUpper().GetUpper(),
            };
            float* yr = y + (long)r * n + j;
            if (kVec == k && step == 1)
            {
                if (accumulate) block += Vector128.Load(yr);
                block.Store(yr);
                continue;
            }
            StoreFour<TLoad>(yr, x + (long)r * k, k, w, j, step, kVec, block.GetElement(0), block.GetElement(1), block.GetElement(2), block.GetElement(3), accumulate);
        }
    }

    /// <summary>
    /// Adds the scalar K tail [kVec, K) of x row xr against W rows j, j + step, j + 2·step, j + 3·step to four
    /// partial dot products, in order, and writes (or adds) them to yr[0], yr[step], yr[2·step], yr[3·step].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFour<TLoad>(float* yr, float* xr, int k, void* w, int j, int step, int kVec, float s0, float s1, float s2, float s3, bool accumulate)
        where TLoad : struct, IWeightLoad
    {
        long w0 = (long)j * k, w1 = w0 + (long)step * k, w2 = w1 + (long)step * k, w3 = w2 + (long)step * k;
        for (int p = kVec; p < k; p++)
        {
            float xv = xr[p];
            s0 += xv * TLoad.Scalar(w, w0 + p);
            s1 += xv * TLoad.Scalar(w, w1 + p);
            s2 += xv * TLoad.Scalar(w, w2 + p);
            s3 += xv * TLoad.Scalar(w, w3 + p);
        }
        if (accumulate) { yr[0] += s0; yr[step] += s1; yr[2 * step] += s2; yr[3 * step] += s3; }
        else { yr[0] = s0; yr[step] = s1; yr[2 * step] = s2; yr[3 * step] = s3; }
    }

    /// <summary>Adds the scalar K tail of x row xr against W row j to one partial dot product and writes (or adds) it to *y.</summary>
    private static void StoreOne<TLoad>(float* y, float* xr, int k, void* w, int j, int kVec, float sum, bool accumulate)
        where TLoad : struct, IWeightLoad
    {
        long wj = (long)j * k;
        for (int p = kVec; p < k; p++) sum += xr[p] * TLoad.Scalar(w, wj + p);
        *y = accumulate ? *y + sum : sum;
    }

    private struct GemvTask<TLoad> : IParallelTask where TLoad : struct, IWeightLoad
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K]
        public void* W;    // [N, K]
        public int M, K, N, TaskCount;
        public bool Accumulate;

        public void Execute(int index)
        {
            // Ranges are multiples of 4 rows (except the last) so the 4-row kernel covers almost everything.
            int groups = (N + 3) / 4;
            int j0 = (int)((long)groups * index / TaskCount) * 4;
            int j1 = Math.Min(N, (int)((long)groups * (index + 1) / TaskCount) * 4);
            RunRange(j0, j1);
        }

        /// <summary>Outputs [j0, j1) for this task's 1..4 x rows.</summary>
        public readonly void RunRange(int j0, int j1)
        {
            switch (M)
            {
                case 1: Range<Rows1>(j0, j1); break;
                case 2: Range<Rows2>(j0, j1); break;
                case 3: Range<Rows3>(j0, j1); break;
                case 4: Range<Rows4>(j0, j1); break;
                default: throw new ArgumentOutOfRangeException(nameof(M), M, $"the GEMV path takes 1..{MaxRows} rows");
            }
        }

        private readonly void Range<TRows>(int j0, int j1) where TRows : struct, IRowCount
        {
            if (Vector512.IsHardwareAccelerated) Range512<TRows>(j0, j1);
            else Range256<TRows>(j0, j1);
        }

        private readonly void Range512<TRows>(int j0, int j1) where TRows : struct, IRowCount
        {
            int kVec = K & ~15;
            // A tile takes rows t, t + Q, t + 2Q, t + 3Q of the range (Q = a quarter of it), so each of its four W
            // rows advances through one contiguous quarter: four long sequential runs that the prefetchers follow,
            // instead of four one-row runs that restart every tile (bf16 from DRAM streamed at ~0.65× of a plain
            // read that way, ~1.0× now). The arithmetic of each element is the same either way.
            int quarter = (j1 - j0) / 4;
            long rowStride = (long)quarter * K;
            if (quarter > 0 && System.Runtime.Intrinsics.X86.Sse.IsSupported)
            {
                // The tile loop prefetches a fixed distance ahead of each run; fetch that first stretch now, so a
                // short range (a k/v projection's) does not start every run with demand misses.
                long runBytes = TLoad.ByteOffset(rowStride), lead = Math.Min(runBytes, DotTile.PrefetchBytes);
                for (int r = 0; r < 4; r++)
                {
                    byte* run = (byte*)W + TLoad.ByteOffset((long)j0 * K + r * rowStride);
                    for (long b = 0; b < lead; b += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(run + b);
                }
            }
            for (int t = 0; t < quarter; t++)
            {
                int j = j0 + t;
                DotTile.Run<TLoad, TRows>(X, K, W, (long)j * K, 0, kVec, rowStride, null, resume: false, save: false, prefetch: true, out Vector512<float> sums, out _);
                StoreTile<TLoad>(Y, N, X, K, W, j, quarter, TRows.Value, kVec, sums, Accumulate);
            }
            for (int j = j0 + 4 * quarter; j < j1; j++)
                for (int i = 0; i < M; i++) StoreOne(i, j, kVec, DotTile.Single<TLoad>(X + (long)i * K, W, (long)j * K, kVec));
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Range256<TRows>(int j0, int j1) where TRows : struct, IRowCount
        {
            int rows = TRows.Value;
            int k = K, kVec = k & ~7;
            float* x0 = X, x1 = X + k, x2 = X + 2L * k, x3 = X + 3L * k;
            int j = j0;
            for (; j + 4 <= j1; j += 4)
            {
                long w0 = (long)j * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
                Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
                Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
                Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default;
                Vector256<float> a30 = default, a31 = default, a32 = default, a33 = default;
                for (int p = 0; p < kVec; p += 8)
                {
                    Vector256<float> v0 = TLoad.Load256(W, w0 + p), v1 = TLoad.Load256(W, w1 + p);
                    Vector256<float> v2 = TLoad.Load256(W, w2 + p), v3 = TLoad.Load256(W, w3 + p);
                    Vector256<float> xv = Vector256.Load(x0 + p);
                    a00 = Vector256.FusedMultiplyAdd(xv, v0, a00); a01 = Vector256.FusedMultiplyAdd(xv, v1, a01);
                    a02 = Vector256.FusedMultiplyAdd(xv, v2, a02); a03 = Vector256.FusedMultiplyAdd(xv, v3, a03);
                    if (rows > 1)
                    {
                        xv = Vector256.Load(x1 + p);
                        a10 = Vector256.FusedMultiplyAdd(xv, v0, a10); a11 = Vector256.FusedMultiplyAdd(xv, v1, a11);
                        a12 = Vector256.FusedMultiplyAdd(xv, v2, a12); a13 = Vector256.FusedMultiplyAdd(xv, v3, a13);
                    }
                    if (rows > 2)
                    {
                        xv = Vector256.Load(x2 + p);
                        a20 = Vector256.FusedMultiplyAdd(xv, v0, a20); a21 = Vector256.FusedMultiplyAdd(xv, v1, a21);
                        a22 = Vector256.FusedMultiplyAdd(xv, v2, a22); a23 = Vector256.FusedMultiplyAdd(xv, v3, a23);
                    }
                    if (rows > 3)
                    {
                        xv = Vector256.Load(x3 + p);
                        a30 = Vector256.FusedMultiplyAdd(xv, v0, a30); a31 = Vector256.FusedMultiplyAdd(xv, v1, a31);
                        a32 = Vector256.FusedMultiplyAdd(xv, v2, a32); a33 = Vector256.FusedMultiplyAdd(xv, v3, a33);
                    }
                }
                Finish(0, j, kVec, Vector256.Sum(a00), Vector256.Sum(a01), Vector256.Sum(a02), Vector256.Sum(a03));
                if (rows > 1) Finish(1, j, kVec, Vector256.Sum(a10), Vector256.Sum(a11), Vector256.Sum(a12), Vector256.Sum(a13));
                if (rows > 2) Finish(2, j, kVec, Vector256.Sum(a20), Vector256.Sum(a21), Vector256.Sum(a22), Vector256.Sum(a23));
                if (rows > 3) Finish(3, j, kVec, Vector256.Sum(a30), Vector256.Sum(a31), Vector256.Sum(a32), Vector256.Sum(a33));
            }
            for (; j < j1; j++) SingleRow256(j, kVec);
        }

        /// <summary>Adds the scalar K tail [kVec, K) to four partial dot products of x row i and stores them.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private readonly void Finish(int i, int j, int kVec, float s0, float s1, float s2, float s3)
            => StoreFour<TLoad>(Y + (long)i * N + j, X + (long)i * K, K, W, j, 1, kVec, s0, s1, s2, s3, Accumulate);

        private readonly void SingleRow256(int j, int kVec)
        {
            long wj = (long)j * K;
            for (int i = 0; i < M; i++)
            {
                float* xi = X + (long)i * K;
                Vector256<float> acc = default;
                for (int p = 0; p < kVec; p += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(xi + p), TLoad.Load256(W, wj + p), acc);
                StoreOne(i, j, kVec, Vector256.Sum(acc));
            }
        }

        private readonly void StoreOne(int i, int j, int kVec, float sum)
            => StoreOne<TLoad>(Y + (long)i * N + j, X + (long)i * K, K, W, j, kVec, sum, Accumulate);
    }
}

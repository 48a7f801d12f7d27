using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = activation rows (1..MaxRows here), K = input features, N = output features (rows of W).
//
// Decode-sized products are memory-bound: W is read once, straight through, four rows at a time, and each
// vector of W meets every x row while it is in a register. Threads take contiguous ranges of W rows, so
// each streams its own part of the matrix and the hardware prefetcher sees long sequential runs.

/// <summary>y[M,N] (+)= x[M,K]·Wᵀ for a few rows of x, streaming W once.</summary>
internal static unsafe class Gemv
{
    public const int MaxRows = 4;

    public static void Run<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        // Contiguous ranges, a few per thread: a thread that the neighbours' processes preempt then holds up
        // only a small range, and each claim costs one compare-and-swap.
        int taskCount = Math.Max(1, Math.Min(pool.ThreadCount * 4, n / 16));
        var task = new GemvTask<TLoad> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, TaskCount = taskCount, StreamFromMemory = true };
        pool.For(taskCount, ref task);
    }

    /// <summary>
    /// y[M,N] (+)= x·Wᵀ for any M with exactly the GEMV's per-element arithmetic (one 16-lane accumulator over
    /// K, a fixed horizontal sum, the scalar tail): each x row's result is the same bits whatever M is and
    /// whichever rows share its batch. Batch invariance is what lets an aLoRA on a reused base KV cache match a
    /// from-scratch recompute to the last bit of the base rows. Tasks take blocks of W rows sized to stay in
    /// L2 while every group of ≤ 4 x rows passes over them.
    /// </summary>
    public static void RunRowGroups<TLoad>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TLoad : struct, IWeightLoad
    {
        long rowBytes = (long)k * sizeof(float);   // blocks of half-precision W are converted to f32 first
        int fitsL2 = (int)Math.Clamp((256L << 10) / Math.Max(1, rowBytes), 4, 1024);
        int balanced = (n + pool.ThreadCount * 4 - 1) / (pool.ThreadCount * 4);
        int blockRows = Math.Max(4, (Math.Min(fitsL2, balanced) + 3) / 4 * 4);
        var task = new RowGroupTask<TLoad> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, BlockRows = blockRows };
        pool.For((n + blockRows - 1) / blockRows, ref task);
    }

    private struct RowGroupTask<TLoad> : IParallelTask where TLoad : struct, IWeightLoad
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K]
        public void* W;    // [N, K]
        public int M, K, N, BlockRows;
        public bool Accumulate;

        public readonly void Execute(int index)
        {
            int j0 = index * BlockRows, j1 = Math.Min(N, j0 + BlockRows);
            if (TLoad.ElementSize == sizeof(float))
            {
                RunGroups<TLoad>(W, j0, j1);
                return;
            }
            // bf16/f16: convert the block once (exactly) instead of once per group of 4 rows. The f32 GEMV then
            // does the same arithmetic on the same values, so the result bits do not change.
            long count = (long)(j1 - j0) * K;
            float* block = ConvertedBlock(count);
            var dtype = typeof(TLoad) == typeof(BF16Load) ? Tensors.DType.BF16 : Tensors.DType.F16;
            Convert.ToSingle(block, (byte*)W + (long)j0 * K * TLoad.ElementSize, dtype, count);
            RunGroups<F32Load>(block - (long)j0 * K, j0, j1);   // indexed by absolute row j
        }

        private readonly void RunGroups<TBlockLoad>(void* w, int j0, int j1) where TBlockLoad : struct, IWeightLoad
        {
            for (int i = 0; i < M; i += MaxRows)
            {
                var group = new GemvTask<TBlockLoad> { Y = Y + (long)i * N, X = X + (long)i * K, W = w, M = Math.Min(MaxRows, M - i), K = K, N = N, Accumulate = Accumulate, TaskCount = 1 };
                group.RunRange(j0, j1);
            }
        }
    }

    [ThreadStatic] private static nint t_convertedBlock;
    [ThreadStatic] private static long t_convertedBlockCount;

    /// <summary>This thread's f32 scratch for one converted W block (grown when a bigger block comes; kept for the thread's life).</summary>
    private static float* ConvertedBlock(long count)
    {
        if (t_convertedBlockCount < count)
        {
            if (t_convertedBlock != 0) System.Runtime.InteropServices.NativeMemory.AlignedFree((void*)t_convertedBlock);
            t_convertedBlock = (nint)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
            t_convertedBlockCount = count;
        }
        return (float*)t_convertedBlock;
    }

    private struct GemvTask<TLoad> : IParallelTask where TLoad : struct, IWeightLoad
    {
        /// <summary>W comes from DRAM (decode): prefetch ahead. Off for row groups, whose W block sits in L2.</summary>
        public bool StreamFromMemory;
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

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly void Range512<TRows>(int j0, int j1) where TRows : struct, IRowCount
        {
            int rows = TRows.Value;
            int k = K, kVec = k & ~15;
            float* x0 = X, x1 = X + k, x2 = X + 2L * k, x3 = X + 3L * k;
            int j = j0;
            for (; j + 4 <= j1; j += 4)
            {
                long w0 = (long)j * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
                Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
                Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
                Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
                Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
                // The next tile's four rows are the next 4·K elements: prefetch them at the rate this tile consumes
                // its own, so DRAM streams ahead (the hardware prefetcher alone leaves bf16 rows short of bandwidth).
                byte* ahead = (byte*)W + (w0 + 4L * k) * TLoad.ElementSize;
                int aheadStep = 4 * 16 * TLoad.ElementSize;
                for (int p = 0; p < kVec; p += 16)
                {
                    if (StreamFromMemory && System.Runtime.Intrinsics.X86.Sse.IsSupported)
                    {
                        byte* line = ahead + (long)(p / 16) * aheadStep;
                        System.Runtime.Intrinsics.X86.Sse.Prefetch0(line);
                        System.Runtime.Intrinsics.X86.Sse.Prefetch0(line + 64);
                        if (aheadStep > 128) { System.Runtime.Intrinsics.X86.Sse.Prefetch0(line + 128); System.Runtime.Intrinsics.X86.Sse.Prefetch0(line + 192); }
                    }
                    Vector512<float> v0 = TLoad.Load512(W, w0 + p), v1 = TLoad.Load512(W, w1 + p);
                    Vector512<float> v2 = TLoad.Load512(W, w2 + p), v3 = TLoad.Load512(W, w3 + p);
                    Vector512<float> xv = Vector512.Load(x0 + p);
                    a00 = Vector512.FusedMultiplyAdd(xv, v0, a00); a01 = Vector512.FusedMultiplyAdd(xv, v1, a01);
                    a02 = Vector512.FusedMultiplyAdd(xv, v2, a02); a03 = Vector512.FusedMultiplyAdd(xv, v3, a03);
                    if (rows > 1)
                    {
                        xv = Vector512.Load(x1 + p);
                        a10 = Vector512.FusedMultiplyAdd(xv, v0, a10); a11 = Vector512.FusedMultiplyAdd(xv, v1, a11);
                        a12 = Vector512.FusedMultiplyAdd(xv, v2, a12); a13 = Vector512.FusedMultiplyAdd(xv, v3, a13);
                    }
                    if (rows > 2)
                    {
                        xv = Vector512.Load(x2 + p);
                        a20 = Vector512.FusedMultiplyAdd(xv, v0, a20); a21 = Vector512.FusedMultiplyAdd(xv, v1, a21);
                        a22 = Vector512.FusedMultiplyAdd(xv, v2, a22); a23 = Vector512.FusedMultiplyAdd(xv, v3, a23);
                    }
                    if (rows > 3)
                    {
                        xv = Vector512.Load(x3 + p);
                        a30 = Vector512.FusedMultiplyAdd(xv, v0, a30); a31 = Vector512.FusedMultiplyAdd(xv, v1, a31);
                        a32 = Vector512.FusedMultiplyAdd(xv, v2, a32); a33 = Vector512.FusedMultiplyAdd(xv, v3, a33);
                    }
                }
                Finish(0, j, kVec, Vector512.Sum(a00), Vector512.Sum(a01), Vector512.Sum(a02), Vector512.Sum(a03));
                if (rows > 1) Finish(1, j, kVec, Vector512.Sum(a10), Vector512.Sum(a11), Vector512.Sum(a12), Vector512.Sum(a13));
                if (rows > 2) Finish(2, j, kVec, Vector512.Sum(a20), Vector512.Sum(a21), Vector512.Sum(a22), Vector512.Sum(a23));
                if (rows > 3) Finish(3, j, kVec, Vector512.Sum(a30), Vector512.Sum(a31), Vector512.Sum(a32), Vector512.Sum(a33));
            }
            for (; j < j1; j++) SingleRow512(j, kVec);
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
        {
            float* xi = X + (long)i * K;
            long w0 = (long)j * K;
            for (int p = kVec; p < K; p++)
            {
                float xv = xi[p];
                s0 += xv * TLoad.Scalar(W, w0 + p);
                s1 += xv * TLoad.Scalar(W, w0 + K + p);
                s2 += xv * TLoad.Scalar(W, w0 + 2L * K + p);
                s3 += xv * TLoad.Scalar(W, w0 + 3L * K + p);
            }
            float* yi = Y + (long)i * N + j;
            if (Accumulate) { yi[0] += s0; yi[1] += s1; yi[2] += s2; yi[3] += s3; }
            else { yi[0] = s0; yi[1] = s1; yi[2] = s2; yi[3] = s3; }
        }

        private readonly void SingleRow512(int j, int kVec)
        {
            long wj = (long)j * K;
            for (int i = 0; i < M; i++)
            {
                float* xi = X + (long)i * K;
                Vector512<float> acc = default;
                for (int p = 0; p < kVec; p += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(xi + p), TLoad.Load512(W, wj + p), acc);
                StoreOne(i, j, kVec, Vector512.Sum(acc));
            }
        }

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
        {
            float* xi = X + (long)i * K;
            long wj = (long)j * K;
            for (int p = kVec; p < K; p++) sum += xi[p] * TLoad.Scalar(W, wj + p);
            float* yij = Y + (long)i * N + j;
            *yij = Accumulate ? *yij + sum : sum;
        }
    }
}

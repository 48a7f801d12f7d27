using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Alora.Kernels;

// Legend: M = activation rows (1..MaxRows), K = input features (whole blocks), N = output features (rows of W),
// QK = elements per block, B = blocks per row (K / QK).
//
// The decode GEMV on a block-quantized W. Like the dense GEMV, a thread streams one contiguous range of W rows as
// four sequential runs (a tile takes rows t, t + Q, t + 2Q, t + 3Q of its range); per block index it decodes the
// four rows' block scales once, then widens each 16-element vector of integers in registers, scales it, and runs
// the 16-lane FMAs of every x row against it. The arithmetic is DotTile's exactly: the same dequantized values (IQuantBlock's q·mult + offset gives
// the bits the type's IWeightLoad gives), lane l summing p ≡ l (mod 16) in increasing p by FMA, the same reduction
// tree. So a row's bits are those of every other path on this matrix (the batched decode tiles, the row groups),
// and those of the same paths on the dequantized f32 twin: batch invariance holds as it does for f32.
//
// Activations stay f32 (docs/quantization.md, "Why f32 activations"): exact against the dequantized matrix, and
// measured fast enough to meet the read roofline's fraction on this machine's decode shapes.

internal static unsafe partial class Gemv
{
    /// <summary>y[M,N] (+)= x[M,K]·Wᵀ for M ≤ <see cref="MaxRows"/> on a block-quantized W (512-bit vectors only).</summary>
    public static void RunQuantized<TBlock>(float* y, float* x, void* w, int m, int k, int n, bool accumulate, WorkerPool pool)
        where TBlock : struct, IWeightLoad, IQuantBlock
    {
        int taskCount = (long)m * n * k < WorkerPool.InlineMultiplyAdds ? 1 : Math.Max(1, Math.Min(pool.ThreadCount, n / 16));
        var task = new QuantTask<TBlock> { Y = y, X = x, W = w, M = m, K = k, N = n, Accumulate = accumulate, TaskCount = taskCount };
        pool.For(taskCount, ref task);
    }

    private struct QuantTask<TBlock> : IParallelTask where TBlock : struct, IWeightLoad, IQuantBlock
    {
        public float* Y;   // [M, N]
        public float* X;   // [M, K]
        public void* W;    // [N, B blocks]
        public int M, K, N, TaskCount;
        public bool Accumulate;

        public readonly void Execute(int index)
        {
            int groups = (N + 3) / 4;
            int j0 = (int)((long)groups * index / TaskCount) * 4;
            int j1 = Math.Min(N, (int)((long)groups * (index + 1) / TaskCount) * 4);
            switch (M)
            {
                case 1: Range<Rows1>(j0, j1); break;
                case 2: Range<Rows2>(j0, j1); break;
                case 3: Range<Rows3>(j0, j1); break;
                case 4: Range<Rows4>(j0, j1); break;
                default: throw new ArgumentOutOfRangeException(nameof(M), M, $"the quantized GEMV takes 1..{MaxRows} rows");
            }
        }

        [SkipLocalsInit]
        private readonly void Range<TRows>(int j0, int j1) where TRows : struct, IRowCount
        {
            int quarter = (j1 - j0) / 4;
            long rowBytes = TBlock.ByteOffset(K);
            float* scales = stackalloc float[4 * 32];   // [4 W rows, multipliers then offsets of ≤ 16 vectors]
            for (int t = 0; t < quarter; t++)
            {
                int j = j0 + t;
                Vector512<float> sums = Tile<TRows>((byte*)W + j * rowBytes, quarter * rowBytes, scales);
                StoreTile<TBlock>(Y, N, X, K, W, j, quarter, TRows.Value, K, sums, Accumulate);
            }
            for (int j = j0 + 4 * quarter; j < j1; j++)
                for (int i = 0; i < M; i++)
                {
                    float* xi = X + (long)i * K;
                    StoreOne<TBlock>(Y + (long)i * N + j, xi, K, W, j, K, Single((byte*)W + j * rowBytes, xi, scales), Accumulate);
                }
        }

        /// <summary>Vector v of a block with its scales: q·mult (+ offset), the bits of the type's Load512.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<float> Values(byte* block, float* scales, int v, int vectors)
        {
            Vector512<float> w = TBlock.Q(block, v) * Vector512.Create(scales[v]);
            return TBlock.HasOffset ? w + Vector512.Create(scales[vectors + v]) : w;
        }

        /// <summary>
        /// The 4 W rows at w0, w0 + stride, w0 + 2·stride, w0 + 3·stride against x rows 0..TRows: block r of the result
        /// holds x row r, element c the dot product with W row c (DotTile.Run's layout and arithmetic).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private readonly Vector512<float> Tile<TRows>(byte* w0, long stride, float* scales) where TRows : struct, IRowCount
        {
            int rows = TRows.Value, qk = TBlock.BlockLength, blockBytes = TBlock.BlockBytes, vectors = qk / 16;
            int blocks = K / qk;
            byte* w1 = w0 + stride, w2 = w1 + stride, w3 = w2 + stride;
            float* x0 = X, x1 = X + K, x2 = X + 2L * K, x3 = X + 3L * K;
            float* s0 = scales, s1 = scales + 32, s2 = scales + 64, s3 = scales + 96;
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            for (int b = 0; b < blocks; b++)
            {
                long offset = (long)b * blockBytes;
                byte* b0 = w0 + offset, b1 = w1 + offset, b2 = w2 + offset, b3 = w3 + offset;
                if (Sse.IsSupported)
                {
                    Sse.Prefetch0(b0 + DotTile.PrefetchBytes);
                    Sse.Prefetch0(b1 + DotTile.PrefetchBytes);
                    Sse.Prefetch0(b2 + DotTile.PrefetchBytes);
                    Sse.Prefetch0(b3 + DotTile.PrefetchBytes);
                }
                TBlock.Scales(b0, s0);
                TBlock.Scales(b1, s1);
                TBlock.Scales(b2, s2);
                TBlock.Scales(b3, s3);
                float* xb0 = x0 + b * qk, xb1 = x1 + b * qk, xb2 = x2 + b * qk, xb3 = x3 + b * qk;
                for (int v = 0; v < vectors; v++)
                {
                    Vector512<float> v0 = Values(b0, s0, v, vectors), v1 = Values(b1, s1, v, vectors);
                    Vector512<float> v2 = Values(b2, s2, v, vectors), v3 = Values(b3, s3, v, vectors);
                    Vector512<float> xv = Vector512.Load(xb0 + 16 * v);
                    a00 = Vector512.FusedMultiplyAdd(xv, v0, a00); a01 = Vector512.FusedMultiplyAdd(xv, v1, a01);
                    a02 = Vector512.FusedMultiplyAdd(xv, v2, a02); a03 = Vector512.FusedMultiplyAdd(xv, v3, a03);
                    if (rows > 1)
                    {
                        xv = Vector512.Load(xb1 + 16 * v);
                        a10 = Vector512.FusedMultiplyAdd(xv, v0, a10); a11 = Vector512.FusedMultiplyAdd(xv, v1, a11);
                        a12 = Vector512.FusedMultiplyAdd(xv, v2, a12); a13 = Vector512.FusedMultiplyAdd(xv, v3, a13);
                    }
                    if (rows > 2)
                    {
                        xv = Vector512.Load(xb2 + 16 * v);
                        a20 = Vector512.FusedMultiplyAdd(xv, v0, a20); a21 = Vector512.FusedMultiplyAdd(xv, v1, a21);
                        a22 = Vector512.FusedMultiplyAdd(xv, v2, a22); a23 = Vector512.FusedMultiplyAdd(xv, v3, a23);
                    }
                    if (rows > 3)
                    {
                        xv = Vector512.Load(xb3 + 16 * v);
                        a30 = Vector512.FusedMultiplyAdd(xv, v0, a30); a31 = Vector512.FusedMultiplyAdd(xv, v1, a31);
                        a32 = Vector512.FusedMultiplyAdd(xv, v2, a32); a33 = Vector512.FusedMultiplyAdd(xv, v3, a33);
                    }
                }
            }
            return DotTile.Reduce(a00, a10, a20, a30, a01, a11, a21, a31, a02, a12, a22, a32, a03, a13, a23, a33);
        }

        /// <summary>One W row against one x row: the same lanes and tree as a tile element.</summary>
        private readonly float Single(byte* w, float* x, float* scales)
        {
            int qk = TBlock.BlockLength, blocks = K / qk, vectors = qk / 16;
            Vector512<float> acc = default;
            for (int b = 0; b < blocks; b++)
            {
                byte* block = w + (long)b * TBlock.BlockBytes;
                TBlock.Scales(block, scales);
                for (int v = 0; v < vectors; v++) acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + b * qk + 16 * v), Values(block, scales, v, vectors), acc);
            }
            Vector512<float> z = default;
            return DotTile.Reduce(acc, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z).ToScalar();
        }
    }
}

using System.Buffers;
using System.Runtime.Intrinsics;
using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Training;

// Legend: M = token rows, N = output features (rows of W), K = input features (columns of W),
// Kc = columns per panel (4 vectors), Nc = W rows per panel.

/// <summary>
/// dx[M, K] (+)= dy[M, N]·W[N, K] with a register tile of 4 rows × 4 vectors: a panel of W (Nc rows × Kc columns)
/// is converted to f32 once, then each 4-row tile of dx keeps its 16 accumulators in registers over the panel's
/// Nc rows, broadcasting dy. Tasks own disjoint column blocks (and row ranges), so they never share writes.
/// Columns beyond the last whole block are left to the caller.
/// </summary>
internal static unsafe class InputGradientPanels
{
    private const int PanelRows = 256;   // Nc: a 64 KiB panel at Kc = 64

    /// <summary>Kc for the widest accelerated vector, or 0 when there is none.</summary>
    public static int BlockColumns => Vector512.IsHardwareAccelerated ? 64 : Vector256.IsHardwareAccelerated ? 32 : 0;

    /// <summary>Runs the whole column blocks [0, K − K % Kc); returns the first column it did not cover.</summary>
    public static int Run(float* dx, float* dy, in WeightMatrix w, int m, bool accumulate, WorkerPool pool)
    {
        int kc = BlockColumns;
        if (kc == 0) return 0;
        int blocks = w.Cols / kc;
        if (blocks == 0) return 0;
        int rowChunks = Math.Clamp(pool.ThreadCount * 2 / blocks, 1, Math.Max(1, m / 16));
        var task = new Task { Dx = dx, Dy = dy, W = w.Data, DType = w.DType, M = m, N = w.Rows, K = w.Cols, Kc = kc, Blocks = blocks, RowChunks = rowChunks, Accumulate = accumulate };
        pool.For(blocks * rowChunks, ref task);
        return blocks * kc;
    }

    private struct Task : IParallelTask
    {
        public float* Dx;   // [M, K]
        public float* Dy;   // [M, N]
        public void* W;     // [N, K]
        public DType DType;
        public int M, N, K, Kc, Blocks, RowChunks;
        public bool Accumulate;

        public readonly void Execute(int index)
        {
            int block = index % Blocks, chunk = index / Blocks;
            int k0 = block * Kc;
            int i0 = (int)((long)M * chunk / RowChunks), i1 = (int)((long)M * (chunk + 1) / RowChunks);
            float[] rented = ArrayPool<float>.Shared.Rent(PanelRows * Kc);
            int elementSize = DType.ByteSize();
            try
            {
                fixed (float* panel = rented)   // [Nc, Kc] W[n0 .. n0 + Nc, k0 .. k0 + Kc] as f32
                {
                    for (int n0 = 0; n0 < N; n0 += PanelRows)
                    {
                        int rows = Math.Min(PanelRows, N - n0);
                        for (int j = 0; j < rows; j++)
                            Kernels.Convert.ToSingle(panel + (long)j * Kc, (byte*)W + ((long)(n0 + j) * K + k0) * elementSize, DType, Kc);
                        bool load = Accumulate || n0 > 0;
                        if (Kc == 64) Tile512(panel, n0, rows, k0, i0, i1, load);
                        else Tile256(panel, n0, rows, k0, i0, i1, load);
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(rented);
            }
        }

        private readonly void Tile512(float* panel, int n0, int rows, int k0, int i0, int i1, bool load)
        {
            int i = i0;
            for (; i + 4 <= i1; i += 4)
            {
                float* x0 = Dx + (long)i * K + k0, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
                float* g0 = Dy + (long)i * N + n0, g1 = g0 + N, g2 = g1 + N, g3 = g2 + N;
                Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
                Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
                if (load)
                {
                    a00 = Vector512.Load(x0); a01 = Vector512.Load(x0 + 16); a02 = Vector512.Load(x0 + 32); a03 = Vector512.Load(x0 + 48);
                    a10 = Vector512.Load(x1); a11 = Vector512.Load(x1 + 16); a12 = Vector512.Load(x1 + 32); a13 = Vector512.Load(x1 + 48);
                    a20 = Vector512.Load(x2); a21 = Vector512.Load(x2 + 16); a22 = Vector512.Load(x2 + 32); a23 = Vector512.Load(x2 + 48);
                    a30 = Vector512.Load(x3); a31 = Vector512.Load(x3 + 16); a32 = Vector512.Load(x3 + 32); a33 = Vector512.Load(x3 + 48);
                }
                for (int j = 0; j < rows; j++)
                {
                    float* p = panel + (long)j * 64;
                    Vector512<float> w0 = Vector512.Load(p), w1 = Vector512.Load(p + 16), w2 = Vector512.Load(p + 32), w3 = Vector512.Load(p + 48);
                    var b = Vector512.Create(g0[j]);
                    a00 = Vector512.FusedMultiplyAdd(b, w0, a00); a01 = Vector512.FusedMultiplyAdd(b, w1, a01); a02 = Vector512.FusedMultiplyAdd(b, w2, a02); a03 = Vector512.FusedMultiplyAdd(b, w3, a03);
                    b = Vector512.Create(g1[j]);
                    a10 = Vector512.FusedMultiplyAdd(b, w0, a10); a11 = Vector512.FusedMultiplyAdd(b, w1, a11); a12 = Vector512.FusedMultiplyAdd(b, w2, a12); a13 = Vector512.FusedMultiplyAdd(b, w3, a13);
                    b = Vector512.Create(g2[j]);
                    a20 = Vector512.FusedMultiplyAdd(b, w0, a20); a21 = Vector512.FusedMultiplyAdd(b, w1, a21); a22 = Vector512.FusedMultiplyAdd(b, w2, a22); a23 = Vector512.FusedMultiplyAdd(b, w3, a23);
                    b = Vector512.Create(g3[j]);
                    a30 = Vector512.FusedMultiplyAdd(b, w0, a30); a31 = Vector512.FusedMultiplyAdd(b, w1, a31); a32 = Vector512.FusedMultiplyAdd(b, w2, a32); a33 = Vector512.FusedMultiplyAdd(b, w3, a33);
                }
                a00.Store(x0); a01.Store(x0 + 16); a02.Store(x0 + 32); a03.Store(x0 + 48);
                a10.Store(x1); a11.Store(x1 + 16); a12.Store(x1 + 32); a13.Store(x1 + 48);
                a20.Store(x2); a21.Store(x2 + 16); a22.Store(x2 + 32); a23.Store(x2 + 48);
                a30.Store(x3); a31.Store(x3 + 16); a32.Store(x3 + 32); a33.Store(x3 + 48);
            }
            for (; i < i1; i++)
            {
                float* x0 = Dx + (long)i * K + k0, g0 = Dy + (long)i * N + n0;
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
                if (load) { a0 = Vector512.Load(x0); a1 = Vector512.Load(x0 + 16); a2 = Vector512.Load(x0 + 32); a3 = Vector512.Load(x0 + 48); }
                for (int j = 0; j < rows; j++)
                {
                    float* p = panel + (long)j * 64;
                    var b = Vector512.Create(g0[j]);
                    a0 = Vector512.FusedMultiplyAdd(b, Vector512.Load(p), a0); a1 = Vector512.FusedMultiplyAdd(b, Vector512.Load(p + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(b, Vector512.Load(p + 32), a2); a3 = Vector512.FusedMultiplyAdd(b, Vector512.Load(p + 48), a3);
                }
                a0.Store(x0); a1.Store(x0 + 16); a2.Store(x0 + 32); a3.Store(x0 + 48);
            }
        }

        private readonly void Tile256(float* panel, int n0, int rows, int k0, int i0, int i1, bool load)
        {
            int i = i0;
            for (; i + 4 <= i1; i += 4)
            {
                float* x0 = Dx + (long)i * K + k0, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
                float* g0 = Dy + (long)i * N + n0, g1 = g0 + N, g2 = g1 + N, g3 = g2 + N;
                Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
                Vector256<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
                if (load)
                {
                    a00 = Vector256.Load(x0); a01 = Vector256.Load(x0 + 8); a02 = Vector256.Load(x0 + 16); a03 = Vector256.Load(x0 + 24);
                    a10 = Vector256.Load(x1); a11 = Vector256.Load(x1 + 8); a12 = Vector256.Load(x1 + 16); a13 = Vector256.Load(x1 + 24);
                    a20 = Vector256.Load(x2); a21 = Vector256.Load(x2 + 8); a22 = Vector256.Load(x2 + 16); a23 = Vector256.Load(x2 + 24);
                    a30 = Vector256.Load(x3); a31 = Vector256.Load(x3 + 8); a32 = Vector256.Load(x3 + 16); a33 = Vector256.Load(x3 + 24);
                }
                for (int j = 0; j < rows; j++)
                {
                    float* p = panel + (long)j * 32;
                    Vector256<float> w0 = Vector256.Load(p), w1 = Vector256.Load(p + 8), w2 = Vector256.Load(p + 16), w3 = Vector256.Load(p + 24);
                    var b = Vector256.Create(g0[j]);
                    a00 = Vector256.FusedMultiplyAdd(b, w0, a00); a01 = Vector256.FusedMultiplyAdd(b, w1, a01); a02 = Vector256.FusedMultiplyAdd(b, w2, a02); a03 = Vector256.FusedMultiplyAdd(b, w3, a03);
                    b = Vector256.Create(g1[j]);
                    a10 = Vector256.FusedMultiplyAdd(b, w0, a10); a11 = Vector256.FusedMultiplyAdd(b, w1, a11); a12 = Vector256.FusedMultiplyAdd(b, w2, a12); a13 = Vector256.FusedMultiplyAdd(b, w3, a13);
                    b = Vector256.Create(g2[j]);
                    a20 = Vector256.FusedMultiplyAdd(b, w0, a20); a21 = Vector256.FusedMultiplyAdd(b, w1, a21); a22 = Vector256.FusedMultiplyAdd(b, w2, a22); a23 = Vector256.FusedMultiplyAdd(b, w3, a23);
                    b = Vector256.Create(g3[j]);
                    a30 = Vector256.FusedMultiplyAdd(b, w0, a30); a31 = Vector256.FusedMultiplyAdd(b, w1, a31); a32 = Vector256.FusedMultiplyAdd(b, w2, a32); a33 = Vector256.FusedMultiplyAdd(b, w3, a33);
                }
                a00.Store(x0); a01.Store(x0 + 8); a02.Store(x0 + 16); a03.Store(x0 + 24);
                a10.Store(x1); a11.Store(x1 + 8); a12.Store(x1 + 16); a13.Store(x1 + 24);
                a20.Store(x2); a21.Store(x2 + 8); a22.Store(x2 + 16); a23.Store(x2 + 24);
                a30.Store(x3); a31.Store(x3 + 8); a32.Store(x3 + 16); a33.Store(x3 + 24);
            }
            for (; i < i1; i++)
            {
                float* x0 = Dx + (long)i * K + k0, g0 = Dy + (long)i * N + n0;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                if (load) { a0 = Vector256.Load(x0); a1 = Vector256.Load(x0 + 8); a2 = Vector256.Load(x0 + 16); a3 = Vector256.Load(x0 + 24); }
                for (int j = 0; j < rows; j++)
                {
                    float* p = panel + (long)j * 32;
                    var b = Vector256.Create(g0[j]);
                    a0 = Vector256.FusedMultiplyAdd(b, Vector256.Load(p), a0); a1 = Vector256.FusedMultiplyAdd(b, Vector256.Load(p + 8), a1);
                    a2 = Vector256.FusedMultiplyAdd(b, Vector256.Load(p + 16), a2); a3 = Vector256.FusedMultiplyAdd(b, Vector256.Load(p + 24), a3);
                }
                a0.Store(x0); a1.Store(x0 + 8); a2.Store(x0 + 16); a3.Store(x0 + 24);
            }
        }
    }
}

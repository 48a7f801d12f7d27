using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Alora.Kernels;

// Legend: a tile is up to 6 x rows × 4 W rows (output columns j..j+3); K = the shared dot-product length.
//
// The one definition of a 512-bit dot product that the decode GEMV and the batch-invariant prefill GEMM
// share. Element (i, j) of y is always: 16 lane accumulators, lane l summing x[i,p]·w[j,p] for p ≡ l (mod 16)
// in increasing p by fused multiply-add; then the fixed tree l + (l+8), + (l+4), + (l+2), + (l+1); then the
// scalar tail p ∈ [K & ~15, K) in order. Nothing in that depends on the tile, the chunking of K or the
// number of rows in the call, which is what makes a row's bits independent of its batch.

/// <summary>Dot-product tiles of up to 6 x rows × 4 W rows over 512-bit vectors, resumable across chunks of K.</summary>
internal static unsafe class DotTile
{
    /// <summary>Most x rows in one tile.</summary>
    public const int MaxRows = 6;

    /// <summary>How far ahead of each of a decode tile's four W runs to prefetch (tuned: 1–2 KiB best, 4 KiB worse).</summary>
    public const int PrefetchBytes = 2048;

    /// <summary>Floats that hold one tile's accumulators between chunks of K: [24 accumulators (row·4 + col), 16 lanes].</summary>
    public const int PartialFloats = 24 * 16;

    /// <summary>
    /// Runs the lane accumulators of x rows [0, rows) (row stride <paramref name="k"/>, rows ≤ 6) against four W rows
    /// at element indices w0, w0 + rowStride, w0 + 2·rowStride, w0 + 3·rowStride (columns c = 0..3) over
    /// p ∈ [p0, p1), p1 − p0 a multiple of 16.
    /// Starts from zero, or from <paramref name="partial"/> when <paramref name="resume"/>; when
    /// <paramref name="save"/> it stores the accumulators back to <paramref name="partial"/> and returns zeros,
    /// otherwise it returns the reduced sums: rows 0..3 in <paramref name="low"/>, rows 4..5 in
    /// <paramref name="high"/> (128-bit block r = row r, element c = column c).
    /// </summary>
    /// <remarks>
    /// Six rows × four columns is 24 accumulators plus four W vectors and one x vector: 29 of the 32 registers.
    /// Each W vector (the operand that comes from L2) then feeds six FMAs.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TLoad, TRows>(float* x, int k, void* w, long w0, int p0, int p1,
        long rowStride, float* partial, bool resume, bool save, bool prefetch, out Vector512<float> low, out Vector512<float> high)
        where TLoad : struct, IWeightLoad where TRows : struct, IRowCount
    {
        int rows = TRows.Value;
        long w1 = w0 + rowStride, w2 = w1 + rowStride, w3 = w2 + rowStride;
        float* x0 = x, x1 = x + k, x2 = x + 2L * k, x3 = x + 3L * k, x4 = x + 4L * k, x5 = x + 5L * k;
        // Accumulators of rows ≥ TRows stay constant zero everywhere below (every use is guarded by `rows`), so
        // the JIT folds them away: a 1-row decode tile then holds 4 accumulators in registers, not 24 on the stack.
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        Vector512<float> a40 = default, a41 = default, a42 = default, a43 = default, a50 = default, a51 = default, a52 = default, a53 = default;
        if (resume)
        {
            a00 = Vector512.Load(partial); a01 = Vector512.Load(partial + 16); a02 = Vector512.Load(partial + 32); a03 = Vector512.Load(partial + 48);
            if (rows > 1) { a10 = Vector512.Load(partial + 64); a11 = Vector512.Load(partial + 80); a12 = Vector512.Load(partial + 96); a13 = Vector512.Load(partial + 112); }
            if (rows > 2) { a20 = Vector512.Load(partial + 128); a21 = Vector512.Load(partial + 144); a22 = Vector512.Load(partial + 160); a23 = Vector512.Load(partial + 176); }
            if (rows > 3) { a30 = Vector512.Load(partial + 192); a31 = Vector512.Load(partial + 208); a32 = Vector512.Load(partial + 224); a33 = Vector512.Load(partial + 240); }
            if (rows > 4) { a40 = Vector512.Load(partial + 256); a41 = Vector512.Load(partial + 272); a42 = Vector512.Load(partial + 288); a43 = Vector512.Load(partial + 304); }
            if (rows > 5) { a50 = Vector512.Load(partial + 320); a51 = Vector512.Load(partial + 336); a52 = Vector512.Load(partial + 352); a53 = Vector512.Load(partial + 368); }
        }
        // Decode streams W from DRAM as four long runs (see Gemv.Range512): fetch each a fixed distance ahead.
        for (int p = p0; p < p1; p += 16)
        {
            if (prefetch && Sse.IsSupported)
            {
                Sse.Prefetch0((byte*)w + TLoad.ByteOffset(w0 + p) + PrefetchBytes);
                Sse.Prefetch0((byte*)w + TLoad.ByteOffset(w1 + p) + PrefetchBytes);
                Sse.Prefetch0((byte*)w + TLoad.ByteOffset(w2 + p) + PrefetchBytes);
                Sse.Prefetch0((byte*)w + TLoad.ByteOffset(w3 + p) + PrefetchBytes);
            }
            Vector512<float> v0 = TLoad.Load512(w, w0 + p), v1 = TLoad.Load512(w, w1 + p);
            Vector512<float> v2 = TLoad.Load512(w, w2 + p), v3 = TLoad.Load512(w, w3 + p);
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
            if (rows > 4)
            {
                xv = Vector512.Load(x4 + p);
                a40 = Vector512.FusedMultiplyAdd(xv, v0, a40); a41 = Vector512.FusedMultiplyAdd(xv, v1, a41);
                a42 = Vector512.FusedMultiplyAdd(xv, v2, a42); a43 = Vector512.FusedMultiplyAdd(xv, v3, a43);
            }
            if (rows > 5)
            {
                xv = Vector512.Load(x5 + p);
                a50 = Vector512.FusedMultiplyAdd(xv, v0, a50); a51 = Vector512.FusedMultiplyAdd(xv, v1, a51);
                a52 = Vector512.FusedMultiplyAdd(xv, v2, a52); a53 = Vector512.FusedMultiplyAdd(xv, v3, a53);
            }
        }
        if (save)
        {
            a00.Store(partial); a01.Store(partial + 16); a02.Store(partial + 32); a03.Store(partial + 48);
            if (rows > 1) { a10.Store(partial + 64); a11.Store(partial + 80); a12.Store(partial + 96); a13.Store(partial + 112); }
            if (rows > 2) { a20.Store(partial + 128); a21.Store(partial + 144); a22.Store(partial + 160); a23.Store(partial + 176); }
            if (rows > 3) { a30.Store(partial + 192); a31.Store(partial + 208); a32.Store(partial + 224); a33.Store(partial + 240); }
            if (rows > 4) { a40.Store(partial + 256); a41.Store(partial + 272); a42.Store(partial + 288); a43.Store(partial + 304); }
            if (rows > 5) { a50.Store(partial + 320); a51.Store(partial + 336); a52.Store(partial + 352); a53.Store(partial + 368); }
            low = high = default;
            return;
        }
        Vector512<float> z = default;
        low = rows switch
        {
            1 => Reduce(a00, z, z, z, a01, z, z, z, a02, z, z, z, a03, z, z, z),
            2 => Reduce(a00, a10, z, z, a01, a11, z, z, a02, a12, z, z, a03, a13, z, z),
            3 => Reduce(a00, a10, a20, z, a01, a11, a21, z, a02, a12, a22, z, a03, a13, a23, z),
            _ => Reduce(a00, a10, a20, a30, a01, a11, a21, a31, a02, a12, a22, a32, a03, a13, a23, a33),
        };
        high = rows > 4 ? Reduce(a40, a50, z, z, a41, a51, z, z, a42, a52, z, z, a43, a53, z, z) : default;
    }

    /// <summary>One x row against one W row over p ∈ [0, kVec): the same lanes and tree as a tile element.</summary>
    public static float Single<TLoad>(float* x, void* w, long w0, int kVec) where TLoad : struct, IWeightLoad
    {
        Vector512<float> acc = default;
        for (int p = 0; p < kVec; p += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(x + p), TLoad.Load512(w, w0 + p), acc);
        Vector512<float> z = default;
        return Reduce(acc, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z).ToScalar();
    }

    /// <summary>
    /// Horizontal sums of sixteen accumulators, given column by column (rows 0..3 of column 0, then of column 1, …),
    /// as one vector: block r, element c = Σ lanes of accumulator (r, c). Each sum takes the tree
    /// ((l + l⁺⁸) + (l⁺⁴ + l⁺¹²)) pairwise down to one, interleaved so the whole tile costs 30 shuffles and 15 adds.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Reduce(
        Vector512<float> r0c0, Vector512<float> r1c0, Vector512<float> r2c0, Vector512<float> r3c0,
        Vector512<float> r0c1, Vector512<float> r1c1, Vector512<float> r2c1, Vector512<float> r3c1,
        Vector512<float> r0c2, Vector512<float> r1c2, Vector512<float> r2c2, Vector512<float> r3c2,
        Vector512<float> r0c3, Vector512<float> r1c3, Vector512<float> r2c3, Vector512<float> r3c3)
    {
        Vector512<float> s0 = HalveTwice(r0c0, r1c0, r2c0, r3c0);
        Vector512<float> s1 = HalveTwice(r0c1, r1c1, r2c1, r3c1);
        Vector512<float> s2 = HalveTwice(r0c2, r1c2, r2c2, r3c2);
        Vector512<float> s3 = HalveTwice(r0c3, r1c3, r2c3, r3c3);
        // Within each 128-bit block (one row): [t0 + t2, t1 + t3] for two columns side by side …
        Vector512<float> u01 = Avx512F.Shuffle(s0, s1, 0x44) + Avx512F.Shuffle(s0, s1, 0xEE);
        Vector512<float> u23 = Avx512F.Shuffle(s2, s3, 0x44) + Avx512F.Shuffle(s2, s3, 0xEE);
        // … then u0 + u1, landing column c in element c.
        return Avx512F.Shuffle(u01, u23, 0x88) + Avx512F.Shuffle(u01, u23, 0xDD);
    }

    /// <summary>
    /// Four accumulators (rows 0..3 of one column) → block r holds row r's lanes l + (l+8) + … folded to 4:
    /// t[l] = (a[l] + a[l+8]) + (a[l+4] + a[l+12]) for l &lt; 4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalveTwice(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        // [a.lo8 + a.hi8 | b.lo8 + b.hi8]
        Vector512<float> ab = Avx512F.Shuffle4x128(a, b, 0x44) + Avx512F.Shuffle4x128(a, b, 0xEE);
        Vector512<float> cd = Avx512F.Shuffle4x128(c, d, 0x44) + Avx512F.Shuffle4x128(c, d, 0xEE);
        // [a' q0 + a' q1 | b' … | c' … | d' …]
        return Avx512F.Shuffle4x128(ab, cd, 0x88) + Avx512F.Shuffle4x128(ab, cd, 0xDD);
    }
}

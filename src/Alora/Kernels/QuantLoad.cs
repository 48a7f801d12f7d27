using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Alora.Kernels;

// Legend: e = an element's index inside its block; d, m (dmin) = the block's f16 scale and min; sc = a sub-block's
// scale; q = the stored integer. Block layouts are ggml's (docs/quantization.md; Tensors.DType lists the bytes).
//
// Weight loads for ggml's block-quantized types: each turns stored blocks into the exact f32 values of ggml's
// reference dequantization (dequantize_row_* in ggml-quants.c, which rounds d·sc, then ·q, then ∓ m, with no
// fused multiply-add), so every kernel that runs on IWeightLoad (the GEMV, the batched decode GEMV, the row
// groups, the packed GEMM) computes on the dequantized matrix without ever widening it in memory. A vector load
// at a 16-aligned (Load512) or 8-aligned (Load256) element index lies inside one run of a block that shares
// one scale and one bit layout: that is the fast path. Any other index (the packed GEMM's K blocks) is
// assembled element by element from Scalar, which gives the same values.

/// <summary>
/// A block-quantized type split into its block's scales (decoded once per block) and the integers of each
/// 16-element vector, for the decode GEMV (<see cref="Gemv.RunQuantized{TBlock}"/>). Element values are
/// q·mult (+ offset when <see cref="HasOffset"/>): exactly the values the type's <see cref="IWeightLoad"/> gives
/// (a − m is a + (−m) in IEEE arithmetic, and products commute, so the bits agree).
/// </summary>
internal unsafe interface IQuantBlock
{
    /// <summary>Elements per block (32 or 256).</summary>
    static abstract int BlockLength { get; }
    /// <summary>Bytes per block.</summary>
    static abstract int BlockBytes { get; }
    /// <summary>Whether elements have an additive offset (Q4_1, Q5_1: + m; Q4_K, Q5_K: − dmin·min).</summary>
    static abstract bool HasOffset { get; }
    /// <summary>scales[v] = the multiplier of vector v (16 elements), scales[BlockLength / 16 + v] its offset.</summary>
    static abstract void Scales(byte* block, float* scales);
    /// <summary>The 16 integers of vector v of the block, as f32 (any fixed bias already subtracted).</summary>
    static abstract Vector512<float> Q(byte* block, int v);
}

/// <summary>Shared pieces of the quantized loads.</summary>
internal static unsafe class QuantLoad
{
    /// <summary>IEEE half at <paramref name="p"/> as f32 (exact; integer code, see <see cref="F16Load"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(byte* p) => F16Load.Scalar(p, 0);

    /// <summary>16 unsigned bytes at p widened to 16 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Bytes16(byte* p)
    {
        Vector128<byte> v = Vector128.Load(p);
        if (Avx512F.IsSupported) return Avx512F.ConvertToVector512Int32(v);
        Vector512<ushort> w = Vector512.WidenLower(v.ToVector256Unsafe().ToVector512Unsafe());
        return Vector512.WidenLower(w).AsInt32();
    }

    /// <summary>16 unsigned bytes widened to 16 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> Widen(Vector128<byte> v)
    {
        if (Avx512F.IsSupported) return Avx512F.ConvertToVector512Int32(v);
        Vector512<ushort> w = Vector512.WidenLower(v.ToVector256Unsafe().ToVector512Unsafe());
        return Vector512.WidenLower(w).AsInt32();
    }

    /// <summary>16 signed bytes at p widened to 16 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> SBytes16(byte* p)
    {
        Vector128<sbyte> v = Vector128.Load((sbyte*)p);
        if (Avx512F.IsSupported) return Avx512F.ConvertToVector512Int32(v);
        Vector512<short> w = Vector512.WidenLower(v.ToVector256Unsafe().ToVector512Unsafe());
        return Vector512.WidenLower(w);
    }

    /// <summary>8 unsigned bytes at p widened to 8 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Bytes8(byte* p)
    {
        Vector128<byte> v = Vector128.CreateScalar(*(ulong*)p).AsByte();
        if (Avx2.IsSupported) return Avx2.ConvertToVector256Int32(v);
        Vector256<ushort> w = Vector256.WidenLower(v.ToVector256Unsafe());
        return Vector256.WidenLower(w).AsInt32();
    }

    /// <summary>8 signed bytes at p widened to 8 int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> SBytes8(byte* p)
    {
        Vector128<sbyte> v = Vector128.CreateScalar(*(ulong*)p).AsSByte();
        if (Avx2.IsSupported) return Avx2.ConvertToVector256Int32(v);
        Vector256<short> w = Vector256.WidenLower(v.ToVector256Unsafe());
        return Vector256.WidenLower(w);
    }

    /// <summary>Bit masks 1 &lt;&lt; 0 … 1 &lt;&lt; 15 (for the fifth bits of Q5_0/Q5_1).</summary>
    public static Vector512<int> BitMasks512 => Vector512.Create(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768);
    public static Vector256<int> BitMasks256 => Vector256.Create(1, 2, 4, 8, 16, 32, 64, 128);

    /// <summary>16 × (bit i of <paramref name="bits"/>) · 16 for lanes i = 0..15: the fifth bits of Q5_0/Q5_1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> FifthBits512(uint bits)
    {
        if (Avx512F.IsSupported)
            return (Avx512F.ShiftRightLogicalVariable(Vector512.Create(bits), Vector512<uint>.Indices) & Vector512.Create(1u)).AsInt32() << 4;
        Vector512<int> masks = BitMasks512;
        return Vector512.Equals(Vector512.Create((int)bits) & masks, masks) & Vector512.Create(16);
    }

    /// <summary>
    /// A Q4_K/Q5_K block's 16-element vectors' scales [16] = d·sc and offsets [16] = −dmin·min (vector v lies in
    /// sub-block v / 2: each scale and min duplicated, widened, scaled by d and dmin).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScalesK4(byte* block, float* scales)
    {
        Vector128<byte> packed = ScalesMinsK4(block + 4);
        Vector128<byte> scalePairs = Vector128.Shuffle(packed, Vector128.Create((byte)0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
        Vector128<byte> minPairs = Vector128.Shuffle(packed, Vector128.Create((byte)8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15));
        (Vector512.Create(Half(block)) * Vector512.ConvertToSingle(Widen(scalePairs))).Store(scales);
        (-(Vector512.Create(Half(block + 2)) * Vector512.ConvertToSingle(Widen(minPairs)))).Store(scales + 16);
    }

    /// <summary>The Q4_K/Q5_K block holding element <paramref name="index"/>, its sub-block s (32 elements) and that sub-block's d·sc and dmin·min.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* BlockK4(void* data, long index, int blockBytes, out int s, out float d1, out float m1)
    {
        byte* b = (byte*)data + (index >> 8) * blockBytes;
        s = (int)(index & 255) >> 5;
        Tensors.QuantBlocks.ScaleMinK4(s, b + 4, out int scale, out int min);
        d1 = Half(b) * scale;
        m1 = Half(b + 2) * min;
        return b;
    }

    /// <summary>
    /// All eight 6-bit scales and mins of a Q4_K/Q5_K block's 12 packed bytes (<see cref="Tensors.QuantBlocks.ScaleMinK4"/>),
    /// as bytes 0..7 (scales) and 8..15 (mins) of one vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<byte> ScalesMinsK4(byte* q)
    {
        Vector128<byte> a = Vector128.Create(*(ulong*)q, *(uint*)(q + 8)).AsByte();   // bytes 0..11, then zeros
        // Per output byte o (scales 0..7, mins 8..15): the low source (6 bits for j < 4, a nibble of byte j + 4 else)
        // and the source of the top two bits (none for j < 4; byte j − 4 or j of the first eight).
        Vector128<byte> low = Vector128.Shuffle(a, Vector128.Create((byte)0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
        Vector128<byte> lowShifted = Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF);
        // mins 4..7 take the high nibble of bytes 8..11: shift those bytes right by 4 (a 16-bit shift, then mask).
        Vector128<byte> nibbleHigh = (low.AsUInt16() >>> 4).AsByte() & Vector128.Create((byte)0x0F);
        low = Vector128.ConditionalSelect(lowShifted, nibbleHigh, low);
        Vector128<byte> lowMask = Vector128.Create((byte)63, 63, 63, 63, 0xF, 0xF, 0xF, 0xF, 63, 63, 63, 63, 0xF, 0xF, 0xF, 0xF);
        Vector128<byte> top = Vector128.Shuffle(a, Vector128.Create((byte)0x80, 0x80, 0x80, 0x80, 0, 1, 2, 3, 0x80, 0x80, 0x80, 0x80, 4, 5, 6, 7));
        // top bits: (byte >> 6) << 4 = (byte & 0xC0) >> 2.
        Vector128<byte> topBits = ((top & Vector128.Create((byte)0xC0)).AsUInt16() >>> 2).AsByte() & Vector128.Create((byte)0x30);
        return (low & lowMask) | topBits;
    }

    /// <summary>16 elements from <paramref name="index"/> one by one (an index that is not 16-aligned).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector512<float> Gather512<TLoad>(void* data, long index) where TLoad : struct, IWeightLoad
    {
        float* values = stackalloc float[16];
        for (int i = 0; i < 16; i++) values[i] = TLoad.Scalar(data, index + i);
        return Vector512.Load(values);
    }

    /// <summary>8 elements from <paramref name="index"/> one by one (an index that is not 8-aligned).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static Vector256<float> Gather256<TLoad>(void* data, long index) where TLoad : struct, IWeightLoad
    {
        float* values = stackalloc float[8];
        for (int i = 0; i < 8; i++) values[i] = TLoad.Scalar(data, index + i);
        return Vector256.Load(values);
    }
}

/// <summary>Q8_0: 32 elements in 34 bytes (f16 d, i8 q[32]); value = q·d.</summary>
internal unsafe struct Q8_0Load : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 34;

    static int IQuantBlock.BlockLength => 32;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        float d = QuantLoad.Half(block);
        scales[0] = d; scales[1] = d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle(QuantLoad.SBytes16(block + 2 + 16 * v));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 5) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        return ((sbyte*)b)[2 + (int)(index & 31)] * QuantLoad.Half(b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q8_0Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        Vector512<float> q = Vector512.ConvertToSingle(QuantLoad.SBytes16(b + 2 + (int)(index & 31)));
        return q * Vector512.Create(QuantLoad.Half(b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q8_0Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        Vector256<float> q = Vector256.ConvertToSingle(QuantLoad.SBytes8(b + 2 + (int)(index & 31)));
        return q * Vector256.Create(QuantLoad.Half(b));
    }
}

/// <summary>Q4_0: 32 elements in 18 bytes (f16 d, u8 qs[16]); element e &lt; 16 is the low nibble of qs[e], e ≥ 16 the high nibble of qs[e − 16]; value = (q − 8)·d.</summary>
internal unsafe struct Q4_0Load : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 18;

    static int IQuantBlock.BlockLength => 32;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        float d = QuantLoad.Half(block);
        scales[0] = d; scales[1] = d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle(((QuantLoad.Bytes16(block + 2) >>> (4 * v)) & Vector512.Create(0xF)) - Vector512.Create(8));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 5) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        int q = (b[2 + (e & 15)] >> ((e >> 4) * 4)) & 0xF;
        return (q - 8) * QuantLoad.Half(b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q4_0Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int shift = (int)(index & 16) >> 2;
        Vector512<int> q = (QuantLoad.Bytes16(b + 2) >>> shift) & Vector512.Create(0xF);
        return Vector512.ConvertToSingle(q - Vector512.Create(8)) * Vector512.Create(QuantLoad.Half(b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q4_0Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        Vector256<int> q = (QuantLoad.Bytes8(b + 2 + (e & 15)) >>> ((e >> 4) * 4)) & Vector256.Create(0xF);
        return Vector256.ConvertToSingle(q - Vector256.Create(8)) * Vector256.Create(QuantLoad.Half(b));
    }
}

/// <summary>Q4_1: 32 elements in 20 bytes (f16 d, f16 m, u8 qs[16]); nibbles as Q4_0; value = q·d + m.</summary>
internal unsafe struct Q4_1Load : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 20;

    static int IQuantBlock.BlockLength => 32;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        float d = QuantLoad.Half(block), m = QuantLoad.Half(block + 2);
        scales[0] = d; scales[1] = d; scales[2] = m; scales[3] = m;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle((QuantLoad.Bytes16(block + 4) >>> (4 * v)) & Vector512.Create(0xF));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 5) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        int q = (b[4 + (e & 15)] >> ((e >> 4) * 4)) & 0xF;
        return q * QuantLoad.Half(b) + QuantLoad.Half(b + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q4_1Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int shift = (int)(index & 16) >> 2;
        Vector512<int> q = (QuantLoad.Bytes16(b + 4) >>> shift) & Vector512.Create(0xF);
        return Vector512.ConvertToSingle(q) * Vector512.Create(QuantLoad.Half(b)) + Vector512.Create(QuantLoad.Half(b + 2));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q4_1Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        Vector256<int> q = (QuantLoad.Bytes8(b + 4 + (e & 15)) >>> ((e >> 4) * 4)) & Vector256.Create(0xF);
        return Vector256.ConvertToSingle(q) * Vector256.Create(QuantLoad.Half(b)) + Vector256.Create(QuantLoad.Half(b + 2));
    }
}

/// <summary>
/// Q5_0: 32 elements in 22 bytes (f16 d, u32 qh, u8 qs[16]); the low four bits are Q4_0's nibbles, the fifth bit of
/// element e is bit e of qh; value = (q − 16)·d.
/// </summary>
internal unsafe struct Q5_0Load : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 22;

    static int IQuantBlock.BlockLength => 32;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        float d = QuantLoad.Half(block);
        scales[0] = d; scales[1] = d;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle((((QuantLoad.Bytes16(block + 6) >>> (4 * v)) & Vector512.Create(0xF))
            | QuantLoad.FifthBits512(*(uint*)(block + 2) >> (16 * v)))
            - Vector512.Create(16));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 5) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        uint qh = *(uint*)(b + 2);
        int q = ((b[6 + (e & 15)] >> ((e >> 4) * 4)) & 0xF) | (int)(((qh >> e) & 1) << 4);
        return (q - 16) * QuantLoad.Half(b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q5_0Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        Vector512<int> low = (QuantLoad.Bytes16(b + 6) >>> (e >> 2)) & Vector512.Create(0xF);
        Vector512<int> high = QuantLoad.FifthBits512(*(uint*)(b + 2) >> e);
        return Vector512.ConvertToSingle((low | high) - Vector512.Create(16)) * Vector512.Create(QuantLoad.Half(b));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q5_0Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        Vector256<int> low = (QuantLoad.Bytes8(b + 6 + (e & 15)) >>> ((e >> 4) * 4)) & Vector256.Create(0xF);
        Vector256<int> masks = QuantLoad.BitMasks256;
        Vector256<int> high = Vector256.Equals(Vector256.Create((int)(*(uint*)(b + 2) >> e)) & masks, masks) & Vector256.Create(16);
        return Vector256.ConvertToSingle((low | high) - Vector256.Create(16)) * Vector256.Create(QuantLoad.Half(b));
    }
}

/// <summary>Q5_1: 32 elements in 24 bytes (f16 d, f16 m, u32 qh, u8 qs[16]); bits as Q5_0; value = q·d + m.</summary>
internal unsafe struct Q5_1Load : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 24;

    static int IQuantBlock.BlockLength => 32;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        float d = QuantLoad.Half(block), m = QuantLoad.Half(block + 2);
        scales[0] = d; scales[1] = d; scales[2] = m; scales[3] = m;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle(((QuantLoad.Bytes16(block + 8) >>> (4 * v)) & Vector512.Create(0xF))
            | QuantLoad.FifthBits512(*(uint*)(block + 4) >> (16 * v)));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 5) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        uint qh = *(uint*)(b + 4);
        int q = ((b[8 + (e & 15)] >> ((e >> 4) * 4)) & 0xF) | (int)(((qh >> e) & 1) << 4);
        return q * QuantLoad.Half(b) + QuantLoad.Half(b + 2);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q5_1Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        Vector512<int> low = (QuantLoad.Bytes16(b + 8) >>> (e >> 2)) & Vector512.Create(0xF);
        Vector512<int> high = QuantLoad.FifthBits512(*(uint*)(b + 4) >> e);
        return Vector512.ConvertToSingle(low | high) * Vector512.Create(QuantLoad.Half(b)) + Vector512.Create(QuantLoad.Half(b + 2));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q5_1Load>(data, index);
        byte* b = (byte*)data + (index >> 5) * BlockBytes;
        int e = (int)(index & 31);
        Vector256<int> low = (QuantLoad.Bytes8(b + 8 + (e & 15)) >>> ((e >> 4) * 4)) & Vector256.Create(0xF);
        Vector256<int> masks = QuantLoad.BitMasks256;
        Vector256<int> high = Vector256.Equals(Vector256.Create((int)(*(uint*)(b + 4) >> e)) & masks, masks) & Vector256.Create(16);
        return Vector256.ConvertToSingle(low | high) * Vector256.Create(QuantLoad.Half(b)) + Vector256.Create(QuantLoad.Half(b + 2));
    }
}

/// <summary>
/// Q4_K: 256 elements in 144 bytes (f16 d, f16 dmin, u8 scales[12], u8 qs[128]): eight sub-blocks of 32, sub-block
/// s = e / 32 with a 6-bit scale and min (<see cref="Tensors.QuantBlocks.ScaleMinK4"/>); element e is nibble (s &amp; 1) of
/// qs[32·(s / 2) + e % 32]; value = (d·sc)·q − dmin·min.
/// </summary>
internal unsafe struct Q4_KLoad : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 144;

    static int IQuantBlock.BlockLength => 256;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales) => QuantLoad.ScalesK4(block, scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle((QuantLoad.Bytes16(block + 16 + 32 * (v >> 2) + 16 * (v & 1)) >>> (2 * (v & 2))) & Vector512.Create(0xF));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 8) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Block(void* data, long index, out int s, out float d1, out float m1)
        => QuantLoad.BlockK4(data, index, BlockBytes, out s, out d1, out m1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = Block(data, index, out int s, out float d1, out float m1);
        int q = (b[16 + 32 * (s >> 1) + (int)(index & 31)] >> ((s & 1) * 4)) & 0xF;
        return d1 * q - m1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q4_KLoad>(data, index);
        byte* b = Block(data, index, out int s, out float d1, out float m1);
        Vector512<int> q = (QuantLoad.Bytes16(b + 16 + 32 * (s >> 1) + (int)(index & 31)) >>> ((s & 1) * 4)) & Vector512.Create(0xF);
        return Vector512.Create(d1) * Vector512.ConvertToSingle(q) - Vector512.Create(m1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q4_KLoad>(data, index);
        byte* b = Block(data, index, out int s, out float d1, out float m1);
        Vector256<int> q = (QuantLoad.Bytes8(b + 16 + 32 * (s >> 1) + (int)(index & 31)) >>> ((s & 1) * 4)) & Vector256.Create(0xF);
        return Vector256.Create(d1) * Vector256.ConvertToSingle(q) - Vector256.Create(m1);
    }
}

/// <summary>
/// Q5_K: 256 elements in 176 bytes (f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]): Q4_K's nibbles and
/// scales, plus a fifth bit, bit s of qh[e % 32]; value = (d·sc)·q − dmin·min.
/// </summary>
internal unsafe struct Q5_KLoad : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 176;

    static int IQuantBlock.BlockLength => 256;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales) => QuantLoad.ScalesK4(block, scales);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle(((QuantLoad.Bytes16(block + 48 + 32 * (v >> 2) + 16 * (v & 1)) >>> (2 * (v & 2))) & Vector512.Create(0xF))
            | (((QuantLoad.Bytes16(block + 16 + 16 * (v & 1)) >>> (v >> 1)) & Vector512.Create(1)) << 4));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 8) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Block(void* data, long index, out int s, out float d1, out float m1)
        => QuantLoad.BlockK4(data, index, BlockBytes, out s, out d1, out m1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = Block(data, index, out int s, out float d1, out float m1);
        int l = (int)(index & 31);
        int q = ((b[48 + 32 * (s >> 1) + l] >> ((s & 1) * 4)) & 0xF) | (((b[16 + l] >> s) & 1) << 4);
        return d1 * q - m1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q5_KLoad>(data, index);
        byte* b = Block(data, index, out int s, out float d1, out float m1);
        int l = (int)(index & 31);
        Vector512<int> low = (QuantLoad.Bytes16(b + 48 + 32 * (s >> 1) + l) >>> ((s & 1) * 4)) & Vector512.Create(0xF);
        Vector512<int> high = ((QuantLoad.Bytes16(b + 16 + l) >>> s) & Vector512.Create(1)) << 4;
        return Vector512.Create(d1) * Vector512.ConvertToSingle(low | high) - Vector512.Create(m1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q5_KLoad>(data, index);
        byte* b = Block(data, index, out int s, out float d1, out float m1);
        int l = (int)(index & 31);
        Vector256<int> low = (QuantLoad.Bytes8(b + 48 + 32 * (s >> 1) + l) >>> ((s & 1) * 4)) & Vector256.Create(0xF);
        Vector256<int> high = ((QuantLoad.Bytes8(b + 16 + l) >>> s) & Vector256.Create(1)) << 4;
        return Vector256.Create(d1) * Vector256.ConvertToSingle(low | high) - Vector256.Create(m1);
    }
}

/// <summary>
/// Q6_K: 256 elements in 210 bytes (u8 ql[128], u8 qh[64], i8 scales[16], f16 d): two halves of 128; in half n,
/// quarter t = (e % 128) / 32 and l = e % 32, the low four bits are nibble t / 2 of ql[64n + 32·(t &amp; 1) + l], the top
/// two bits are bits 2t, 2t + 1 of qh[32n + l], the scale is scales[8n + l / 16 + 2t]; value = (d·sc)·(q − 32).
/// </summary>
internal unsafe struct Q6_KLoad : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 210;

    static int IQuantBlock.BlockLength => 256;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        (Vector512.Create(QuantLoad.Half(block + 208)) * Vector512.ConvertToSingle(QuantLoad.SBytes16(block + 192))).Store(scales);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle(((QuantLoad.Bytes16(block + 64 * (v >> 3) + 32 * ((v >> 1) & 1) + 16 * (v & 1)) >>> (4 * ((v >> 2) & 1))) & Vector512.Create(0xF)
            | (((QuantLoad.Bytes16(block + 128 + 32 * (v >> 3) + 16 * (v & 1)) >>> (2 * ((v >> 1) & 3))) & Vector512.Create(3)) << 4)) - Vector512.Create(32));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 8) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Block(void* data, long index, out int n, out int t, out int l, out float d1)
    {
        byte* b = (byte*)data + (index >> 8) * BlockBytes;
        int e = (int)(index & 255);
        n = e >> 7;
        t = (e >> 5) & 3;
        l = e & 31;
        d1 = QuantLoad.Half(b + 208) * ((sbyte*)b)[192 + 8 * n + (l >> 4) + 2 * t];
        return b;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = Block(data, index, out int n, out int t, out int l, out float d1);
        int low = (b[64 * n + 32 * (t & 1) + l] >> (4 * (t >> 1))) & 0xF;
        int high = (b[128 + 32 * n + l] >> (2 * t)) & 3;
        return d1 * ((low | (high << 4)) - 32);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q6_KLoad>(data, index);
        byte* b = Block(data, index, out int n, out int t, out int l, out float d1);
        Vector512<int> low = (QuantLoad.Bytes16(b + 64 * n + 32 * (t & 1) + l) >>> (4 * (t >> 1))) & Vector512.Create(0xF);
        Vector512<int> high = ((QuantLoad.Bytes16(b + 128 + 32 * n + l) >>> (2 * t)) & Vector512.Create(3)) << 4;
        return Vector512.Create(d1) * Vector512.ConvertToSingle((low | high) - Vector512.Create(32));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q6_KLoad>(data, index);
        byte* b = Block(data, index, out int n, out int t, out int l, out float d1);
        Vector256<int> low = (QuantLoad.Bytes8(b + 64 * n + 32 * (t & 1) + l) >>> (4 * (t >> 1))) & Vector256.Create(0xF);
        Vector256<int> high = ((QuantLoad.Bytes8(b + 128 + 32 * n + l) >>> (2 * t)) & Vector256.Create(3)) << 4;
        return Vector256.Create(d1) * Vector256.ConvertToSingle((low | high) - Vector256.Create(32));
    }
}

/// <summary>Q8_K: 256 elements in 292 bytes (f32 d, i8 q[256], i16 bsums[16]); value = d·q.</summary>
internal unsafe struct Q8_KLoad : IWeightLoad, IQuantBlock
{
    private const int BlockBytes = 292;

    static int IQuantBlock.BlockLength => 256;
    static int IQuantBlock.BlockBytes => BlockBytes;
    static bool IQuantBlock.HasOffset => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scales(byte* block, float* scales)
    {
        Vector512.Create(*(float*)block).Store(scales);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Q(byte* block, int v)
        => Vector512.ConvertToSingle(QuantLoad.SBytes16(block + 4 + 16 * v));


    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long ByteOffset(long index) => (index >> 8) * BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Scalar(void* data, long index)
    {
        byte* b = (byte*)data + (index >> 8) * BlockBytes;
        return *(float*)b * ((sbyte*)b)[4 + (int)(index & 255)];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(void* data, long index)
    {
        if ((index & 15) != 0) return QuantLoad.Gather512<Q8_KLoad>(data, index);
        byte* b = (byte*)data + (index >> 8) * BlockBytes;
        return Vector512.Create(*(float*)b) * Vector512.ConvertToSingle(QuantLoad.SBytes16(b + 4 + (int)(index & 255)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(void* data, long index)
    {
        if ((index & 7) != 0) return QuantLoad.Gather256<Q8_KLoad>(data, index);
        byte* b = (byte*)data + (index >> 8) * BlockBytes;
        return Vector256.Create(*(float*)b) * Vector256.ConvertToSingle(QuantLoad.SBytes8(b + 4 + (int)(index & 255)));
    }
}

namespace Alora.Tensors;

// Legend: QK = elements per block (32, or 256 for the k-quants), d / dmin = a block's scale / min scale,
// sc / m = a sub-block's integer scale / min.

/// <summary>
/// The scalar dequantization of ggml's block types, block by block in the order of ggml's dequantize_row_*
/// (ggml-quants.c; layouts in docs/quantization.md): every product rounded separately, no fused multiply-add,
/// as llama.cpp's own (unvectorised, FMA-free) ggml-base computes them. The reference twin of the kernels' loads.
/// </summary>
public static unsafe class QuantBlocks
{
    /// <summary>dst[n] = the f32 values of n elements of <paramref name="dtype"/> at <paramref name="src"/> (n a multiple of the block length).</summary>
    public static void Dequantize(float* dst, void* src, DType dtype, long n)
    {
        if (!dtype.IsQuantized()) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a quantized dtype");
        long blocks = dtype.ByteCount(n) / dtype.BlockBytes();
        byte* b = (byte*)src;
        for (long i = 0; i < blocks; i++, b += dtype.BlockBytes(), dst += dtype.BlockLength())
        {
            switch (dtype)
            {
                case DType.Q8_0: Q8_0(b, dst); break;
                case DType.Q4_0: Q4_0(b, dst); break;
                case DType.Q4_1: Q4_1(b, dst); break;
                case DType.Q5_0: Q5_0(b, dst); break;
                case DType.Q5_1: Q5_1(b, dst); break;
                case DType.Q4_K: Q4_K(b, dst); break;
                case DType.Q5_K: Q5_K(b, dst); break;
                case DType.Q6_K: Q6_K(b, dst); break;
                case DType.Q8_K: Q8_K(b, dst); break;
            }
        }
    }

    /// <summary>
    /// The 6-bit scale and min of sub-block <paramref name="j"/> (0..7) of a Q4_K/Q5_K block's 12 packed bytes:
    /// sub-blocks 0..3 keep theirs in the low 6 bits of bytes j and j + 4; 4..7 take 4 bits from byte j + 4 and the
    /// top 2 bits of bytes j − 4 (scale) and j (min).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static void ScaleMinK4(int j, byte* q, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = q[j] & 63;
            min = q[j + 4] & 63;
        }
        else
        {
            scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }

    private static float Half(byte* p) => Half16.HalfToSingle(*(ushort*)p);

    internal static void Q8_0(byte* b, float* y)
    {
        float d = Half(b);
        sbyte* qs = (sbyte*)(b + 2);
        for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
    }

    internal static void Q4_0(byte* b, float* y)
    {
        float d = Half(b);
        byte* qs = b + 2;
        for (int j = 0; j < 16; j++)
        {
            int x0 = (qs[j] & 0x0F) - 8, x1 = (qs[j] >> 4) - 8;
            y[j] = x0 * d;
            y[j + 16] = x1 * d;
        }
    }

    internal static void Q4_1(byte* b, float* y)
    {
        float d = Half(b), m = Half(b + 2);
        byte* qs = b + 4;
        for (int j = 0; j < 16; j++)
        {
            int x0 = qs[j] & 0x0F, x1 = qs[j] >> 4;
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }

    internal static void Q5_0(byte* b, float* y)
    {
        float d = Half(b);
        uint qh = *(uint*)(b + 2);
        byte* qs = b + 6;
        for (int j = 0; j < 16; j++)
        {
            int h0 = (int)(((qh >> j) << 4) & 0x10), h1 = (int)((qh >> (j + 12)) & 0x10);
            int x0 = ((qs[j] & 0x0F) | h0) - 16, x1 = ((qs[j] >> 4) | h1) - 16;
            y[j] = x0 * d;
            y[j + 16] = x1 * d;
        }
    }

    internal static void Q5_1(byte* b, float* y)
    {
        float d = Half(b), m = Half(b + 2);
        uint qh = *(uint*)(b + 4);
        byte* qs = b + 8;
        for (int j = 0; j < 16; j++)
        {
            int h0 = (int)(((qh >> j) << 4) & 0x10), h1 = (int)((qh >> (j + 12)) & 0x10);
            int x0 = (qs[j] & 0x0F) | h0, x1 = (qs[j] >> 4) | h1;
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }

    internal static void Q4_K(byte* b, float* y)
    {
        float d = Half(b), min = Half(b + 2);
        byte* scales = b + 4, q = b + 16;
        for (int j = 0, s = 0; j < 256; j += 64, s += 2, q += 32)
        {
            ScaleMinK4(s, scales, out int sc, out int m);
            float d1 = d * sc, m1 = min * m;
            ScaleMinK4(s + 1, scales, out sc, out m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }

    internal static void Q5_K(byte* b, float* y)
    {
        float d = Half(b), min = Half(b + 2);
        byte* scales = b + 4, qh = b + 16, ql = b + 48;
        int u1 = 1, u2 = 2;
        for (int j = 0, s = 0; j < 256; j += 64, s += 2, ql += 32, u1 <<= 2, u2 <<= 2)
        {
            ScaleMinK4(s, scales, out int sc, out int m);
            float d1 = d * sc, m1 = min * m;
            ScaleMinK4(s + 1, scales, out sc, out m);
            float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - m2;
        }
    }

    internal static void Q6_K(byte* b, float* y)
    {
        byte* ql = b, qh = b + 128;
        sbyte* sc = (sbyte*)(b + 192);
        float d = Half(b + 208);
        for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        {
            for (int l = 0; l < 32; l++)
            {
                int s = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[s] * q1;
                y[l + 32] = d * sc[s + 2] * q2;
                y[l + 64] = d * sc[s + 4] * q3;
                y[l + 96] = d * sc[s + 6] * q4;
            }
        }
    }

    internal static void Q8_K(byte* b, float* y)
    {
        float d = *(float*)b;
        sbyte* qs = (sbyte*)(b + 4);
        for (int j = 0; j < 256; j++) y[j] = d * qs[j];
    }
}

namespace Alora.Tensors;

// Legend: x = the f32 values of one block (QK = 32 or 256), L = the integer levels chosen, d / dmin = the block's scale /
// min scale (stored as f16), sc / m = a sub-block's 6-bit (Q4_K/Q5_K) or 8-bit (Q6_K) scale / min.
//
// ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c: what llama-quantize runs without an importance
// matrix), re-implemented expression by expression in f32, so a file quantized here holds the bytes llama.cpp's
// quantizer writes for the same values (tested against llama.cpp's ggml-base). C's float expressions are evaluated in
// f32 without contraction there, as C# evaluates them; roundf rounds half away from zero; nearest_int is ggml's
// magic-number rounding (half to even); f32 → f16 rounds to nearest even.

/// <summary>f32 → ggml block quantization (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).</summary>
public static unsafe class Quantizer
{
    private const float GroupMaxEps = 1e-15f;

    /// <summary>Whether <paramref name="dtype"/> can be written (every quantized type but Q8_K, which llama.cpp uses for activations only).</summary>
    public static bool CanQuantize(DType dtype) => dtype.IsQuantized() && dtype != DType.Q8_K;

    /// <summary>dst = <paramref name="n"/> values of <paramref name="src"/> as blocks of <paramref name="dtype"/> (n a multiple of its block length).</summary>
    public static void Quantize(byte* dst, float* src, DType dtype, long n)
    {
        if (!CanQuantize(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Alora writes Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K");
        long blocks = dtype.ByteCount(n) / dtype.BlockBytes();
        // Blocks are independent: large tensors run in parallel chunks (the bytes do not depend on the split).
        const long chunk = 4096;
        if (blocks > chunk)
        {
            Parallel.For(0, (blocks + chunk - 1) / chunk, c => QuantizeBlocks(dst, src, dtype, c * chunk, Math.Min(blocks, (c + 1) * chunk)));
            return;
        }
        QuantizeBlocks(dst, src, dtype, 0, blocks);
    }

    private static void QuantizeBlocks(byte* dst, float* src, DType dtype, long first, long end)
    {
        int qk = dtype.BlockLength(), bytes = dtype.BlockBytes();
        for (long i = first; i < end; i++)
        {
            float* x = src + i * qk;
            byte* y = dst + i * bytes;
            switch (dtype)
            {
                case DType.Q8_0: Q8_0(x, y); break;
                case DType.Q4_0: Q4_0(x, y); break;
                case DType.Q4_1: Q4_1(x, y); break;
                case DType.Q5_0: Q5_0(x, y); break;
                case DType.Q5_1: Q5_1(x, y); break;
                case DType.Q4_K: Q4_K(x, y); break;
                case DType.Q5_K: Q5_K(x, y); break;
                case DType.Q6_K: Q6_K(x, y); break;
            }
        }
    }

    /// <summary>A byte array of the quantized values (tests, writers).</summary>
    public static byte[] Quantize(ReadOnlySpan<float> values, DType dtype)
    {
        var result = new byte[dtype.ByteCount(values.Length)];
        fixed (float* s = values)
        fixed (byte* d = result) Quantize(d, s, dtype, values.Length);
        return result;
    }

    private static void SetHalf(byte* p, float value) => *(ushort*)p = Half16.SingleToHalf(value);
    private static float GetHalf(byte* p) => Half16.HalfToSingle(*(ushort*)p);

    /// <summary>ggml's nearest_int: adds 1.5·2²³ so the float's mantissa holds the rounded integer (ties to even).</summary>
    private static int NearestInt(float value)
    {
        float shifted = value + 12582912f;
        return (BitConverter.SingleToInt32Bits(shifted) & 0x007FFFFF) - 0x00400000;
    }

    private static void Q8_0(float* x, byte* y)
    {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = MathF.Max(amax, MathF.Abs(x[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        SetHalf(y, d);
        for (int j = 0; j < 32; j++) ((sbyte*)(y + 2))[j] = (sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
    }

    /// <summary>The value of largest magnitude (the first, on ties), as Q4_0/Q5_0 pick it.</summary>
    private static float SignedMax(float* x, int n)
    {
        float amax = 0, max = 0;
        for (int j = 0; j < n; j++)
        {
            float v = x[j];
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); max = v; }
        }
        return max;
    }

    private static void MinMax(float* x, int n, out float min, out float max)
    {
        min = float.MaxValue;
        max = -float.MaxValue;
        for (int j = 0; j < n; j++)
        {
            float v = x[j];
            if (v < min) min = v;
            if (v > max) max = v;
        }
    }

    private static void Q4_0(float* x, byte* y)
    {
        float d = SignedMax(x, 32) / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        SetHalf(y, d);
        for (int j = 0; j < 16; j++)
        {
            float x0 = x[j] * id, x1 = x[16 + j] * id;
            int q0 = Math.Min(15, (int)(sbyte)(x0 + 8.5f)), q1 = Math.Min(15, (int)(sbyte)(x1 + 8.5f));
            y[2 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    private static void Q4_1(float* x, byte* y)
    {
        MinMax(x, 32, out float min, out float max);
        float d = (max - min) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        SetHalf(y, d);
        SetHalf(y + 2, min);
        for (int j = 0; j < 16; j++)
        {
            float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            int q0 = Math.Min(15, (int)(sbyte)(x0 + 0.5f)), q1 = Math.Min(15, (int)(sbyte)(x1 + 0.5f));
            y[4 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    private static void Q5_0(float* x, byte* y)
    {
        float d = SignedMax(x, 32) / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        SetHalf(y, d);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            float x0 = x[j] * id, x1 = x[16 + j] * id;
            int q0 = Math.Min(31, (int)(sbyte)(x0 + 16.5f)), q1 = Math.Min(31, (int)(sbyte)(x1 + 16.5f));
            y[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)((q0 & 0x10) >> 4) << j;
            qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
        }
        *(uint*)(y + 2) = qh;
    }

    private static void Q5_1(float* x, byte* y)
    {
        MinMax(x, 32, out float min, out float max);
        float d = (max - min) / 31;
        float id = d != 0 ? 1.0f / d : 0.0f;
        SetHalf(y, d);
        SetHalf(y + 2, min);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            float x0 = (x[j] - min) * id, x1 = (x[16 + j] - min) * id;
            int q0 = (byte)(x0 + 0.5f), q1 = (byte)(x1 + 0.5f);
            y[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)((q0 & 0x10) >> 4) << j;
            qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
        }
        *(uint*)(y + 4) = qh;
    }

    /// <summary>
    /// ggml's make_qkx2_quants: levels L[0..n) in [0, nmax] and a (scale, min) for x ≈ scale·L − min, searching
    /// nstep + 1 candidate scales around nmax / (max − min) for the least weighted squared error.
    /// </summary>
    private static float MakeQkx2(int n, int nmax, float* x, float* weights, byte* l, out float theMin, byte* laux, float rmin, float rdelta, int nstep)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            for (int i = 0; i < n; i++) l[i] = 0;
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int q = NearestInt(iscale * (x[i] - min));
            l[i] = (byte)Math.Max(0, Math.Min(nmax, q));
            float diff = scale * l[i] + min - x[i];
            diff *= diff;
            bestError += weights[i] * diff;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int q = Math.Max(0, Math.Min(nmax, NearestInt(iscale * (x[i] - min))));
                laux[i] = (byte)q;
                float w = weights[i];
                sumL += w * q;
                sumL2 += w * q * q;
                sumXL += w * q * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * laux[i] + thisMin - x[i];
                    diff *= diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    for (int i = 0; i < n; i++) l[i] = laux[i];
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>Q4_K and Q5_K share their scale search: 8 sub-blocks of 32, 6-bit scales and mins packed as ScaleMinK4 reads them.</summary>
    private static void ScalesMinsK(float* x, byte* y, int nmax, float rmin, float rdelta, int nstep, byte* levels)
    {
        float* mins = stackalloc float[8];
        float* scales = stackalloc float[8];
        float* weights = stackalloc float[32];
        byte* laux = stackalloc byte[32];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += x[32 * j + l] * x[32 * j + l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(x[32 * j + l]);
            scales[j] = MakeQkx2(32, nmax, x + 32 * j, weights, levels + 32 * j, out mins[j], laux, rmin, rdelta, nstep);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        byte* packed = y + 4;
        for (int j = 0; j < 12; j++) packed[j] = 0;
        for (int j = 0; j < 8; j++)
        {
            byte ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
            byte lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                packed[j] = ls;
                packed[j + 4] = lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }
        SetHalf(y, maxScale / 63f);
        SetHalf(y + 2, maxMin / 63f);
        for (int j = 0; j < 8; j++)
        {
            QuantBlocks.ScaleMinK4(j, packed, out int sc, out int m);
            float d = GetHalf(y) * sc;
            if (d == 0) continue;
            float dm = GetHalf(y + 2) * m;
            for (int ii = 0; ii < 32; ii++) levels[32 * j + ii] = (byte)Math.Max(0, Math.Min(nmax, NearestInt((x[32 * j + ii] + dm) / d)));
        }
    }

    private static void Q4_K(float* x, byte* y)
    {
        byte* levels = stackalloc byte[256];
        ScalesMinsK(x, y, 15, -1f, 0.1f, 20, levels);
        byte* q = y + 16;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
    }

    private static void Q5_K(float* x, byte* y)
    {
        byte* levels = stackalloc byte[256];
        ScalesMinsK(x, y, 31, -0.5f, 0.1f, 15, levels);
        byte* qh = y + 16, ql = y + 48;
        for (int j = 0; j < 32; j++) qh[j] = 0;
        int m1 = 1, m2 = 2;
        for (int n = 0; n < 256; n += 64, m1 <<= 2, m2 <<= 2, ql += 32)
            for (int j = 0; j < 32; j++)
            {
                int l1 = levels[n + j];
                if (l1 > 15) { l1 -= 16; qh[j] |= (byte)m1; }
                int l2 = levels[n + j + 32];
                if (l2 > 15) { l2 -= 16; qh[j] |= (byte)m2; }
                ql[j] = (byte)(l1 | (l2 << 4));
            }
    }

    /// <summary>ggml's make_qx_quants with rmse_type 1 (weights x²): signed levels in [−nmax, nmax), returned + nmax.</summary>
    private static float MakeQx(int n, int nmax, float* x, sbyte* l)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            for (int i = 0; i < n; i++) l[i] = 0;
            return 0f;
        }
        float iscale = -nmax / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int q = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            l[i] = (sbyte)(q + nmax);
            float w = x[i] * x[i];
            sumlx += w * x[i] * q;
            suml2 += w * q * q;
        }
        float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumlx = suml2 = 0;
            for (int i = 0; i < n; i++)
            {
                int q = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
                float w = x[i] * x[i];
                sumlx += w * x[i] * q;
                suml2 += w * q * q;
            }
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < n; i++) l[i] = (sbyte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i]))));
                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }
        return scale;
    }

    private static void Q6_K(float* x, byte* y)
    {
        sbyte* levels = stackalloc sbyte[256];
        float* scales = stackalloc float[16];
        float maxScale = 0, maxAbsScale = 0;
        for (int ib = 0; ib < 16; ib++)
        {
            float scale = MakeQx(16, 32, x + 16 * ib, levels + 16 * ib);
            scales[ib] = scale;
            float abs = MathF.Abs(scale);
            if (abs > maxAbsScale) { maxAbsScale = abs; maxScale = scale; }
        }
        new Span<byte>(y, 210).Clear();
        if (maxAbsScale < GroupMaxEps)
        {
            SetHalf(y + 208, 0f);
            return;
        }
        float iscale = -128f / maxScale;
        SetHalf(y + 208, 1 / iscale);
        sbyte* sc = (sbyte*)(y + 192);
        for (int ib = 0; ib < 16; ib++) sc[ib] = (sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));
        for (int j = 0; j < 16; j++)
        {
            float d = GetHalf(y + 208) * sc[j];
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ii++)
                levels[16 * j + ii] = (sbyte)(Math.Max(-32, Math.Min(31, NearestInt(x[16 * j + ii] / d))) + 32);
        }
        byte* ql = y, qh = y + 128;
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; l++)
            {
                int q1 = levels[j + l] & 0xF, q2 = levels[j + l + 32] & 0xF, q3 = levels[j + l + 64] & 0xF, q4 = levels[j + l + 96] & 0xF;
                ql[l] = (byte)(q1 | (q3 << 4));
                ql[l + 32] = (byte)(q2 | (q4 << 4));
                qh[l] = (byte)((levels[j + l] >> 4) | ((levels[j + l + 32] >> 4) << 2) | ((levels[j + l + 64] >> 4) << 4) | ((levels[j + l + 96] >> 4) << 6));
            }
    }
}

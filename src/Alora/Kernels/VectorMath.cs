using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Alora.Kernels;

/// <summary>
/// Vector exp for softmax and SiLU, within about 2 ulp of MathF.Exp over the whole float range.
/// </summary>
/// <remarks>
/// exp(x) = 2ⁿ · e^r with n = round(x / ln 2) and r = x − n·ln 2 ∈ [−ln2/2, ln2/2]. ln 2 is split in a
/// high part with few mantissa bits (n·hi is exact) and a low part, so r keeps full precision. e^r is its
/// Taylor series to r⁷ (truncation error below 6e-9 relative on that interval). 2ⁿ is applied as two
/// factors 2^(n/2) so results near the overflow and underflow edges (n up to 128 or down to −150) come out
/// as inf, normal or correctly rounded subnormal values, as MathF.Exp gives.
/// </remarks>
internal static class VectorMath
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2High = 0.693145751953125f;       // low 9 mantissa bits zero: n·Ln2High is exact for |n| ≤ 150
    private const float Ln2Low = 1.42860682030941723212e-6f; // ln 2 − Ln2High
    private const float RoundingMagic = 12582912f;           // 1.5·2²³: adding it rounds to an integer
    private const float MinInput = -104f;                    // exp(−104) < half the smallest subnormal → 0
    private const float MaxInput = 89f;                      // exp(89) > float.MaxValue → inf
    private const float C2 = 1f / 2, C3 = 1f / 6, C4 = 1f / 24, C5 = 1f / 120, C6 = 1f / 720, C7 = 1f / 5040;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        Vector512<float> clamped = Vector512.Min(Vector512.Max(x, Vector512.Create(MinInput)), Vector512.Create(MaxInput));
        Vector512<float> shifted = Vector512.FusedMultiplyAdd(clamped, Vector512.Create(Log2E), Vector512.Create(RoundingMagic));
        Vector512<float> n = shifted - Vector512.Create(RoundingMagic);
        Vector512<float> r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2High), clamped);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Low), r);
        Vector512<float> p = Vector512.FusedMultiplyAdd(Vector512.Create(C7), r, Vector512.Create(C6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C5));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(C2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        Vector512<int> exponent = Vector512.ConvertToInt32(n);
        Vector512<int> half = Vector512.ShiftRightArithmetic(exponent, 1);
        Vector512<float> scale1 = Vector512.ShiftLeft(half + Vector512.Create(127), 23).AsSingle();
        Vector512<float> scale2 = Vector512.ShiftLeft(exponent - half + Vector512.Create(127), 23).AsSingle();
        Vector512<float> result = p * scale1 * scale2;
        // Min/Max above may have replaced a NaN input; give NaN back.
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), result, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        Vector256<float> clamped = Vector256.Min(Vector256.Max(x, Vector256.Create(MinInput)), Vector256.Create(MaxInput));
        Vector256<float> shifted = Vector256.FusedMultiplyAdd(clamped, Vector256.Create(Log2E), Vector256.Create(RoundingMagic));
        Vector256<float> n = shifted - Vector256.Create(RoundingMagic);
        Vector256<float> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2High), clamped);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Low), r);
        Vector256<float> p = Vector256.FusedMultiplyAdd(Vector256.Create(C7), r, Vector256.Create(C6));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C5));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(C2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        Vector256<int> exponent = Vector256.ConvertToInt32(n);
        Vector256<int> half = Vector256.ShiftRightArithmetic(exponent, 1);
        Vector256<float> scale1 = Vector256.ShiftLeft(half + Vector256.Create(127), 23).AsSingle();
        Vector256<float> scale2 = Vector256.ShiftLeft(exponent - half + Vector256.Create(127), 23).AsSingle();
        Vector256<float> result = p * scale1 * scale2;
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), result, x);
    }
}

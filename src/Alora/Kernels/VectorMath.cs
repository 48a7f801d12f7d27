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
    public static Vector512<float> Exp(Vector512<float> x) => Exp<Vector512<float>, Vector512Ops>(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x) => Exp<Vector256<float>, Vector256Ops>(x);

    /// <summary>The one definition, for any vector width.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Exp<TVec, TOps>(TVec x) where TVec : unmanaged where TOps : IFloatVectorOps<TVec>
    {
        // Native min/max: a NaN lane may come out as a bound here; the last line gives NaN back.
        TVec clamped = TOps.MinNative(TOps.MaxNative(x, TOps.Create(MinInput)), TOps.Create(MaxInput));
        TVec shifted = TOps.FusedMultiplyAdd(clamped, TOps.Create(Log2E), TOps.Create(RoundingMagic));
        TVec n = TOps.Subtract(shifted, TOps.Create(RoundingMagic));
        TVec r = TOps.FusedMultiplyAdd(n, TOps.Create(-Ln2High), clamped);
        r = TOps.FusedMultiplyAdd(n, TOps.Create(-Ln2Low), r);
        TVec p = TOps.FusedMultiplyAdd(TOps.Create(C7), r, TOps.Create(C6));
        p = TOps.FusedMultiplyAdd(p, r, TOps.Create(C5));
        p = TOps.FusedMultiplyAdd(p, r, TOps.Create(C4));
        p = TOps.FusedMultiplyAdd(p, r, TOps.Create(C3));
        p = TOps.FusedMultiplyAdd(p, r, TOps.Create(C2));
        p = TOps.FusedMultiplyAdd(p, r, TOps.One);
        p = TOps.FusedMultiplyAdd(p, r, TOps.One);
        TVec result = TOps.ScaleByPowerOfTwo(p, n);
        // Min/Max above may have replaced a NaN input; give NaN back.
        return TOps.ConditionalSelect(TOps.Equals(x, x), result, x);
    }
}

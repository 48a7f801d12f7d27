using System.Globalization;
using System.Numerics;

namespace Alora.Tokenization.Templates;

/// <summary>Python's round(float, ndigits): round-half-even on the exact binary value (so 2.675 → 2.67,
/// because the double is 2.67499999...), not on its shortest decimal form as Math.Round does.</summary>
internal static class PyRound
{
    public static double Round(double value, long digits)
    {
        if (double.IsNaN(value) || double.IsInfinity(value) || value == 0) return value;
        if (digits > 330) return value;
        if (digits < -330) return 0.0 * Math.Sign(value);

        // value = mantissa · 2^exponent exactly.
        long bits = BitConverter.DoubleToInt64Bits(value);
        bool negative = bits < 0;
        int rawExponent = (int)((bits >> 52) & 0x7FF);
        long fraction = bits & 0xFFFFFFFFFFFFFL;
        BigInteger mantissa = rawExponent == 0 ? fraction : fraction | (1L << 52);
        int exponent = (rawExponent == 0 ? 1 : rawExponent) - 1075;

        // scaled = value · 10^digits = numerator / denominator, exactly.
        BigInteger numerator = mantissa, denominator = BigInteger.One;
        if (digits >= 0) numerator *= BigInteger.Pow(10, (int)digits);
        else denominator *= BigInteger.Pow(10, (int)-digits);
        if (exponent >= 0) numerator <<= exponent;
        else denominator <<= -exponent;

        var quotient = BigInteger.DivRem(numerator, denominator, out var remainder);
        int half = (remainder * 2).CompareTo(denominator);
        if (half > 0 || (half == 0 && !quotient.IsEven)) quotient += 1;

        string text = quotient.ToString(CultureInfo.InvariantCulture) + "e" + (-digits).ToString(CultureInfo.InvariantCulture);
        double rounded = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
        return negative ? -rounded : rounded;
    }
}

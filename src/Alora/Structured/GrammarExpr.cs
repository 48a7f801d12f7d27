using System.Text;

namespace Alora.Structured;

/// <summary>A set of byte values (256 bits).</summary>
internal readonly record struct ByteSet(ulong W0, ulong W1, ulong W2, ulong W3)
{
    public static ByteSet Of(byte b) => Range(b, b);

    public static ByteSet Range(int lo, int hi)
    {
        ulong w0 = 0, w1 = 0, w2 = 0, w3 = 0;
        for (int b = lo; b <= hi; b++)
        {
            ulong bit = 1UL << (b & 63);
            switch (b >> 6) { case 0: w0 |= bit; break; case 1: w1 |= bit; break; case 2: w2 |= bit; break; default: w3 |= bit; break; }
        }
        return new(w0, w1, w2, w3);
    }

    public bool Contains(byte b) => ((b >> 6) switch { 0 => W0, 1 => W1, 2 => W2, _ => W3 } >> (b & 63) & 1) != 0;

    public ByteSet Union(ByteSet o) => new(W0 | o.W0, W1 | o.W1, W2 | o.W2, W3 | o.W3);

    public bool IsEmpty => (W0 | W1 | W2 | W3) == 0;
}

/// <summary>
/// A grammar expression over bytes, as the front ends (JSON Schema, regular expressions, GBNF, choices) build
/// it; <see cref="ByteGrammar"/> lowers it to rules of plain sequences.
/// </summary>
internal abstract record GExpr
{
    public static readonly GExpr Empty = new GSeq([]);

    public static GExpr Literal(string text) => Bytes(Encoding.UTF8.GetBytes(text));

    public static GExpr Bytes(byte[] bytes) => bytes.Length == 1 ? new GByte(ByteSet.Of(bytes[0])) : new GSeq([.. bytes.Select(b => (GExpr)new GByte(ByteSet.Of(b)))]);

    public static GExpr Seq(params GExpr[] items) => items.Length == 1 ? items[0] : new GSeq(items);

    public static GExpr Alt(params GExpr[] items) => items.Length == 1 ? items[0] : new GAlt(items);

    public static GExpr Optional(GExpr item) => new GRepeat(item, 0, 1);

    public static GExpr Star(GExpr item) => new GRepeat(item, 0, -1);

    public static GExpr Plus(GExpr item) => new GRepeat(item, 1, -1);

    public static GExpr Repeat(GExpr item, int min, int max) => new GRepeat(item, min, max);

    /// <summary>One character from a set of code points, as its UTF-8 byte sequences.</summary>
    public static GExpr Chars(CodePointSet set)
    {
        var alternatives = new List<GExpr>();
        foreach (var (lo, hi) in set.Ranges)
            foreach (var sequence in Utf8Ranges.Split(lo, hi))
                alternatives.Add(Seq([.. sequence.Select(r => (GExpr)new GByte(ByteSet.Range(r.Lo, r.Hi)))]));
        if (alternatives.Count == 0) throw new StructuredOutputException("an empty character set matches nothing", null);
        return Alt([.. alternatives]);
    }
}

/// <summary>One byte from a set.</summary>
internal sealed record GByte(ByteSet Set) : GExpr;

/// <summary>The items one after the other (none: the empty string).</summary>
internal sealed record GSeq(IReadOnlyList<GExpr> Items) : GExpr;

/// <summary>Any one of the items.</summary>
internal sealed record GAlt(IReadOnlyList<GExpr> Items) : GExpr;

/// <summary>The item <c>Min</c> to <c>Max</c> times (Max −1: no bound).</summary>
internal sealed record GRepeat(GExpr Item, int Min, int Max) : GExpr;

/// <summary>A named rule (it may be recursive).</summary>
internal sealed record GRef(int Rule) : GExpr;

/// <summary>A set of Unicode code points as sorted, disjoint, non-adjacent ranges (surrogates never included).</summary>
internal sealed class CodePointSet
{
    public const int MaxCodePoint = 0x10FFFF;
    private readonly List<(int Lo, int Hi)> _ranges = [];

    public IReadOnlyList<(int Lo, int Hi)> Ranges => _ranges;

    public static CodePointSet Of(params (int Lo, int Hi)[] ranges)
    {
        var set = new CodePointSet();
        foreach (var (lo, hi) in ranges) set.Add(lo, hi);
        return set;
    }

    public static CodePointSet Any() => Of((0, MaxCodePoint));

    public CodePointSet Add(int lo, int hi)
    {
        if (lo > hi) return this;
        // Surrogates are not characters (UTF-8 cannot encode them): cut them out.
        if (lo <= 0xDFFF && hi >= 0xD800)
        {
            Add(lo, 0xD7FF);
            Add(0xE000, hi);
            return this;
        }
        _ranges.Add((lo, hi));
        Normalize();
        return this;
    }

    public CodePointSet Add(CodePointSet other)
    {
        foreach (var (lo, hi) in other._ranges) _ranges.Add((lo, hi));
        Normalize();
        return this;
    }

    public CodePointSet Complement()
    {
        var result = new CodePointSet();
        int next = 0;
        foreach (var (lo, hi) in _ranges)
        {
            if (lo > next) result.Add(next, lo - 1);
            next = hi + 1;
        }
        if (next <= MaxCodePoint) result.Add(next, MaxCodePoint);
        return result;
    }

    public CodePointSet Minus(CodePointSet other)
    {
        var keep = other.Complement();
        var result = new CodePointSet();
        foreach (var (lo, hi) in _ranges)
            foreach (var (klo, khi) in keep._ranges)
                result.Add(Math.Max(lo, klo), Math.Min(hi, khi));
        return result;
    }

    public bool IsEmpty => _ranges.Count == 0;

    private void Normalize()
    {
        _ranges.Sort();
        int w = 0;
        for (int r = 0; r < _ranges.Count; r++)
        {
            if (w > 0 && _ranges[r].Lo <= _ranges[w - 1].Hi + 1)
                _ranges[w - 1] = (_ranges[w - 1].Lo, Math.Max(_ranges[w - 1].Hi, _ranges[r].Hi));
            else _ranges[w++] = _ranges[r];
        }
        _ranges.RemoveRange(w, _ranges.Count - w);
    }
}

/// <summary>
/// Splits a range of code points into sequences of byte ranges whose product is exactly the UTF-8 encodings
/// of the range (the standard construction: cut at encoded-length boundaries, then where continuation bytes
/// would not span their full 0x80–0xBF range).
/// </summary>
internal static class Utf8Ranges
{
    private static readonly int[] LengthEnds = [0x7F, 0x7FF, 0xFFFF, 0x10FFFF];

    public static List<(int Lo, int Hi)[]> Split(int lo, int hi)
    {
        var output = new List<(int, int)[]>();
        int start = lo;
        foreach (int end in LengthEnds)
        {
            if (start > hi) break;
            if (start > end) continue;
            SplitSameLength(start, Math.Min(hi, end), output);
            start = end + 1;
        }
        return output;
    }

    private static void SplitSameLength(int lo, int hi, List<(int, int)[]> output)
    {
        int length = Encode(lo).Length;
        for (int i = 1; i < length; i++)
        {
            int mask = (1 << (6 * i)) - 1;
            if ((lo & ~mask) != (hi & ~mask))
            {
                if ((lo & mask) != 0)
                {
                    SplitSameLength(lo, lo | mask, output);
                    SplitSameLength((lo | mask) + 1, hi, output);
                    return;
                }
                if ((hi & mask) != mask)
                {
                    SplitSameLength(lo, (hi & ~mask) - 1, output);
                    SplitSameLength(hi & ~mask, hi, output);
                    return;
                }
            }
        }
        byte[] a = Encode(lo), b = Encode(hi);
        var sequence = new (int, int)[length];
        for (int i = 0; i < length; i++) sequence[i] = (a[i], b[i]);
        output.Add(sequence);
    }

    private static byte[] Encode(int c) => Encoding.UTF8.GetBytes(char.ConvertFromUtf32(c));
}

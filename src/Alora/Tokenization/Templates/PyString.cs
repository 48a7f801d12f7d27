using System.Globalization;
using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>Python str behaviour over .NET strings. Python indexes by code point; .NET strings are UTF-16,
/// so text with surrogate pairs is indexed through its code points.</summary>
internal static class PyString
{
    private static bool HasSurrogates(string s)
    {
        foreach (char c in s)
            if (char.IsSurrogate(c)) return true;
        return false;
    }

    /// <summary>The code points of s, each as a string (1 or 2 UTF-16 units).</summary>
    public static List<string> CodePoints(string s)
    {
        var result = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                result.Add(s.Substring(i, 2));
                i++;
            }
            else
            {
                result.Add(s[i].ToString());
            }
        }
        return result;
    }

    public static IReadOnlyList<object?> Characters(string s) => CodePoints(s).Cast<object?>().ToList();

    public static long Length(string s) => HasSurrogates(s) ? CodePoints(s).Count : s.Length;

    public static object Index(string s, long index)
    {
        if (!HasSurrogates(s))
        {
            long i = index < 0 ? index + s.Length : index;
            return i >= 0 && i < s.Length ? s[(int)i].ToString() : new Undefined($"str object has no element {index}");
        }
        var points = CodePoints(s);
        long j = index < 0 ? index + points.Count : index;
        return j >= 0 && j < points.Count ? points[(int)j] : new Undefined($"str object has no element {index}");
    }

    public static string Slice(string s, long? start, long? stop, long? step)
    {
        if (!HasSurrogates(s) && (step ?? 1) == 1)
        {
            var (from, to) = Slicing.Bounds(s.Length, start, stop);
            return to > from ? s[from..to] : "";
        }
        var points = CodePoints(s);
        var sb = new StringBuilder();
        foreach (int i in Slicing.Indices(points.Count, start, stop, step)) sb.Append(points[i]);
        return sb.ToString();
    }

    /// <summary>Python's str.isspace characters (Unicode White_Space plus the ASCII separators).</summary>
    public static bool IsPythonWhitespace(char c) => char.IsWhiteSpace(c) || c is '\x1c' or '\x1d' or '\x1e' or '\x1f';

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int start = 0, end = s.Length;
        Func<char, bool> strippable = chars is null ? IsPythonWhitespace : c => chars.Contains(c, StringComparison.Ordinal);
        if (left) while (start < end && strippable(s[start])) start++;
        if (right) while (end > start && strippable(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>str.split(sep=None, maxsplit=-1).</summary>
    public static ValueList Split(string s, string? separator, long maxSplit)
    {
        var parts = new ValueList();
        if (separator is null)
        {
            int i = 0;
            while (true)
            {
                while (i < s.Length && IsPythonWhitespace(s[i])) i++;
                if (i >= s.Length) break;
                if (maxSplit >= 0 && parts.Count == maxSplit)
                {
                    parts.Add(s[i..]);  // Python keeps the remainder as is, trailing whitespace included
                    break;
                }
                int start = i;
                while (i < s.Length && !IsPythonWhitespace(s[i])) i++;
                parts.Add(s[start..i]);
            }
            return parts;
        }
        if (separator.Length == 0) throw new TemplateException("split(): empty separator");
        int position = 0;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            int found = s.IndexOf(separator, position, StringComparison.Ordinal);
            if (found < 0) break;
            parts.Add(s[position..found]);
            position = found + separator.Length;
        }
        parts.Add(s[position..]);
        return parts;
    }

    /// <summary>str.rsplit(sep=None, maxsplit=-1).</summary>
    public static ValueList RightSplit(string s, string? separator, long maxSplit)
    {
        if (maxSplit < 0) return Split(s, separator, maxSplit);
        var parts = new List<object?>();
        if (separator is null)
        {
            int i = s.Length;
            while (true)
            {
                while (i > 0 && IsPythonWhitespace(s[i - 1])) i--;
                if (i <= 0) break;
                if (parts.Count == maxSplit)
                {
                    parts.Add(s[..i]);
                    break;
                }
                int end = i;
                while (i > 0 && !IsPythonWhitespace(s[i - 1])) i--;
                parts.Add(s[i..end]);
            }
        }
        else
        {
            if (separator.Length == 0) throw new TemplateException("rsplit(): empty separator");
            int end = s.Length;
            while (parts.Count < maxSplit)
            {
                int found = end - separator.Length < 0 ? -1 : s.LastIndexOf(separator, end - 1, end, StringComparison.Ordinal);
                if (found < 0 || found + separator.Length > end) break;
                parts.Add(s[(found + separator.Length)..end]);
                end = found;
            }
            parts.Add(s[..end]);
        }
        parts.Reverse();
        return new ValueList(parts);
    }

    public static ValueList SplitLines(string s, bool keepEnds)
    {
        var lines = new ValueList();
        int start = 0, i = 0;
        while (i < s.Length)
        {
            char c = s[i];
            int breakLength = c switch
            {
                '\r' when i + 1 < s.Length && s[i + 1] == '\n' => 2,
                '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029' => 1,
                _ => 0,
            };
            if (breakLength == 0)
            {
                i++;
                continue;
            }
            lines.Add(keepEnds ? s[start..(i + breakLength)] : s[start..i]);
            i += breakLength;
            start = i;
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (replacement.Length > old.Length)
        {
            // The result's length, bounded before it is built.
            long occurrences = 0;
            if (old.Length == 0) occurrences = s.Length + 1;
            else for (int at = s.IndexOf(old, StringComparison.Ordinal); at >= 0; at = s.IndexOf(old, at + old.Length, StringComparison.Ordinal)) occurrences++;
            if (count >= 0) occurrences = Math.Min(occurrences, count);
            TemplateLimits.CheckLength(s.Length + occurrences * (replacement.Length - old.Length), "a replaced string");
        }
        if (count < 0) return old.Length == 0 ? InsertBetween(s, replacement, long.MaxValue) : s.Replace(old, replacement, StringComparison.Ordinal);
        if (old.Length == 0) return InsertBetween(s, replacement, count);
        var sb = new StringBuilder();
        int position = 0;
        for (long done = 0; done < count; done++)
        {
            int found = s.IndexOf(old, position, StringComparison.Ordinal);
            if (found < 0) break;
            sb.Append(s, position, found - position).Append(replacement);
            position = found + old.Length;
        }
        sb.Append(s, position, s.Length - position);
        return sb.ToString();
    }

    private static string InsertBetween(string s, string insert, long count)
    {
        var sb = new StringBuilder();
        long done = 0;
        foreach (string point in CodePoints(s))
        {
            if (done++ < count) sb.Append(insert);
            sb.Append(point);
        }
        if (done < count) sb.Append(insert);
        return sb.ToString();
    }

    /// <summary>str.upper() with Python's full case mapping for the common expanding letter (ß → SS).</summary>
    public static string Upper(string s)
    {
        string upper = s.ToUpperInvariant();
        return upper.Contains('ß', StringComparison.Ordinal) ? upper.Replace("ß", "SS", StringComparison.Ordinal) : upper;
    }

    /// <summary>str.capitalize(): first character upper (title) case, the rest lower case.</summary>
    public static string Capitalize(string s)
        => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>str.title(): a cased character after an uncased one is upper, otherwise lower.</summary>
    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            bool cased = char.IsLetter(c);
            sb.Append(cased ? (previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)) : c);
            previousCased = cased;
        }
        return sb.ToString();
    }

    public static string SwapCase(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s)
            sb.Append(char.IsUpper(c) ? char.ToLowerInvariant(c) : char.IsLower(c) ? char.ToUpperInvariant(c) : c);
        return sb.ToString();
    }

    public static bool AllCharacters(string s, Func<char, bool> predicate)
    {
        if (s.Length == 0) return false;
        foreach (char c in s)
            if (!predicate(c)) return false;
        return true;
    }

    public static bool HasCasedAndAll(string s, Func<char, bool> requiredForCased)
    {
        bool anyCased = false;
        foreach (char c in s)
        {
            if (!char.IsLetter(c) || char.ToUpperInvariant(c) == char.ToLowerInvariant(c)) continue;
            anyCased = true;
            if (!requiredForCased(c)) return false;
        }
        return anyCased;
    }

    public static string Pad(string s, long width, char fill, int alignment)
    {
        long length = Length(s);
        if (width <= length) return s;
        TemplateLimits.CheckLength(width, "a padded string");
        int total = (int)(width - length);
        if (alignment < 0) return s + new string(fill, total);
        if (alignment > 0) return new string(fill, total) + s;
        // Python's center puts the extra character on the left when total and width are both odd.
        int left = total / 2 + (total & (int)width & 1);
        return new string(fill, left) + s + new string(fill, total - left);
    }

    public static string ZeroFill(string s, long width)
    {
        long length = Length(s);
        if (width <= length) return s;
        TemplateLimits.CheckLength(width, "a zero-filled string");
        int padding = (int)(width - length);
        if (s.Length > 0 && s[0] is '+' or '-') return s[0] + new string('0', padding) + s[1..];
        return new string('0', padding) + s;
    }

    /// <summary>Python's str.format with positional/named fields; format specs support fill, align, width,
    /// precision and the d/f/s types.</summary>
    public static string Format(string format, CallArguments arguments)
    {
        var sb = new StringBuilder();
        int autoIndex = 0;
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c == '{')
            {
                if (i + 1 < format.Length && format[i + 1] == '{') { sb.Append('{'); i++; continue; }
                int close = format.IndexOf('}', i);
                if (close < 0) throw new TemplateException("Single '{' encountered in format string");
                string field = format[(i + 1)..close];
                string spec = "";
                int colon = field.IndexOf(':', StringComparison.Ordinal);
                if (colon >= 0) { spec = field[(colon + 1)..]; field = field[..colon]; }
                object? value;
                if (field.Length == 0) value = arguments.Get(autoIndex++, "\0", Undefined.Plain);
                else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out int position)) value = arguments.Get(position, "\0", Undefined.Plain);
                else value = arguments.Get(-1, field, Undefined.Plain);
                if (value is Undefined) throw new TemplateException($"format(): no argument for field '{{{field}}}'");
                sb.Append(FormatSpec.Apply(value, spec));
                i = close;
            }
            else if (c == '}')
            {
                if (i + 1 < format.Length && format[i + 1] == '}') { sb.Append('}'); i++; continue; }
                throw new TemplateException("Single '}' encountered in format string");
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}

/// <summary>Python slice index arithmetic.</summary>
internal static class Slicing
{
    public static (int From, int To) Bounds(int length, long? start, long? stop)
    {
        long from = Clamp(start ?? 0, length), to = Clamp(stop ?? length, length);
        return ((int)from, (int)to);

        static long Clamp(long index, int length)
        {
            if (index < 0) index += length;
            return Math.Clamp(index, 0, length);
        }
    }

    public static IEnumerable<int> Indices(int length, long? start, long? stop, long? step)
    {
        long stride = step ?? 1;
        if (stride == 0) throw new TemplateException("slice step cannot be zero");
        long from, to;
        if (stride > 0)
        {
            from = start is null ? 0 : Adjust(start.Value, length, 0, length);
            to = stop is null ? length : Adjust(stop.Value, length, 0, length);
            for (long i = from; i < to; i += stride) yield return (int)i;
        }
        else
        {
            from = start is null ? length - 1 : Adjust(start.Value, length, -1, length - 1);
            to = stop is null ? -1 : Adjust(stop.Value, length, -1, length - 1);
            for (long i = from; i > to; i += stride) yield return (int)i;
        }

        static long Adjust(long index, int length, long low, long high)
        {
            if (index < 0) index += length;
            return Math.Clamp(index, low, high);
        }
    }
}

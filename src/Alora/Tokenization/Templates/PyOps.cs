using System.Globalization;
using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>Python semantics for template values: truthiness, str()/repr(), equality, ordering,
/// arithmetic and membership.</summary>
internal static class PyOps
{
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        ValueList { IsTuple: true } => "tuple",
        ValueList => "list",
        ValueDict => "dict",
        NamespaceValue => "Namespace",
        LoopContext => "LoopContext",
        ITemplateCallable => "function",
        _ => value.GetType().Name,
    };

    public static bool IsTrue(object? value) => value switch
    {
        null => false,
        Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        ValueList list => list.Count > 0,
        ValueDict dict => dict.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? value) => value is long or double or bool;

    // ---- str() and repr() ------------------------------------------------------------------------

    public static string ToStr(object? value) => value switch
    {
        string s => s,
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FormatFloat(d),
        _ => Repr(value),
    };

    /// <summary>Python's repr(); <paramref name="sortDictKeys"/> orders dict keys as pprint does.</summary>
    public static string Repr(object? value, bool sortDictKeys = false)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, value, sortDictKeys);
        return sb.ToString();
    }

    // Containers whose repr is being written on this thread: a list, dict or namespace that holds itself prints as
    // Python's reprlib does ("[...]", "{...}") instead of recursing until the stack overflows.
    [ThreadStatic] private static HashSet<object>? s_inRepr;

    private static void AppendRepr(StringBuilder sb, object? value, bool sortDictKeys = false)
    {
        if (value is ValueList or ValueDict or NamespaceValue)
        {
            StackGuard.Check();
            s_inRepr ??= new HashSet<object>(ReferenceEqualityComparer.Instance);
            if (!s_inRepr.Add(value!))
            {
                sb.Append(value switch { ValueList { IsTuple: true } => "(...)", ValueList => "[...]", ValueDict => "{...}", _ => "<Namespace {...}>" });
                return;
            }
            try { AppendReprOf(sb, value, sortDictKeys); }
            finally { s_inRepr.Remove(value!); }
            return;
        }
        AppendReprOf(sb, value, sortDictKeys);
    }

    private static void AppendReprOf(StringBuilder sb, object? value, bool sortDictKeys)
    {
        switch (value)
        {
            case string s:
                AppendStringRepr(sb, s);
                break;
            case ValueList list:
                sb.Append(list.IsTuple ? '(' : '[');
                for (int i = 0; i < list.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    AppendRepr(sb, list[i], sortDictKeys);
                }
                if (list.IsTuple && list.Count == 1) sb.Append(',');
                sb.Append(list.IsTuple ? ')' : ']');
                break;
            case ValueDict dict:
                sb.Append('{');
                bool first = true;
                IEnumerable<KeyValuePair<object, object?>> entries = sortDictKeys
                    ? dict.OrderBy(entry => ValueDict.KeyValue(entry.Key), TemplateFilters.PythonOrder)
                    : dict;
                foreach (var (key, item) in entries)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, ValueDict.KeyValue(key), sortDictKeys);
                    sb.Append(": ");
                    AppendRepr(sb, item, sortDictKeys);
                }
                sb.Append('}');
                break;
            case NamespaceValue ns:
                sb.Append("<Namespace {");
                bool firstAttribute = true;
                foreach (var (key, item) in ns.Attributes)
                {
                    if (!firstAttribute) sb.Append(", ");
                    firstAttribute = false;
                    AppendStringRepr(sb, key);
                    sb.Append(": ");
                    AppendRepr(sb, item);
                }
                sb.Append("}>");
                break;
            case Undefined:
                sb.Append("Undefined");
                break;
            case LoopContext loop:
                sb.Append("<LoopContext ").Append(loop.Index).Append('/').Append(loop.Length).Append('>');
                break;
            case ITemplateCallable callable:
                sb.Append("<function ").Append(callable.Name).Append('>');
                break;
            default:
                sb.Append(ToStr(value));
                break;
        }
    }

    /// <summary>Python's repr of a str: single quotes unless the text has ' and no ".</summary>
    public static void AppendStringRepr(StringBuilder sb, string s)
    {
        char quote = s.Contains('\'', StringComparison.Ordinal) && !s.Contains('"', StringComparison.Ordinal) ? '"' : '\'';
        sb.Append(quote);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            switch (c)
            {
                case '\\': sb.Append("\\\\"); continue;
                case '\n': sb.Append("\\n"); continue;
                case '\r': sb.Append("\\r"); continue;
                case '\t': sb.Append("\\t"); continue;
            }
            if (c == quote)
            {
                sb.Append('\\').Append(c);
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                int codePoint = char.ConvertToUtf32(c, s[i + 1]);
                var category = CharUnicodeInfo.GetUnicodeCategory(codePoint);
                if (IsPrintableCategory(category)) sb.Append(c).Append(s[i + 1]);
                else sb.Append("\\U").Append(codePoint.ToString("x8", CultureInfo.InvariantCulture));
                i++;
                continue;
            }
            if (c == ' ' || IsPrintableCategory(CharUnicodeInfo.GetUnicodeCategory(c)))
                sb.Append(c);
            else if (c < 0x100)
                sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else
                sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
        }
        sb.Append(quote);
    }

    private static bool IsPrintableCategory(UnicodeCategory category) => category switch
    {
        UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or
        UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or
        UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator => false,
        _ => true,
    };

    /// <summary>Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16.</summary>
    public static string FormatFloat(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsPositiveInfinity(value)) return "inf";
        if (double.IsNegativeInfinity(value)) return "-inf";
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";

        // Shortest digits that read back as the same double (what Python's repr prints), as d.ddddE±x.
        double magnitude = Math.Abs(value);
        string scientific = "";
        for (int precision = 1; precision <= 17; precision++)
        {
            scientific = magnitude.ToString("E" + (precision - 1).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
            if (double.Parse(scientific, CultureInfo.InvariantCulture) == magnitude) break;
        }
        int ePos = scientific.IndexOf('E', StringComparison.Ordinal);
        string digits = scientific[..ePos].Replace(".", "", StringComparison.Ordinal).TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        int exponent = int.Parse(scientific[(ePos + 1)..], CultureInfo.InvariantCulture);

        var sb = new StringBuilder();
        if (value < 0) sb.Append('-');
        if (exponent < -4 || exponent >= 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(exponent < 0 ? '-' : '+').Append(Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (exponent < 0)
        {
            sb.Append("0.").Append('0', -exponent - 1).Append(digits);
        }
        else if (digits.Length <= exponent + 1)
        {
            sb.Append(digits).Append('0', exponent + 1 - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, exponent + 1).Append('.').Append(digits, exponent + 1, digits.Length - exponent - 1);
        }
        return sb.ToString();
    }

    // ---- equality and ordering -------------------------------------------------------------------

    public static bool AreEqual(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case string sa: return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case Undefined: return b is Undefined;
            case ValueList la:
                if (ReferenceEquals(a, b)) return true;   // as Python's container comparison, so a list holding itself equals itself
                StackGuard.Check();
                if (b is not ValueList lb || la.IsTuple != lb.IsTuple || la.Count != lb.Count) return false;
                for (int i = 0; i < la.Count; i++)
                    if (!AreEqual(la[i], lb[i])) return false;
                return true;
            case ValueDict da:
                if (ReferenceEquals(a, b)) return true;
                StackGuard.Check();
                if (b is not ValueDict db || da.Count != db.Count) return false;
                foreach (var (key, value) in da)
                    if (!db.TryGetValue(key, out var other) || !AreEqual(value, other)) return false;
                return true;
            default:
                return ReferenceEquals(a, b);
        }
    }

    /// <summary>Python ordering (&lt;): numbers, strings by code point, lists/tuples lexicographically.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb) switch { < 0 => -1, > 0 => 1, _ => 0 };
        if (a is ValueList la && b is ValueList lb && la.IsTuple == lb.IsTuple)
        {
            for (int i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (AreEqual(la[i], lb[i])) continue;
                return Compare(la[i], lb[i], op);
            }
            return la.Count.CompareTo(lb.Count);
        }
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        throw new TemplateException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    public static long ToLong(object? value) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw new TemplateException($"expected an integer, found {TypeName(value)}"),
    };

    public static double ToDouble(object? value) => value switch
    {
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new TemplateException($"expected a number, found {TypeName(value)}"),
    };

    // ---- arithmetic -------------------------------------------------------------------------------

    public static object? Add(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (a is string sa && b is string sb) return Concat(sa, sb);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) + ToDouble(b);
            return CheckedOrDouble(ToLong(a), ToLong(b), static (x, y) => checked(x + y), static (x, y) => (double)x + y);
        }
        if (a is ValueList la && b is ValueList lb && la.IsTuple == lb.IsTuple)
        {
            TemplateLimits.CheckLength((long)la.Count + lb.Count, "a concatenated list");
            var result = new ValueList(la.Count + lb.Count) { IsTuple = la.IsTuple };
            result.AddRange(la);
            result.AddRange(lb);
            return result;
        }
        if (a is string) throw new TemplateException($"can only concatenate str (not \"{TypeName(b)}\") to str");
        throw Unsupported("+", a, b);
    }

    public static object? Subtract(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) - ToDouble(b);
            return CheckedOrDouble(ToLong(a), ToLong(b), static (x, y) => checked(x - y), static (x, y) => (double)x - y);
        }
        throw Unsupported("-", a, b);
    }

    public static object? Multiply(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) * ToDouble(b);
            return CheckedOrDouble(ToLong(a), ToLong(b), static (x, y) => checked(x * y), static (x, y) => (double)x * y);
        }
        if (a is string s && b is long or bool) return Repeat(s, ToLong(b));
        if (b is string s2 && a is long or bool) return Repeat(s2, ToLong(a));
        if (a is ValueList list && b is long or bool) return RepeatList(list, ToLong(b));
        if (b is ValueList list2 && a is long or bool) return RepeatList(list2, ToLong(a));
        throw Unsupported("*", a, b);
    }

    public static object? Divide(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported("/", a, b);
        double divisor = ToDouble(b);
        if (divisor == 0) throw new TemplateException("division by zero");
        return ToDouble(a) / divisor;
    }

    public static object? FloorDivide(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported("//", a, b);
        if (a is double || b is double)
        {
            double divisor = ToDouble(b);
            if (divisor == 0) throw new TemplateException("float floor division by zero");
            return Math.Floor(ToDouble(a) / divisor);
        }
        long x = ToLong(a), y = ToLong(b);
        if (y == 0) throw new TemplateException("integer division or modulo by zero");
        long quotient = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) quotient--;
        return quotient;
    }

    public static object? Modulo(object? a, object? b)
    {
        if (a is string format) return PercentFormat.Format(format, b);
        FailIfUndefined(a, b);
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported("%", a, b);
        if (a is double || b is double)
        {
            double x = ToDouble(a), y = ToDouble(b);
            if (y == 0) throw new TemplateException("float modulo");
            double r = x % y;
            if (r != 0 && (r < 0) != (y < 0)) r += y;
            return r;
        }
        long lx = ToLong(a), ly = ToLong(b);
        if (ly == 0) throw new TemplateException("integer division or modulo by zero");
        long remainder = lx % ly;
        if (remainder != 0 && (remainder < 0) != (ly < 0)) remainder += ly;
        return remainder;
    }

    public static object? Power(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported("**", a, b);
        if (a is double || b is double || ToLong(b) < 0) return Math.Pow(ToDouble(a), ToDouble(b));
        long result = 1, baseValue = ToLong(a), exponent = ToLong(b);
        try
        {
            for (long i = 0; i < exponent; i++) result = checked(result * baseValue);
            return result;
        }
        catch (OverflowException)
        {
            return Math.Pow(baseValue, exponent);
        }
    }

    public static object? Negate(object? a)
    {
        if (a is Undefined u) throw u.Fail();
        return a switch
        {
            double d => -d,
            long l => l == long.MinValue ? (object)(-(double)l) : -l,
            bool b => b ? -1L : 0L,
            _ => throw new TemplateException($"bad operand type for unary -: '{TypeName(a)}'"),
        };
    }

    private static object CheckedOrDouble(long x, long y, Func<long, long, long> exact, Func<long, long, double> fallback)
    {
        try { return exact(x, y); }
        catch (OverflowException) { return fallback(x, y); }
    }

    /// <summary>String concatenation (+ and ~), bounded by <see cref="TemplateLimits.MaxLength"/>.</summary>
    public static string Concat(string a, string b)
    {
        TemplateLimits.CheckLength((long)a.Length + b.Length, "a concatenated string");
        return string.Concat(a, b);
    }

    private static string Repeat(string s, long count)
    {
        if (count <= 0) return "";
        TemplateLimits.CheckLength(count > TemplateLimits.MaxLength ? -1 : s.Length * count, "a repeated string");
        var sb = new StringBuilder(s.Length * (int)count);
        for (long i = 0; i < count; i++) sb.Append(s);
        return sb.ToString();
    }

    private static ValueList RepeatList(ValueList list, long count)
    {
        var result = new ValueList { IsTuple = list.IsTuple };
        if (count > 0) TemplateLimits.CheckLength(count > TemplateLimits.MaxLength ? -1 : list.Count * count, "a repeated list");
        for (long i = 0; i < count; i++) result.AddRange(list);
        return result;
    }

    private static void FailIfUndefined(object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
    }

    private static TemplateException Unsupported(string op, object? a, object? b)
        => new($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");

    // ---- containers -----------------------------------------------------------------------------

    /// <summary>Python's <c>item in container</c>.</summary>
    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is not string needle)
                    throw new TemplateException($"'in <string>' requires string as left operand, not {TypeName(item)}");
                return s.Contains(needle, StringComparison.Ordinal);
            case ValueList list:
                foreach (var element in list)
                    if (AreEqual(element, item)) return true;
                return false;
            case ValueDict dict:
                if (item is ValueList { IsTuple: false } or ValueDict)
                    throw new TemplateException($"unhashable type: '{TypeName(item)}'");
                return dict.ContainsKey(ValueDict.KeyOf(item));
            case NamespaceValue ns:
                return item is string name && ns.Attributes.ContainsKey(name);
            case Undefined:
                return false;
            default:
                throw new TemplateException($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    /// <summary>Python's iter(): lists and tuples by item, dicts by key, strings by character.</summary>
    public static IReadOnlyList<object?> Iterate(object? value) => value switch
    {
        ValueList list => list,
        ValueDict dict => dict.Keys.Select(ValueDict.KeyValue).ToList(),
        string s => PyString.Characters(s),
        Undefined => Array.Empty<object?>(),
        NamespaceValue => throw new TemplateException("'Namespace' object is not iterable"),
        _ => throw new TemplateException($"'{TypeName(value)}' object is not iterable"),
    };

    public static long Length(object? value) => value switch
    {
        string s => PyString.Length(s),
        ValueList list => list.Count,
        ValueDict dict => dict.Count,
        Undefined => 0,
        _ => throw new TemplateException($"object of type '{TypeName(value)}' has no len()"),
    };
}

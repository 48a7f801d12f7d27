using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace Alora.Tokenization.Templates;

/// <summary>A filter: <c>value | name(arguments)</c>.</summary>
internal delegate object? TemplateFilter(object? value, CallArguments arguments, RenderState state);

/// <summary>Jinja2's built-in filters, with <c>tojson</c> as transformers overrides it
/// (json.dumps with ensure_ascii=False, indent, separators, sort_keys).</summary>
internal static partial class TemplateFilters
{
    private static readonly Dictionary<string, TemplateFilter> Filters = new(StringComparer.Ordinal)
    {
        ["abs"] = (v, a, _) => v switch
        {
            double d => Math.Abs(d),
            long l => l == long.MinValue ? (object)(-(double)l) : Math.Abs(l),
            bool b => b ? 1L : 0L,
            Undefined u => throw u.Fail(),
            _ => throw new TemplateException($"bad operand type for abs(): '{PyOps.TypeName(v)}'"),
        },
        ["attr"] = (v, a, _) => Access.GetAttribute(v, RequireString(a.Get(0, "name", null), "attr")),
        ["batch"] = Batch,
        ["capitalize"] = (v, a, _) => PyString.Capitalize(PyOps.ToStr(v)),
        ["center"] = (v, a, _) => PyString.Pad(PyOps.ToStr(v), PyOps.ToLong(a.Get(0, "width", 80L)), ' ', 0),
        ["count"] = (v, a, _) => PyOps.Length(v),
        ["d"] = Default,
        ["default"] = Default,
        ["dictsort"] = DictSort,
        ["e"] = (v, a, _) => Escape(v),
        ["escape"] = (v, a, _) => Escape(v),
        ["first"] = (v, a, _) => PyOps.Iterate(v) is { Count: > 0 } items ? items[0] : new Undefined("No first item, sequence was empty."),
        ["float"] = (v, a, _) => v is Undefined u ? throw u.Fail() : ToFloat(v, a.Get(0, "default", 0.0)),
        ["forceescape"] = (v, a, _) => Escape(v),
        ["format"] = (v, a, _) => PercentFormat.Format(PyOps.ToStr(v), a.Keywords.Count > 0 ? KeywordDict(a) : new ValueList(a.Positional, isTuple: true)),
        ["groupby"] = GroupBy,
        ["indent"] = Indent,
        ["int"] = (v, a, _) => v is Undefined u ? throw u.Fail() : ToInt(v, a.Get(0, "default", 0L), PyOps.ToLong(a.Get(1, "base", 10L))),
        ["items"] = (v, a, _) => v switch
        {
            Undefined => new ValueList(),
            ValueDict dict => Methods.Items(dict),
            _ => throw new TemplateException($"Can only get item pairs from a mapping, not {PyOps.TypeName(v)}."),
        },
        ["join"] = Join,
        ["last"] = (v, a, _) => PyOps.Iterate(v) is { Count: > 0 } items ? items[^1] : new Undefined("No last item, sequence was empty."),
        ["length"] = (v, a, _) => PyOps.Length(v),
        ["list"] = (v, a, _) => new ValueList(PyOps.Iterate(v)),
        ["lower"] = (v, a, _) => PyOps.ToStr(v).ToLowerInvariant(),
        ["map"] = Map,
        ["max"] = (v, a, s) => MinMax(v, a, pickMax: true),
        ["min"] = (v, a, s) => MinMax(v, a, pickMax: false),
        ["pprint"] = (v, a, _) => PyOps.Repr(v, sortDictKeys: true),
        ["reject"] = (v, a, s) => Select(v, a, s, byAttribute: false, keep: false),
        ["rejectattr"] = (v, a, s) => Select(v, a, s, byAttribute: true, keep: false),
        ["replace"] = (v, a, _) => PyString.Replace(PyOps.ToStr(v), PyOps.ToStr(a.Get(0, "old", "")), PyOps.ToStr(a.Get(1, "new", "")),
            a.Get(2, "count", null) is { } count ? PyOps.ToLong(count) : -1),
        ["reverse"] = (v, a, _) => v is string s ? PyString.Slice(s, null, null, -1) : new ValueList(PyOps.Iterate(v).Reverse()),
        ["round"] = Round,
        ["safe"] = (v, a, _) => v,
        ["select"] = (v, a, s) => Select(v, a, s, byAttribute: false, keep: true),
        ["selectattr"] = (v, a, s) => Select(v, a, s, byAttribute: true, keep: true),
        ["slice"] = SliceColumns,
        ["sort"] = Sort,
        ["string"] = (v, a, _) => PyOps.ToStr(v),
        ["striptags"] = (v, a, _) => StripTags(PyOps.ToStr(v)),
        ["sum"] = Sum,
        ["title"] = (v, a, _) => Title(PyOps.ToStr(v)),
        ["tojson"] = ToJson,
        ["trim"] = (v, a, _) => PyString.Strip(PyOps.ToStr(v), a.Get(0, "chars", null) is string chars ? chars : null, true, true),
        ["truncate"] = Truncate,
        ["unique"] = Unique,
        ["upper"] = (v, a, _) => PyString.Upper(PyOps.ToStr(v)),
        ["urlencode"] = (v, a, _) => WebUtility.UrlEncode(PyOps.ToStr(v)).Replace("+", "%20", StringComparison.Ordinal),
        ["wordcount"] = (v, a, _) => (long)WordPattern().Count(PyOps.ToStr(v)),
    };

    public static bool TryGet(string name, out TemplateFilter filter) => Filters.TryGetValue(name, out filter!);

    /// <summary>Python's ordering for sort/min/max/dictsort, as a comparer.</summary>
    public static readonly IComparer<object?> PythonOrder = Comparer<object?>.Create((x, y) => PyOps.Compare(x, y, "<"));

    private static string RequireString(object? value, string filter)
        => value as string ?? throw new TemplateException($"{filter}: expected a string argument, found {PyOps.TypeName(value)}");

    private static ValueDict KeywordDict(CallArguments arguments)
    {
        var dict = new ValueDict();
        foreach (var (key, value) in arguments.Keywords) dict.Put(key, value);
        return dict;
    }

    private static object? Default(object? value, CallArguments arguments, RenderState state)
    {
        object? fallback = arguments.Get(0, "default_value", "");
        bool boolean = PyOps.IsTrue(arguments.Get(1, "boolean", false));
        return value is Undefined || (boolean && !PyOps.IsTrue(value)) ? fallback : value;
    }

    private static string Escape(object? value)
    {
        string text = PyOps.ToStr(value);
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            sb.Append(c switch
            {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&#34;",
                '\'' => "&#39;",
                _ => c.ToString(),
            });
        }
        return sb.ToString();
    }

    private static string StripTags(string text)
    {
        string withoutTags = TagPattern().Replace(text, "");
        string decoded = WebUtility.HtmlDecode(withoutTags);
        return string.Join(' ', decoded.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    /// <summary>Jinja's title: capitalize each piece after a run of whitespace, '-', or an opening bracket.</summary>
    private static string Title(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (string piece in WordBeginningPattern().Split(text))
        {
            if (piece.Length == 0) continue;
            sb.Append(char.ToUpperInvariant(piece[0])).Append(piece[1..].ToLowerInvariant());
        }
        return sb.ToString();
    }

    private static object ToInt(object? value, object? fallback, long numberBase)
    {
        switch (value)
        {
            case long l: return l;
            case bool b: return b ? 1L : 0L;
            case double d when !double.IsNaN(d) && !double.IsInfinity(d): return (long)Math.Truncate(d);
            case string s:
                string text = s.Trim().Replace("_", "", StringComparison.Ordinal);
                try
                {
                    if (numberBase == 10 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long parsed)) return parsed;
                    if (numberBase != 10)
                    {
                        string digits = text.ToLowerInvariant();
                        bool negative = digits.StartsWith('-');
                        digits = digits.TrimStart('+', '-');
                        if (digits.Length > 2 && digits[0] == '0' && "xob".Contains(digits[1], StringComparison.Ordinal)) digits = digits[2..];
                        long result = Convert.ToInt64(digits, (int)numberBase);
                        return negative ? -result : result;
                    }
                }
                catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                {
                    // fall through to the float quirk below
                }
                if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double real) && !double.IsInfinity(real) && !double.IsNaN(real))
                    return (long)Math.Truncate(real);
                return fallback!;
            default:
                return fallback!;
        }
    }

    private static object ToFloat(object? value, object? fallback) => value switch
    {
        double d => d,
        long l => (double)l,
        bool b => b ? 1.0 : 0.0,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => parsed,
        string s when s.Trim().ToLowerInvariant() is "inf" or "+inf" or "infinity" => double.PositiveInfinity,
        string s when s.Trim().ToLowerInvariant() is "-inf" or "-infinity" => double.NegativeInfinity,
        string s when s.Trim().ToLowerInvariant() is "nan" => double.NaN,
        _ => fallback!,
    };

    private static object? Round(object? value, CallArguments arguments, RenderState state)
    {
        long precision = PyOps.ToLong(arguments.Get(0, "precision", 0L));
        string method = PyOps.ToStr(arguments.Get(1, "method", "common"));
        double number = PyOps.ToDouble(value);
        double scale = Math.Pow(10, precision);
        return method switch
        {
            // Python's round(int, n) keeps an int; round(float, n) gives a float.
            "common" => value is long or bool ? (object)PyOps.ToLong(value) : PyRound.Round(number, precision),
            "ceil" => Math.Ceiling(number * scale) / scale,
            "floor" => Math.Floor(number * scale) / scale,
            _ => throw new TemplateException("method must be common, ceil or floor"),
        };
    }

    private static object? Indent(object? value, CallArguments arguments, RenderState state)
    {
        object? width = arguments.Get(0, "width", 4L);
        long spaces = width is string ? 0 : Math.Max(0, PyOps.ToLong(width));
        TemplateLimits.CheckLength(spaces, "an indent");
        string indention = width is string w ? w : new string(' ', (int)spaces);
        bool first = PyOps.IsTrue(arguments.Get(1, "first", false));
        bool blank = PyOps.IsTrue(arguments.Get(2, "blank", false));
        string text = value switch
        {
            string s => s,
            Undefined u => throw u.Fail(),
            _ => throw new TemplateException($"unsupported operand type(s) for +=: '{PyOps.TypeName(value)}' and 'str'"),
        } + "\n";
        var lines = PyString.SplitLines(text, keepEnds: false).Select(line => (string)line!).ToList();
        TemplateLimits.CheckLength(text.Length + (long)lines.Count * indention.Length, "an indented string");
        string result;
        if (blank)
        {
            result = string.Join("\n" + indention, lines);
        }
        else
        {
            var sb = new StringBuilder(lines[0]);
            for (int i = 1; i < lines.Count; i++)
            {
                sb.Append('\n');
                if (lines[i].Length > 0) sb.Append(indention);
                sb.Append(lines[i]);
            }
            result = sb.ToString();
        }
        return first ? indention + result : result;
    }

    private static object? Join(object? value, CallArguments arguments, RenderState state)
    {
        string separator = PyOps.ToStr(arguments.Get(0, "d", ""));
        object? attribute = arguments.Get(1, "attribute", null);
        var items = PyOps.Iterate(value);
        var sb = new StringBuilder();
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(separator);
            sb.Append(PyOps.ToStr(attribute is null ? items[i] : AttributePath.Get(items[i], attribute, null)));
            TemplateLimits.CheckLength(sb.Length, "a joined string");
        }
        return sb.ToString();
    }

    private static object? Map(object? value, CallArguments arguments, RenderState state)
    {
        // Jinja2 maps nothing (and checks nothing) when the input is falsy.
        if (!PyOps.IsTrue(value)) return new ValueList();
        var items = PyOps.Iterate(value);
        var result = new ValueList(items.Count);
        if (arguments.Positional.Count == 0 && arguments.Has(-1, "attribute"))
        {
            object? attribute = arguments.Get(-1, "attribute", null);
            object? fallback = arguments.Get(-1, "default", null);
            foreach (var item in items) result.Add(AttributePath.Get(item, attribute, fallback));
            return result;
        }
        if (arguments.Positional.Count == 0) throw new TemplateException("map: give a filter name or attribute=...");
        string filterName = RequireString(arguments.Positional[0], "map");
        if (!TryGet(filterName, out var filter)) throw new TemplateException($"map: no filter named '{filterName}'");
        var rest = new CallArguments(arguments.Positional.Skip(1).ToList(), arguments.Keywords);
        foreach (var item in items) result.Add(filter(item, rest, state));
        return result;
    }

    /// <summary>select/reject (test on the item) and selectattr/rejectattr (test on an attribute); with no
    /// test name the item's truthiness decides.</summary>
    private static ValueList Select(object? value, CallArguments arguments, RenderState state, bool byAttribute, bool keep)
    {
        // Jinja2 selects nothing (and checks nothing) when the input is falsy.
        if (!PyOps.IsTrue(value)) return new ValueList();
        int next = 0;
        object? attribute = null;
        if (byAttribute)
        {
            if (arguments.Positional.Count == 0) throw new TemplateException("selectattr/rejectattr need an attribute name");
            attribute = arguments.Positional[next++];
        }
        TemplateTest? test = null;
        CallArguments testArguments = CallArguments.Empty;
        if (arguments.Positional.Count > next)
        {
            string testName = RequireString(arguments.Positional[next], "select");
            if (!TemplateTests.TryGet(testName, out var found)) throw new TemplateException($"no test named '{testName}'");
            test = found;
            testArguments = new CallArguments(arguments.Positional.Skip(next + 1).ToList(), arguments.Keywords);
        }
        var result = new ValueList();
        foreach (var item in PyOps.Iterate(value))
        {
            var subject = byAttribute ? AttributePath.Get(item, attribute, null) : item;
            bool passed = test is null ? PyOps.IsTrue(subject) : test(subject, testArguments, state);
            if (passed == keep) result.Add(item);
        }
        return result;
    }

    private static object? ToJson(object? value, CallArguments arguments, RenderState state)
    {
        arguments.Check("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
        object? indentArgument = arguments.Get(1, "indent", null);
        string? indent = indentArgument switch
        {
            null => null,
            string s => s,
            _ => new string(' ', (int)Math.Max(0, PyOps.ToLong(indentArgument))),
        };
        string? itemSeparator = null, keySeparator = null;
        if (arguments.Get(2, "separators", null) is ValueList { Count: 2 } separators)
        {
            itemSeparator = PyOps.ToStr(separators[0]);
            keySeparator = PyOps.ToStr(separators[1]);
        }
        string json = TemplateJson.Dumps(value, indent, itemSeparator, keySeparator, PyOps.IsTrue(arguments.Get(3, "sort_keys", false)));
        if (PyOps.IsTrue(arguments.Get(0, "ensure_ascii", false))) json = EscapeNonAscii(json);
        return json;
    }

    private static string EscapeNonAscii(string json)
    {
        var sb = new StringBuilder(json.Length);
        foreach (char c in json)
        {
            if (c < 0x80) sb.Append(c);
            else sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    private static object? Truncate(object? value, CallArguments arguments, RenderState state)
    {
        long length = PyOps.ToLong(arguments.Get(0, "length", 255L));
        if (value is not string text)
        {
            // Jinja returns anything no longer than length + leeway unchanged (len() of a list or dict works).
            long leewayOf = arguments.Get(3, "leeway", null) is { } lw ? PyOps.ToLong(lw) : 5;
            if (value is Undefined || PyOps.Length(value) <= length + leewayOf) return value;
            throw new TemplateException($"truncate expects a string, found {PyOps.TypeName(value)}");
        }
        bool killWords = PyOps.IsTrue(arguments.Get(1, "killwords", false));
        string end = PyOps.ToStr(arguments.Get(2, "end", "..."));
        long leeway = arguments.Get(3, "leeway", null) is { } l ? PyOps.ToLong(l) : 5;
        if (length < end.Length) throw new TemplateException($"expected length >= {end.Length}, got {length}");
        if (PyString.Length(text) <= length + leeway) return text;
        string head = PyString.Slice(text, 0, length - end.Length, null);
        if (killWords) return head + end;
        int space = head.LastIndexOf(' ');
        return (space >= 0 ? head[..space] : head) + end;
    }

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordPattern();

    [GeneratedRegex(@"(<!--.*?-->|<[^>]*>)", RegexOptions.Singleline)]
    private static partial Regex TagPattern();

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginningPattern();
}

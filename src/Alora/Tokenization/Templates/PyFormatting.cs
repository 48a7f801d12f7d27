using System.Globalization;
using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>The subset of Python's format-spec mini-language that templates use:
/// [[fill]align][sign][0][width][,][.precision][type] with types s, d, f, e, g, %.</summary>
internal static class FormatSpec
{
    public static string Apply(object? value, string spec)
    {
        if (spec.Length == 0) return PyOps.ToStr(value);
        int i = 0;
        char fill = ' ', align = '\0', sign = '-';
        if (spec.Length >= 2 && spec[1] is '<' or '>' or '^' or '=') { fill = spec[0]; align = spec[1]; i = 2; }
        else if (spec[0] is '<' or '>' or '^' or '=') { align = spec[0]; i = 1; }
        if (i < spec.Length && spec[i] is '+' or '-' or ' ') sign = spec[i++];
        if (i < spec.Length && spec[i] == '0') { if (align == '\0') { fill = '0'; align = '='; } i++; }
        int width = 0;
        while (i < spec.Length && char.IsAsciiDigit(spec[i]))
        {
            width = width * 10 + (spec[i++] - '0');
            TemplateLimits.CheckLength(width, "a formatted field");
        }
        bool grouping = i < spec.Length && spec[i] == ',';
        if (grouping) i++;
        int precision = -1;
        if (i < spec.Length && spec[i] == '.')
        {
            i++;
            precision = 0;
            while (i < spec.Length && char.IsAsciiDigit(spec[i]))
            {
                precision = precision * 10 + (spec[i++] - '0');
                TemplateLimits.CheckLength(precision, "a format precision");
            }
        }
        char type = i < spec.Length ? spec[i] : '\0';

        string body;
        bool numeric = PyOps.IsNumber(value) && type != 's';
        switch (type)
        {
            case 'd':
                body = Math.Abs(PyOps.ToLong(value)).ToString(grouping ? "#,0" : "0", CultureInfo.InvariantCulture);
                break;
            case 'f' or 'F':
                body = Math.Abs(PyOps.ToDouble(value)).ToString((grouping ? "#,0." : "0.") + new string('0', precision < 0 ? 6 : precision), CultureInfo.InvariantCulture);
                if (precision == 0) body = body.TrimEnd('.');
                break;
            case 'e' or 'E':
                body = Math.Abs(PyOps.ToDouble(value)).ToString((type == 'e' ? "0." : "0.") + new string('0', precision < 0 ? 6 : precision) + "e+00", CultureInfo.InvariantCulture);
                break;
            case '%':
                body = (Math.Abs(PyOps.ToDouble(value)) * 100).ToString("0." + new string('0', precision < 0 ? 6 : precision), CultureInfo.InvariantCulture) + "%";
                break;
            case 'g' or 'G':
                body = Math.Abs(PyOps.ToDouble(value)).ToString("G" + (precision < 0 ? 6 : Math.Max(precision, 1)).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
                break;
            default:
                if (numeric && precision >= 0 && value is double d)
                    body = Math.Abs(d).ToString("G" + precision.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
                else if (numeric)
                    body = PyOps.ToStr(value is bool ? PyOps.ToLong(value) : value).TrimStart('-');
                else
                    body = precision >= 0 ? PyString.Slice(PyOps.ToStr(value), 0, precision, null) : PyOps.ToStr(value);
                break;
        }
        string signText = "";
        if (numeric)
        {
            bool negative = PyOps.ToDouble(value) < 0;
            signText = negative ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
        }
        if (align == '\0') align = numeric ? '>' : '<';
        int padding = width - (int)PyString.Length(body) - signText.Length;
        if (padding <= 0) return signText + body;
        return align switch
        {
            '<' => signText + body + new string(fill, padding),
            '^' => new string(fill, padding / 2) + signText + body + new string(fill, padding - padding / 2),
            '=' => signText + new string(fill, padding) + body,
            _ => new string(fill, padding) + signText + body,
        };
    }
}

/// <summary>printf-style <c>"%s" % value</c> (Python's str.__mod__), used by the <c>format</c> filter.</summary>
internal static class PercentFormat
{
    public static string Format(string format, object? arguments)
    {
        var positional = arguments is ValueList { IsTuple: true } tuple ? tuple : new ValueList { arguments };
        var named = arguments as ValueDict;
        var sb = new StringBuilder();
        int next = 0;
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%')
            {
                sb.Append(c);
                continue;
            }
            if (++i >= format.Length) throw new TemplateException("incomplete format: '%' at the end of the format string");
            if (format[i] == '%')
            {
                sb.Append('%');
                continue;
            }
            object? value;
            if (format[i] == '(')
            {
                int close = format.IndexOf(')', i);
                if (close < 0 || named is null) throw new TemplateException("format requires a mapping for %(name) fields");
                string key = format[(i + 1)..close];
                if (!named.TryGet(key, out value)) throw new TemplateException($"format: missing key '{key}'");
                i = close + 1;
            }
            else
            {
                if (next >= positional.Count) throw new TemplateException("not enough arguments for format string");
                value = positional[next++];
            }
            int specStart = i;
            while (i < format.Length && "-+ #0123456789.".Contains(format[i], StringComparison.Ordinal)) i++;
            if (i >= format.Length) throw new TemplateException("incomplete format specifier");
            string flags = format[specStart..i];
            char type = format[i];
            // printf pads on the left unless the '-' flag asks for left alignment.
            string align = flags.Contains('-', StringComparison.Ordinal) ? "<" : ">";
            string body = flags.Replace("-", "", StringComparison.Ordinal).Replace("#", "", StringComparison.Ordinal);
            switch (type)
            {
                case 's': sb.Append(FormatSpec.Apply(PyOps.ToStr(value), align + body)); break;
                case 'r': sb.Append(FormatSpec.Apply(PyOps.Repr(value), align + body)); break;
                case 'd' or 'i' or 'u': sb.Append(FormatSpec.Apply((long)Math.Truncate(PyOps.ToDouble(value)), align + body + "d")); break;
                case 'f' or 'F' or 'e' or 'E' or 'g' or 'G': sb.Append(FormatSpec.Apply(PyOps.ToDouble(value), align + body + type)); break;
                case 'x': sb.Append(PyOps.ToLong(value).ToString("x", CultureInfo.InvariantCulture)); break;
                case 'X': sb.Append(PyOps.ToLong(value).ToString("X", CultureInfo.InvariantCulture)); break;
                default: throw new TemplateException($"unsupported format character '{type}'");
            }
        }
        // Python accepts unused arguments from anything subscriptable other than a tuple or str (a dict, a list,
        // Jinja's Undefined), which it treats as a mapping.
        bool mappingLike = arguments is ValueDict or Undefined or ValueList { IsTuple: false };
        if (!mappingLike && next < positional.Count)
            throw new TemplateException("not all arguments converted during string formatting");
        return sb.ToString();
    }
}

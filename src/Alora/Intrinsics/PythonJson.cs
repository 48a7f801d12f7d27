using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Intrinsics;

/// <summary>
/// JSON as Python's standard library writes and compares it, for results that must read the same as
/// granite-common's: <c>json.dumps</c> defaults (", " and ": " separators, ASCII only, floats as <c>repr</c>),
/// <c>str()</c> of values, and dict-key equality (1 == 1.0 == True; "1" differs from 1).
/// </summary>
public static class PythonJson
{
    public static string Dumps(JsonNode? node)
    {
        var sb = new StringBuilder();
        Write(sb, node);
        return sb.ToString();
    }

    private static void Write(StringBuilder sb, JsonNode? node)
    {
        switch (node)
        {
            case null: sb.Append("null"); break;
            case JsonObject o:
                sb.Append('{');
                bool first = true;
                foreach (var (k, v) in o)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    WriteString(sb, k);
                    sb.Append(": ");
                    Write(sb, v);
                }
                sb.Append('}');
                break;
            case JsonArray a:
                sb.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    Write(sb, a[i]);
                }
                sb.Append(']');
                break;
            case JsonValue v:
                switch (v.GetValueKind())
                {
                    case JsonValueKind.String: WriteString(sb, v.GetValue<string>()); break;
                    case JsonValueKind.True: sb.Append("true"); break;
                    case JsonValueKind.False: sb.Append("false"); break;
                    case JsonValueKind.Null: sb.Append("null"); break;
                    default:
                        if (IsFloat(v))
                        {
                            double d = ToDouble(v);
                            sb.Append(double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : double.IsNaN(d) ? "NaN" : YamlScalar.PythonFloat(d));
                        }
                        else sb.Append(v.ToJsonString());
                        break;
                }
                break;
        }
    }

    /// <summary>Whether a JSON number is a Python float (written with a fraction or exponent, or made from a double) rather than an int.</summary>
    public static bool IsFloat(JsonValue v)
    {
        if (v.TryGetValue(out JsonElement e)) return e.ValueKind == JsonValueKind.Number && e.GetRawText().AsSpan().IndexOfAny(".eE") >= 0;
        return v.TryGetValue(out double _) || v.TryGetValue(out float _) || v.TryGetValue(out decimal _);
    }

    /// <summary>Python's json.dumps default (ensure_ascii): every character above '~' as \uXXXX.</summary>
    private static void WriteString(StringBuilder sb, string s) => Tokenization.Templates.TemplateJson.AppendString(sb, s, ensureAscii: true);

    /// <summary>Python's <c>str()</c> of a JSON scalar ("True", "None", "1", "0.5", or the string itself).</summary>
    public static string Str(JsonNode? node) => node switch
    {
        null => "None",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => IsFloat(v) ? YamlScalar.PythonFloat(ToDouble(v)) : v.ToJsonString(),
        JsonValue v => YamlScalar.PythonText(v),
        _ => Dumps(node),
    };

    /// <summary>Python's == on two JSON scalars as dict keys compare: strings by content; numbers and booleans by value (True == 1).</summary>
    public static bool ScalarEquals(JsonNode? a, JsonNode? b)
    {
        if (a is null || b is null) return a is null && b is null || Kind(a) == JsonValueKind.Null && Kind(b) == JsonValueKind.Null;
        if (a is not JsonValue va || b is not JsonValue vb) return JsonNode.DeepEquals(a, b);
        var ka = va.GetValueKind();
        var kb = vb.GetValueKind();
        if (ka == JsonValueKind.String || kb == JsonValueKind.String)
            return ka == kb && va.GetValue<string>() == vb.GetValue<string>();
        double? x = Numeric(va), y = Numeric(vb);
        return x is not null && y is not null && x == y;
    }

    private static JsonValueKind Kind(JsonNode? n) => n?.GetValueKind() ?? JsonValueKind.Null;

    private static double? Numeric(JsonValue v) => v.GetValueKind() switch
    {
        JsonValueKind.True => 1,
        JsonValueKind.False => 0,
        JsonValueKind.Number => ToDouble(v),
        _ => null,
    };

    /// <summary>Python's <c>sum()</c> of floats (CPython 3.12+): left to right with Neumaier's compensation, the
    /// compensation added at the end when it is finite and non-zero.</summary>
    public static double Sum(IEnumerable<double> values)
    {
        double sum = 0, c = 0;
        foreach (double x in values)
        {
            double t = sum + x;
            if (Math.Abs(sum) >= Math.Abs(x)) c += (sum - t) + x;
            else c += (x - t) + sum;
            sum = t;
        }
        return c != 0 && double.IsFinite(c) ? sum + c : sum;
    }

    /// <summary>A JSON number as a double, whatever CLR type holds it (a parsed element, a long, an int, a double).</summary>
    public static double ToDouble(JsonNode? node)
    {
        if (node is JsonValue v)
        {
            if (v.TryGetValue(out double d)) return d;
            if (v.TryGetValue(out long l)) return l;
            if (v.TryGetValue(out int i)) return i;
            if (v.TryGetValue(out float f)) return f;
            if (v.TryGetValue(out decimal m)) return (double)m;
            if (v.TryGetValue(out JsonElement e) && e.ValueKind == JsonValueKind.Number) return e.GetDouble();
        }
        throw new InvalidOperationException($"{node?.ToJsonString() ?? "null"} is not a number");
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Tokenization.Templates;

/// <summary>Converts between System.Text.Json nodes and template values, and writes values as Python's
/// <c>json.dumps(value, ensure_ascii=False, indent=..., separators=..., sort_keys=...)</c> does, which is
/// what transformers installs as the <c>tojson</c> filter.</summary>
internal static class TemplateJson
{
    /// <summary>JSON → Python values as json.loads gives them: integers stay int, numbers with a
    /// fraction or exponent become float.</summary>
    public static object? FromNode(JsonNode? node)
    {
        switch (node)
        {
            case null:
                return null;
            case JsonObject obj:
                var dict = new ValueDict();
                foreach (var (key, value) in obj) dict.Put(key, FromNode(value));
                return dict;
            case JsonArray array:
                var list = new ValueList(array.Count);
                foreach (var item in array) list.Add(FromNode(item));
                return list;
            case JsonValue value:
                return FromValue(value);
            default:
                throw new TemplateException($"unsupported JSON node {node.GetType().Name}");
        }
    }

    private static object? FromValue(JsonValue value)
    {
        switch (value.GetValueKind())
        {
            case JsonValueKind.String:
                return value.GetValue<string>();
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.Number:
                // Parsed JSON: an integer literal reads as long; "1.0" or "1e5" do not, and become float as in
                // Python. Values built in code carry their .NET type.
                if (value.TryGetValue(out long integer)) return integer;
                if (value.TryGetValue(out int small)) return (long)small;
                if (value.TryGetValue(out double real)) return real;
                break;
        }
        using var document = JsonDocument.Parse(value.ToJsonString());
        return FromElement(document.RootElement);
    }

    private static object? FromElement(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String: return element.GetString();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.Null: return null;
            case JsonValueKind.Number:
                string raw = element.GetRawText();
                bool isInteger = raw.IndexOfAny(['.', 'e', 'E']) < 0;
                if (isInteger && long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long integer)) return integer;
                return double.Parse(raw, CultureInfo.InvariantCulture);
            case JsonValueKind.Object:
                var dict = new ValueDict();
                foreach (var property in element.EnumerateObject()) dict.Put(property.Name, FromElement(property.Value));
                return dict;
            case JsonValueKind.Array:
                var list = new ValueList();
                foreach (var item in element.EnumerateArray()) list.Add(FromElement(item));
                return list;
            default:
                return null;
        }
    }

    public static string Dumps(object? value, string? indent, string? itemSeparator, string? keySeparator, bool sortKeys)
    {
        var sb = new StringBuilder();
        var writer = new Writer(sb, indent, itemSeparator ?? (indent is null ? ", " : ","), keySeparator ?? ": ", sortKeys);
        writer.Write(value, 0);
        return sb.ToString();
    }

    /// <summary>
    /// A JSON string as Python's json.dumps writes it: the short escapes for quote, backslash, \n \r \t \b \f,
    /// \uXXXX for other control characters, and (ensure_ascii) for every character above '~'.
    /// </summary>
    internal static void AppendString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    private sealed class Writer(StringBuilder sb, string? indent, string itemSeparator, string keySeparator, bool sortKeys)
    {
        public void Write(object? value, int depth)
        {
            switch (value)
            {
                case null: sb.Append("null"); break;
                case bool b: sb.Append(b ? "true" : "false"); break;
                case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: sb.Append(FloatText(d)); break;
                case string s: WriteString(s); break;
                case ValueList list: WriteList(list, depth); break;
                case ValueDict dict: WriteDict(dict, depth); break;
                default:
                    throw new TemplateException($"Object of type {PyOps.TypeName(value)} is not JSON serializable");
            }
        }

        private static string FloatText(double d) => double.IsNaN(d) ? "NaN"
            : double.IsPositiveInfinity(d) ? "Infinity"
            : double.IsNegativeInfinity(d) ? "-Infinity"
            : PyOps.FormatFloat(d);

        private void NewLine(int depth)
        {
            sb.Append('\n');
            for (int i = 0; i < depth; i++) sb.Append(indent);
        }

        private void WriteList(ValueList list, int depth)
        {
            if (list.Count == 0)
            {
                sb.Append("[]");
                return;
            }
            sb.Append('[');
            for (int i = 0; i < list.Count; i++)
            {
                if (i > 0) sb.Append(itemSeparator);
                if (indent is not null) NewLine(depth + 1);
                Write(list[i], depth + 1);
            }
            if (indent is not null) NewLine(depth);
            sb.Append(']');
        }

        private void WriteDict(ValueDict dict, int depth)
        {
            if (dict.Count == 0)
            {
                sb.Append("{}");
                return;
            }
            IEnumerable<KeyValuePair<object, object?>> entries = dict;
            if (sortKeys) entries = dict.OrderBy(entry => ValueDict.KeyValue(entry.Key), TemplateFilters.PythonOrder);
            sb.Append('{');
            bool first = true;
            foreach (var (key, item) in entries)
            {
                if (!first) sb.Append(itemSeparator);
                first = false;
                if (indent is not null) NewLine(depth + 1);
                WriteString(KeyText(ValueDict.KeyValue(key)));
                sb.Append(keySeparator);
                Write(item, depth + 1);
            }
            if (indent is not null) NewLine(depth);
            sb.Append('}');
        }

        private static string KeyText(object? key) => key switch
        {
            string s => s,
            null => "null",
            bool b => b ? "true" : "false",
            long l => l.ToString(CultureInfo.InvariantCulture),
            double d => FloatText(d),
            _ => throw new TemplateException($"keys must be str, int, float, bool or None, not {PyOps.TypeName(key)}"),
        };

        private void WriteString(string s) => AppendString(sb, s, ensureAscii: false);
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Alora.Intrinsics;

/// <summary>A YAML file that the reader cannot take: where (file, line, column, 1-based) and what was expected.</summary>
public sealed class YamlException(string file, int line, int column, string message)
    : FormatException($"{file}, line {line}, column {column}: {message}")
{
    public string File { get; } = file;
    public int Line { get; } = line;
    public int Column { get; } = column;
    public string Reason { get; } = message;
}

/// <summary>A parsed YAML node with the place it starts (1-based line and column), for error messages.</summary>
public abstract class YamlNode(int line, int column)
{
    public int Line { get; } = line;
    public int Column { get; } = column;

    /// <summary>The node as JSON: mappings become objects whose keys are the keys' Python <c>str()</c> (as PyYAML and a
    /// Python dict would hold them), sequences arrays, scalars their resolved values.</summary>
    public abstract JsonNode? ToJson();
}

/// <summary>A scalar: its resolved value (null for YAML's null) and its text as written.</summary>
public sealed class YamlScalar(JsonValue? value, string text, bool quoted, int line, int column) : YamlNode(line, column)
{
    public JsonValue? Value { get; } = value;
    public string Text { get; } = text;
    public bool Quoted { get; } = quoted;
    public override JsonNode? ToJson() => Value?.DeepClone();

    /// <summary>Python's <c>str()</c> of the value: "True", "None", "1", "0.5", or the string itself.</summary>
    public string PythonString => PythonText(Value);

    internal static string PythonText(JsonValue? value)
    {
        if (value is null) return "None";
        return value.GetValueKind() switch
        {
            System.Text.Json.JsonValueKind.String => value.GetValue<string>(),
            System.Text.Json.JsonValueKind.True => "True",
            System.Text.Json.JsonValueKind.False => "False",
            _ when value.TryGetValue(out long l) => l.ToString(CultureInfo.InvariantCulture),
            _ => PythonFloat(PythonJson.ToDouble(value)),
        };
    }

    /// <summary>Python's repr of a float: the shortest round-trip digits, with ".0" on whole numbers.</summary>
    internal static string PythonFloat(double d)
    {
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (double.IsNaN(d)) return "nan";
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        if (r.Contains('E'))
        {
            // Python writes 1e-05 / 1e+16: a signed exponent of at least two digits.
            int e = r.IndexOf('E');
            string mantissa = r[..e];
            int exponent = int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
            return $"{mantissa}e{(exponent < 0 ? "-" : "+")}{Math.Abs(exponent):00}";
        }
        return r.Contains('.') ? r : r + ".0";
    }
}

public sealed class YamlSequence(IReadOnlyList<YamlNode?> items, int line, int column) : YamlNode(line, column)
{
    /// <summary>The items; null stands for an empty (null) item.</summary>
    public IReadOnlyList<YamlNode?> Items { get; } = items;
    public override JsonNode ToJson() => new JsonArray([.. Items.Select(i => i?.ToJson())]);
}

public sealed class YamlMapping(IReadOnlyList<KeyValuePair<YamlScalar, YamlNode?>> entries, int line, int column) : YamlNode(line, column)
{
    /// <summary>The entries in file order; a null value is an empty (null) value.</summary>
    public IReadOnlyList<KeyValuePair<YamlScalar, YamlNode?>> Entries { get; } = entries;

    public YamlNode? this[string key] => Entries.FirstOrDefault(e => e.Key.PythonString == key).Value;
    public bool ContainsKey(string key) => Entries.Any(e => e.Key.PythonString == key);

    public override JsonNode ToJson()
    {
        var o = new JsonObject();
        foreach (var (key, value) in Entries) o[key.PythonString] = value?.ToJson();
        return o;
    }
}

/// <summary>
/// Reads the YAML that intrinsic definitions (io.yaml) are written in: block mappings and sequences, flow
/// (JSON-style) collections, plain, single- and double-quoted scalars, literal and folded block scalars (with
/// chomping and indentation indicators) and comments. Plain scalars resolve as PyYAML's <c>safe_load</c> does
/// (YAML 1.1: <c>~</c>/null, yes/no/on/off/true/false, ints, floats with a dot). Anything else — anchors,
/// aliases, tags, several documents, multi-line plain scalars, tabs in indentation — is refused with the file,
/// line and column and what was expected.
/// </summary>
public sealed class YamlReader
{
    private readonly string _file;
    private readonly string[] _lines;
    private int _line;      // 0-based current line
    private int _col;       // 0-based current column

    private YamlReader(string text, string file)
    {
        _file = file;
        _lines = text.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n');
        if (_lines.Length > 0 && _lines[0].StartsWith('\uFEFF')) _lines[0] = _lines[0][1..];
    }

    public static YamlNode? ParseFile(string path) => Parse(File.ReadAllText(path), path);

    /// <summary>Parses one YAML document; <paramref name="file"/> names it in errors.</summary>
    public static YamlNode? Parse(string text, string file = "<yaml>")
    {
        var reader = new YamlReader(text, file);
        return reader.ParseDocument();
    }

    private YamlException Error(string message, int? line = null, int? col = null)
        => new(_file, (line ?? _line) + 1, (col ?? _col) + 1, message);

    private YamlNode? ParseDocument()
    {
        // Directives and a leading "---" are allowed; a second document is not.
        SkipBlankLines();
        while (_line < _lines.Length && _lines[_line].StartsWith('%')) { _line++; SkipBlankLines(); }
        if (_line < _lines.Length && IsDocumentMarker(_lines[_line], "---"))
        {
            _col = 3;
            SkipSpacesAndComment();
            if (_col < _lines[_line].Length) throw Error("content after \"---\" on the same line is not supported; start it on the next line");
            _line++; _col = 0;
        }
        SkipBlankLines();
        var root = _line < _lines.Length ? ParseBlock(-1) : null;
        SkipBlankLines();
        if (_line < _lines.Length && IsDocumentMarker(_lines[_line], "..."))
        {
            _line++;
            SkipBlankLines();
        }
        if (_line < _lines.Length)
        {
            _col = Indent(_lines[_line]);
            if (IsDocumentMarker(_lines[_line], "---")) throw Error("a second YAML document: one io.yaml holds one document");
            throw Error($"unexpected content {Quote(_lines[_line].Trim())}: expected the end of the file or a line indented like the entries above");
        }
        return root;
    }

    private bool AtDocumentMarker() => IsDocumentMarker(_lines[_line], "---") || IsDocumentMarker(_lines[_line], "...");

    private static bool IsDocumentMarker(string line, string marker)
        => line.StartsWith(marker, StringComparison.Ordinal) && (line.Length == 3 || line[3] is ' ' or '\t');

    private static string Quote(string s) => "\"" + (s.Length > 40 ? s[..37] + "..." : s) + "\"";

    private static int Indent(string line)
    {
        int i = 0;
        while (i < line.Length && line[i] == ' ') i++;
        return i;
    }

    private static bool IsBlankOrComment(string line)
    {
        string t = line.TrimStart(' ', '\t');
        return t.Length == 0 || t[0] == '#';
    }

    /// <summary>Moves to the next line that has content (from the start of the current line when _col is 0).</summary>
    private void SkipBlankLines()
    {
        while (_line < _lines.Length && IsBlankOrComment(_col == 0 ? _lines[_line] : _lines[_line][_col..]))
        {
            _line++;
            _col = 0;
        }
        if (_line < _lines.Length && _col == 0)
        {
            string line = _lines[_line];
            int i = 0;
            while (i < line.Length && line[i] is ' ' or '\t')
            {
                if (line[i] == '\t') throw Error("a tab in indentation: YAML indents with spaces only", _line, i);
                i++;
            }
        }
    }

    private void SkipSpacesAndComment()
    {
        string line = _lines[_line];
        while (_col < line.Length && line[_col] is ' ' or '\t') _col++;
        if (_col < line.Length && line[_col] == '#') _col = line.Length;
    }

    private bool AtLineEnd()
    {
        int saved = _col;
        SkipSpacesAndComment();
        bool end = _col >= _lines[_line].Length;
        if (!end) _col = saved;
        return end;
    }

    /// <summary>
    /// The block node that starts at the current line (at _col when we are inside a line, after "- "), which
    /// must be indented more than <paramref name="parentIndent"/>.
    /// </summary>
    private YamlNode? ParseBlock(int parentIndent)
    {
        SkipBlankLines();
        if (_line >= _lines.Length) return null;
        string line = _lines[_line];
        int indent = _col == 0 ? Indent(line) : _col;
        if (indent <= parentIndent) return null;
        _col = indent;
        if (IsSequenceEntry(line, indent)) return ParseSequence(indent);
        if (FindMappingColon(line, indent) >= 0) return ParseMapping(indent);
        return ParseInlineValue(parentIndent);
    }

    private static bool IsSequenceEntry(string line, int at) => at < line.Length && line[at] == '-' && (at + 1 == line.Length || line[at + 1] is ' ' or '\t');

    /// <summary>The column of the ':' that ends a mapping key starting at <paramref name="at"/>, or -1.</summary>
    private int FindMappingColon(string line, int at)
    {
        if (at >= line.Length) return -1;
        char c = line[at];
        if (c is '"' or '\'')
        {
            int end = SkipQuotedOnLine(line, at);
            if (end < 0) return -1;
            int i = end;
            while (i < line.Length && line[i] == ' ') i++;
            return i < line.Length && line[i] == ':' && (i + 1 == line.Length || line[i + 1] is ' ' or '\t') ? i : -1;
        }
        if (c is '[' or '{' or '#' or '|' or '>' or '&' or '*' or '!') return -1;
        for (int i = at; i < line.Length; i++)
        {
            if (line[i] == '#' && i > at && line[i - 1] is ' ' or '\t') return -1;
            if (line[i] == ':' && (i + 1 == line.Length || line[i + 1] is ' ' or '\t')) return i;
        }
        return -1;
    }

    private static int SkipQuotedOnLine(string line, int at)
    {
        char q = line[at];
        for (int i = at + 1; i < line.Length; i++)
        {
            if (q == '"' && line[i] == '\\') { i++; continue; }
            if (line[i] == q)
            {
                if (q == '\'' && i + 1 < line.Length && line[i + 1] == '\'') { i++; continue; }
                return i + 1;
            }
        }
        return -1;
    }

    private YamlSequence ParseSequence(int indent)
    {
        var items = new List<YamlNode?>();
        int startLine = _line, startCol = _col;
        while (true)
        {
            string line = _lines[_line];
            if (!IsSequenceEntry(line, indent)) throw Error($"expected a sequence entry \"- \" at column {indent + 1}, found {Quote(line.Trim())}", _line, indent);
            _col = indent + 1;
            SkipSpacesAndComment();
            if (_col >= line.Length)
            {
                _line++; _col = 0;
                items.Add(ParseBlock(indent));
            }
            else
            {
                // The item starts on this line: a nested block (mapping or sequence) indented at its column, or a value.
                items.Add(ParseBlock(indent));
            }
            SkipBlankLines();
            if (_line >= _lines.Length || AtDocumentMarker()) break;
            int next = Indent(_lines[_line]);
            if (next < indent) break;
            if (next > indent) { _col = next; throw Error($"unexpected indentation: expected a sequence entry at column {indent + 1} or less"); }
            if (!IsSequenceEntry(_lines[_line], indent)) break;   // a mapping key at the same indent (a "key:\n- item" sequence ends)
        }
        return new YamlSequence(items, startLine + 1, startCol + 1);
    }

    private YamlMapping ParseMapping(int indent)
    {
        var entries = new List<KeyValuePair<YamlScalar, YamlNode?>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int startLine = _line, startCol = _col;
        while (true)
        {
            string line = _lines[_line];
            int colon = FindMappingColon(line, indent);
            if (colon < 0)
            {
                _col = indent;
                throw Error(IsSequenceEntry(line, indent)
                    ? "a sequence entry where a mapping key was expected (indent the \"- \" entries under their key, or keep them all at one level)"
                    : $"expected a mapping key (\"name: value\"), found {Quote(line[indent..].Trim())}");
            }
            _col = indent;
            var key = ParseKey(line, indent, colon);
            if (!seen.Add(key.PythonString)) throw Error($"duplicate key \"{key.PythonString}\"", _line, indent);
            _col = colon + 1;
            SkipSpacesAndComment();
            YamlNode? value;
            if (_col >= line.Length)
            {
                _line++; _col = 0;
                SkipBlankLines();
                // A block sequence may sit at the key's own indent ("key:\n- a").
                if (_line < _lines.Length && Indent(_lines[_line]) == indent && IsSequenceEntry(_lines[_line], indent))
                {
                    _col = indent;
                    value = ParseSequence(indent);
                }
                else value = ParseBlock(indent);
            }
            else
            {
                if (IsSequenceEntry(line, _col)) throw Error("a block sequence cannot start on its key's line; put \"- \" entries on the lines below");
                if (FindMappingColon(line, _col) >= 0 && line[_col] is not ('"' or '\'' or '[' or '{'))
                    throw Error("a nested mapping cannot start on its key's line; put it on the lines below, indented");
                value = ParseInlineValue(indent);
            }
            entries.Add(new(key, value));
            SkipBlankLines();
            if (_line >= _lines.Length || AtDocumentMarker()) break;
            int next = Indent(_lines[_line]);
            if (next < indent) break;
            if (next > indent) { _col = next; throw Error($"unexpected indentation: expected a key at column {indent + 1} (or less), found {Quote(_lines[_line].Trim())}"); }
        }
        return new YamlMapping(entries, startLine + 1, startCol + 1);
    }

    private YamlScalar ParseKey(string line, int at, int colon)
    {
        char c = line[at];
        if (c is '"' or '\'')
        {
            _col = at;
            var s = ParseQuoted();
            return s;
        }
        string text = line[at..colon].TrimEnd();
        if (text.Length == 0) throw Error("an empty mapping key", _line, at);
        if (text[0] is '&' or '*' or '!' or '?') throw Error($"{Describe(text[0])} are not supported in io.yaml", _line, at);
        return Resolve(text, _line, at);
    }

    private static string Describe(char c) => c switch
    {
        '&' => "anchors (&)", '*' => "aliases (*)", '!' => "tags (!)", '?' => "complex keys (?)", '@' or '`' => "reserved indicators (@, `)",
        _ => $"'{c}'",
    };

    /// <summary>A value that starts on the current line at _col: block scalar, flow collection, quoted or plain scalar.</summary>
    private YamlNode? ParseInlineValue(int parentIndent)
    {
        string line = _lines[_line];
        char c = line[_col];
        YamlNode? node;
        switch (c)
        {
            case '|' or '>':
                return ParseBlockScalar(parentIndent);
            case '[' or '{':
                node = ParseFlow();
                break;
            case '"' or '\'':
                node = ParseQuoted();
                break;
            case '&' or '*' or '!' or '@' or '`':
                throw Error($"{Describe(c)} are not supported in io.yaml");
            default:
                node = ParsePlainBlock(parentIndent);
                return node;
        }
        SkipSpacesAndComment();
        if (_col < _lines[_line].Length) throw Error($"unexpected {Quote(_lines[_line][_col..])} after the value: expected the end of the line or a comment");
        _line++; _col = 0;
        return node;
    }

    private YamlScalar ParsePlainBlock(int parentIndent)
    {
        string line = _lines[_line];
        int start = _col, end = line.Length;
        for (int i = start; i < line.Length; i++)
        {
            if (line[i] == '#' && i > start && line[i - 1] is ' ' or '\t') { end = i; break; }
            if (line[i] == ':' && (i + 1 == line.Length || line[i + 1] is ' ' or '\t'))
                throw Error("a \": \" inside a plain value; quote the value", _line, i);
        }
        string text = line[start..end].TrimEnd();
        var scalar = Resolve(text, _line, start);
        _line++; _col = 0;
        // A plain scalar continued on a more indented line is caught by the enclosing block ("unexpected indentation").
        return scalar;
    }

    // ───────────── scalars ─────────────

    private static readonly Regex IntPattern = new(@"^[-+]?(?:0|[1-9][0-9_]*)$", RegexOptions.CultureInvariant);
    private static readonly Regex HexPattern = new(@"^[-+]?0x[0-9a-fA-F_]+$", RegexOptions.CultureInvariant);
    private static readonly Regex OctalPattern = new(@"^[-+]?0[0-7_]+$", RegexOptions.CultureInvariant);
    private static readonly Regex FloatPattern = new(@"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", RegexOptions.CultureInvariant);

    /// <summary>A plain scalar's value under PyYAML's resolver (YAML 1.1 core types).</summary>
    internal YamlScalar Resolve(string text, int line, int col)
    {
        JsonValue? value;
        switch (text)
        {
            case "" or "~" or "null" or "Null" or "NULL": value = null; break;
            case "yes" or "Yes" or "YES" or "true" or "True" or "TRUE" or "on" or "On" or "ON": value = JsonValue.Create(true); break;
            case "no" or "No" or "NO" or "false" or "False" or "FALSE" or "off" or "Off" or "OFF": value = JsonValue.Create(false); break;
            default:
                if (IntPattern.IsMatch(text) && long.TryParse(text.Replace("_", ""), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) value = JsonValue.Create(l);
                else if (HexPattern.IsMatch(text)) value = JsonValue.Create(Signed(text, t => Convert.ToInt64(t[2..], 16)));
                else if (OctalPattern.IsMatch(text)) value = JsonValue.Create(Signed(text, t => Convert.ToInt64(t[1..], 8)));
                else if (FloatPattern.IsMatch(text)) value = JsonValue.Create(ParseFloat(text));
                else
                {
                    if (text[0] is '&' or '*' or '!' or '@' or '`' or '%') throw Error($"{Describe(text[0])} are not supported in io.yaml", line, col);
                    value = JsonValue.Create(text);
                }
                break;
        }
        return new YamlScalar(value, text, quoted: false, line + 1, col + 1);
    }

    private static long Signed(string text, Func<string, long> parse)
    {
        string t = text.Replace("_", "");
        bool negative = t[0] == '-';
        if (t[0] is '-' or '+') t = t[1..];
        long v = parse(t);
        return negative ? -v : v;
    }

    private static double ParseFloat(string text)
    {
        string t = text.Replace("_", "");
        string lower = t.ToLowerInvariant();
        if (lower.EndsWith(".inf", StringComparison.Ordinal)) return lower[0] == '-' ? double.NegativeInfinity : double.PositiveInfinity;
        if (lower == ".nan") return double.NaN;
        return double.Parse(t, NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    /// <summary>A single- or double-quoted scalar at _col (it may span lines; line breaks fold to spaces).</summary>
    private YamlScalar ParseQuoted()
    {
        int startLine = _line, startCol = _col;
        char q = _lines[_line][_col];
        _col++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_line >= _lines.Length) throw Error($"this {(q == '"' ? "double" : "single")}-quoted string is never closed", startLine, startCol);
            string line = _lines[_line];
            if (_col >= line.Length)
            {
                // Fold the line break: trailing spaces go, one break is a space, each further empty line a newline.
                while (sb.Length > 0 && sb[^1] is ' ' or '\t') sb.Length--;
                int breaks = 0;
                do { _line++; _col = 0; breaks++; }
                while (_line < _lines.Length && _lines[_line].Trim(' ', '\t').Length == 0);
                if (_line >= _lines.Length) continue;
                _col = 0;
                while (_col < _lines[_line].Length && _lines[_line][_col] is ' ' or '\t') _col++;
                sb.Append(breaks == 1 ? " " : new string('\n', breaks - 1));
                continue;
            }
            char c = line[_col];
            if (c == q)
            {
                if (q == '\'' && _col + 1 < line.Length && line[_col + 1] == '\'') { sb.Append('\''); _col += 2; continue; }
                _col++;
                break;
            }
            if (q == '"' && c == '\\')
            {
                if (_col + 1 >= line.Length)
                {
                    // An escaped line break: the break and the next line's leading spaces vanish.
                    _line++; _col = 0;
                    if (_line < _lines.Length) while (_col < _lines[_line].Length && _lines[_line][_col] is ' ' or '\t') _col++;
                    continue;
                }
                char e = line[_col + 1];
                _col += 2;
                switch (e)
                {
                    case '0': sb.Append('\0'); break;
                    case 'a': sb.Append('\a'); break;
                    case 'b': sb.Append('\b'); break;
                    case 't' or '\t': sb.Append('\t'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'v': sb.Append('\v'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'e': sb.Append('\x1b'); break;
                    case ' ': sb.Append(' '); break;
                    case '"': sb.Append('"'); break;
                    case '/': sb.Append('/'); break;
                    case '\\': sb.Append('\\'); break;
                    case 'N': sb.Append('\u0085'); break;
                    case '_': sb.Append('\u00a0'); break;
                    case 'L': sb.Append('\u2028'); break;
                    case 'P': sb.Append('\u2029'); break;
                    case 'x': sb.Append(HexEscape(line, 2)); break;
                    case 'u': sb.Append(HexEscape(line, 4)); break;
                    case 'U': sb.Append(HexEscape(line, 8)); break;
                    default: throw Error($"unknown escape \"\\{e}\" in a double-quoted string", _line, _col - 2);
                }
                continue;
            }
            sb.Append(c);
            _col++;
        }
        return new YamlScalar(JsonValue.Create(sb.ToString()), sb.ToString(), quoted: true, startLine + 1, startCol + 1);
    }

    private string HexEscape(string line, int digits)
    {
        if (_col + digits > line.Length || !int.TryParse(line.AsSpan(_col, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
            throw Error($"expected {digits} hex digits after the escape", _line, _col);
        _col += digits;
        return char.ConvertFromUtf32(code);
    }

    /// <summary>A literal (|) or folded (>) block scalar whose header is at _col; its lines are indented more than <paramref name="parentIndent"/>.</summary>
    private YamlScalar ParseBlockScalar(int parentIndent)
    {
        int headerLine = _line, headerCol = _col;
        string line = _lines[_line];
        bool folded = line[_col] == '>';
        _col++;
        char chomp = 'c';
        int explicitIndent = 0;
        while (_col < line.Length && line[_col] is '-' or '+' or (>= '1' and <= '9'))
        {
            if (line[_col] is '-' or '+') chomp = line[_col];
            else explicitIndent = line[_col] - '0';
            _col++;
        }
        SkipSpacesAndComment();
        if (_col < line.Length) throw Error($"unexpected {Quote(line[_col..])} after the block scalar header: expected a comment or the end of the line");
        _line++; _col = 0;

        int blockIndent = explicitIndent > 0 ? Math.Max(parentIndent, 0) + explicitIndent : -1;
        var content = new List<string>();
        int lastLine = _line;
        while (_line < _lines.Length)
        {
            string l = _lines[_line];
            if (l.Trim(' ').Length == 0) { content.Add(""); _line++; continue; }
            int ind = Indent(l);
            if (blockIndent < 0)
            {
                if (ind <= parentIndent) break;
                blockIndent = ind;
            }
            if (ind < blockIndent)
            {
                if (ind > parentIndent && l.TrimStart()[0] != '#')
                    throw Error($"this block scalar line is indented less ({ind}) than its first line ({blockIndent})", _line, ind);
                break;
            }
            content.Add(l[blockIndent..]);
            _line++;
            lastLine = _line;
        }
        // Trailing empty lines belong to chomping; lines after the last content line that we consumed stay consumed.
        int trailing = 0;
        while (content.Count > 0 && content[^1].Length == 0) { content.RemoveAt(content.Count - 1); trailing++; }
        string body;
        if (!folded) body = string.Join("\n", content);
        else
        {
            // Folding: a break between two ordinary lines becomes a space; empty lines stay as newlines (the break
            // before them goes); breaks next to more-indented lines are kept.
            var sb = new StringBuilder();
            int lastText = -1;
            for (int i = 0; i < content.Count; i++)
            {
                string l = content[i];
                if (l.Length == 0) { if (i > 0) sb.Append('\n'); continue; }
                if (lastText >= 0)
                {
                    bool moreIndented = l[0] is ' ' or '\t' || content[lastText][0] is ' ' or '\t';
                    bool hadEmpty = lastText < i - 1;
                    if (!hadEmpty) sb.Append(moreIndented ? '\n' : ' ');
                    else if (moreIndented) sb.Append('\n');
                }
                sb.Append(l);
                lastText = i;
            }
            body = sb.ToString();
        }
        string text = chomp switch
        {
            '-' => body,
            '+' => body + new string('\n', (content.Count > 0 ? 1 : 0) + trailing),
            _ => content.Count > 0 ? body + "\n" : "",
        };
        _col = 0;
        return new YamlScalar(JsonValue.Create(text), text, quoted: true, headerLine + 1, headerCol + 1);
    }

    // ───────────── flow collections ─────────────

    private void SkipFlowSpace()
    {
        while (_line < _lines.Length)
        {
            string line = _lines[_line];
            while (_col < line.Length && line[_col] is ' ' or '\t') _col++;
            if (_col < line.Length && line[_col] != '#') return;
            _line++; _col = 0;
        }
    }

    private char Peek(string context)
    {
        SkipFlowSpace();
        if (_line >= _lines.Length) throw Error($"the file ends inside {context}", _lines.Length - 1, _lines[^1].Length);
        return _lines[_line][_col];
    }

    private YamlNode ParseFlow()
    {
        int startLine = _line, startCol = _col;
        char open = _lines[_line][_col];
        _col++;
        if (open == '[')
        {
            var items = new List<YamlNode?>();
            while (true)
            {
                char c = Peek("a flow sequence [...]");
                if (c == ']') { _col++; break; }
                items.Add(ParseFlowValue("a flow sequence [...]"));
                c = Peek("a flow sequence [...]");
                if (c == ',') { _col++; continue; }
                if (c == ']') { _col++; break; }
                throw Error($"expected ',' or ']' in a flow sequence, found '{c}'");
            }
            return new YamlSequence(items, startLine + 1, startCol + 1);
        }
        var entries = new List<KeyValuePair<YamlScalar, YamlNode?>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            char c = Peek("a flow mapping {...}");
            if (c == '}') { _col++; break; }
            int keyLine = _line, keyCol = _col;
            var keyNode = ParseFlowValue("a flow mapping {...}", isKey: true);
            if (keyNode is not YamlScalar key) throw Error("a mapping key must be a scalar", keyLine, keyCol);
            if (!seen.Add(key.PythonString)) throw Error($"duplicate key \"{key.PythonString}\"", keyLine, keyCol);
            c = Peek("a flow mapping {...}");
            YamlNode? value = null;
            if (c == ':')
            {
                _col++;
                c = Peek("a flow mapping {...}");
                if (c is not (',' or '}')) value = ParseFlowValue("a flow mapping {...}");
            }
            entries.Add(new(key, value));
            c = Peek("a flow mapping {...}");
            if (c == ',') { _col++; continue; }
            if (c == '}') { _col++; break; }
            throw Error($"expected ',' or '}}' in a flow mapping, found '{c}'");
        }
        return new YamlMapping(entries, startLine + 1, startCol + 1);
    }

    private YamlNode? ParseFlowValue(string context, bool isKey = false)
    {
        char c = Peek(context);
        if (c is '[' or '{') return ParseFlow();
        if (c is '"' or '\'') return ParseQuoted();
        if (c is '&' or '*' or '!' or '@' or '`' or '|' or '>') throw Error(c is '|' or '>' ? "block scalars cannot appear inside a flow collection" : $"{Describe(c)} are not supported in io.yaml");
        string line = _lines[_line];
        int start = _col;
        while (_col < line.Length)
        {
            char d = line[_col];
            if (d is ',' or '[' or ']' or '{' or '}') break;
            if (d == ':' && (_col + 1 == line.Length || line[_col + 1] is ' ' or ',' or ']' or '}' || isKey)) break;
            if (d == '#' && _col > start && line[_col - 1] is ' ' or '\t') break;
            _col++;
        }
        string text = line[start.._col].TrimEnd();
        if (text.Length == 0) throw Error($"expected a value in {context}, found '{(_col < line.Length ? line[_col] : ' ')}'", _line, start);
        return Resolve(text, _line, start);
    }
}

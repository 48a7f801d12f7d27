using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Intrinsics;

/// <summary>A JSON literal of the raw output and where it sits: [Begin, End) offsets into the text, the quotes included for strings.</summary>
public readonly record struct JsonLiteral(JsonNode? Value, int Begin, int End);

/// <summary>
/// The raw output parsed twice, as granite-common does: once as a value, once with the offset of every
/// literal (string, number, true/false/null), keyed by its path, so a likelihood rule can find the tokens that
/// wrote a value.
/// </summary>
public sealed class PositionedJson
{
    private readonly Dictionary<string, JsonLiteral> _literals = new(StringComparer.Ordinal);
    private readonly string _text;
    private int _at;

    private PositionedJson(string text) => _text = text;

    public JsonNode? Value { get; private set; }

    /// <summary>The literal at a path (elements: string keys, int indices), or null when the path holds a container or nothing.</summary>
    public JsonLiteral? LiteralAt(IReadOnlyList<object> path) => _literals.TryGetValue(PathKey(path), out var l) ? l : null;

    public static string PathKey(IReadOnlyList<object> path)
        => string.Join("\u001f", path.Select(p => p is int i ? "#" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) : "$" + (string)p));

    public static PositionedJson Parse(string text)
    {
        var result = new PositionedJson(text);
        try { result.Value = JsonNode.Parse(text); }
        catch (JsonException e) { throw new IntrinsicException($"the intrinsic's output is not valid JSON ({e.Message}): {Shorten(text)}"); }
        result.SkipSpace();
        result.ParseValue([]);
        return result;
    }

    private static string Shorten(string s) => s.Length <= 200 ? s : s[..197] + "...";

    private void SkipSpace()
    {
        while (_at < _text.Length && _text[_at] is ' ' or '\t' or '\n' or '\r') _at++;
    }

    private void ParseValue(List<object> path)
    {
        SkipSpace();
        char c = _text[_at];
        if (c == '{')
        {
            _at++;
            SkipSpace();
            if (_text[_at] == '}') { _at++; return; }
            while (true)
            {
                SkipSpace();
                int begin = _at;
                ScanString();
                string key = JsonNode.Parse(_text[begin.._at])!.GetValue<string>();
                SkipSpace();
                _at++;   // ':'
                path.Add(key);
                ParseValue(path);
                path.RemoveAt(path.Count - 1);
                SkipSpace();
                if (_text[_at++] == '}') return;   // else ','
            }
        }
        if (c == '[')
        {
            _at++;
            SkipSpace();
            if (_text[_at] == ']') { _at++; return; }
            for (int i = 0; ; i++)
            {
                path.Add(i);
                ParseValue(path);
                path.RemoveAt(path.Count - 1);
                SkipSpace();
                if (_text[_at++] == ']') return;
            }
        }
        int start = _at;
        if (c == '"') ScanString();
        else while (_at < _text.Length && _text[_at] is not (',' or ']' or '}' or ' ' or '\t' or '\n' or '\r')) _at++;
        _literals[PathKey(path)] = new JsonLiteral(JsonNode.Parse(_text[start.._at]), start, _at);
    }

    private void ScanString()
    {
        _at++;   // opening quote
        while (_text[_at] != '"') _at += _text[_at] == '\\' ? 2 : 1;
        _at++;
    }
}

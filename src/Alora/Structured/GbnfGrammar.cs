using System.Globalization;

namespace Alora.Structured;

/// <summary>
/// Parses llama.cpp's GBNF: rules <c>name ::= alternatives</c>, string literals with escapes (\n \r \t \\ \"
/// \xHH \uHHHH \UHHHHHHHH), character classes ([a-z], [^"\\]), '.', rule references, groups, the postfix
/// operators * + ? {m} {m,} {m,n}, and # comments. A rule may continue on the next line inside parentheses or
/// after '|'. The grammar starts at <c>root</c>. Literals and classes are over Unicode code points (UTF-8 in the
/// output).
/// </summary>
internal sealed class GbnfGrammar
{
    private readonly string _text;
    private readonly GrammarBuilder _b = new();
    private readonly Dictionary<string, int> _rules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _firstUse = new(StringComparer.Ordinal);
    private int _at;

    private GbnfGrammar(string text) => _text = text;

    public static ByteGrammar Compile(string text)
    {
        var parser = new GbnfGrammar(text);
        parser.ParseRules();
        foreach (var (name, position) in parser._firstUse)
            if (!parser._b.IsDefined(parser._rules[name])) throw parser.Error($"the rule '{name}' is used but never defined", position);
        if (!parser._rules.TryGetValue("root", out int root) || !parser._b.IsDefined(root)) throw new StructuredOutputException("grammar: there is no 'root' rule (the grammar starts there)", "root");
        return parser._b.Build(root);
    }

    private StructuredOutputException Error(string message, int? at = null)
    {
        int position = at ?? _at;
        int line = 1, column = 1;
        for (int i = 0; i < position && i < _text.Length; i++)
        {
            if (_text[i] == '\n') { line++; column = 1; } else column++;
        }
        return new StructuredOutputException($"grammar: {message} at line {line}, column {column}", $"line {line}, column {column}");
    }

    private int Rule(string name, int usedAt)
    {
        if (!_rules.TryGetValue(name, out int rule))
        {
            rule = _b.Declare(name);
            _rules[name] = rule;
        }
        _firstUse.TryAdd(name, usedAt);
        return rule;
    }

    private void ParseRules()
    {
        SkipSpace(newlines: true);
        while (_at < _text.Length)
        {
            int start = _at;
            string name = Name() ?? throw Error("expected a rule name");
            SkipSpace(newlines: false);
            if (!_text.AsSpan(_at).StartsWith("::=")) throw Error("expected '::=' after the rule name");
            _at += 3;
            SkipSpace(newlines: false);
            var body = Alternatives(nested: false);
            if (!_rules.TryGetValue(name, out int rule)) { rule = _b.Declare(name); _rules[name] = rule; }
            if (_b.IsDefined(rule)) throw Error($"the rule '{name}' is defined twice", start);
            _b.Define(rule, body);
            SkipSpace(newlines: true);
        }
    }

    private string? Name()
    {
        int start = _at;
        while (_at < _text.Length && (char.IsAsciiLetterOrDigit(_text[_at]) || _text[_at] is '-' or '_')) _at++;
        return _at > start ? _text[start.._at] : null;
    }

    private void SkipSpace(bool newlines)
    {
        while (_at < _text.Length)
        {
            char c = _text[_at];
            if (c == '#') { while (_at < _text.Length && _text[_at] != '\n') _at++; }
            else if (c is ' ' or '\t' || (newlines && c is '\r' or '\n')) _at++;
            else if (!newlines && c == '\\' && _at + 1 < _text.Length && _text[_at + 1] is '\n' or '\r') _at += 2;
            else break;
        }
    }

    private GExpr Alternatives(bool nested)
    {
        var alternatives = new List<GExpr> { Sequence(nested) };
        while (true)
        {
            int saved = _at;
            SkipSpace(newlines: true);
            if (_at < _text.Length && _text[_at] == '|')
            {
                _at++;
                SkipSpace(newlines: true);
                alternatives.Add(Sequence(nested));
            }
            else { _at = saved; break; }
        }
        return GExpr.Alt([.. alternatives]);
    }

    private GExpr Sequence(bool nested)
    {
        var items = new List<GExpr>();
        while (true)
        {
            SkipSpace(newlines: nested);
            if (_at >= _text.Length) break;
            char c = _text[_at];
            if (c is '|' or ')' or '\n' or '\r') break;
            // A new rule starts on a line of its own: "name ::=" ends this sequence.
            if (IsRuleStart()) break;
            items.Add(Postfix(Primary()));
        }
        return GExpr.Seq([.. items]);
    }

    private bool IsRuleStart()
    {
        int saved = _at;
        bool result = Name() is not null;
        if (result)
        {
            SkipSpace(newlines: false);
            result = _text.AsSpan(_at).StartsWith("::=");
        }
        _at = saved;
        return result;
    }

    private GExpr Primary()
    {
        char c = _text[_at];
        switch (c)
        {
            case '"':
            {
                _at++;
                var items = new List<GExpr>();
                while (true)
                {
                    if (_at >= _text.Length) throw Error("unterminated string literal");
                    if (_text[_at] == '"') { _at++; break; }
                    int cp = Char(inClass: false);
                    items.Add(GExpr.Chars(CodePointSet.Of((cp, cp))));
                }
                return GExpr.Seq([.. items]);
            }
            case '[':
            {
                _at++;
                bool negated = _at < _text.Length && _text[_at] == '^';
                if (negated) _at++;
                var set = new CodePointSet();
                while (true)
                {
                    if (_at >= _text.Length) throw Error("unterminated character class");
                    if (_text[_at] == ']') { _at++; break; }
                    int lo = Char(inClass: true), hi = lo;
                    if (_at + 1 < _text.Length && _text[_at] == '-' && _text[_at + 1] != ']')
                    {
                        _at++;
                        hi = Char(inClass: true);
                        if (hi < lo) throw Error("a reversed range in a character class");
                    }
                    set.Add(lo, hi);
                }
                var result = negated ? set.Complement() : set;
                if (result.IsEmpty) throw Error("the character class matches nothing");
                return GExpr.Chars(result);
            }
            case '.':
                _at++;
                return GExpr.Chars(CodePointSet.Any());
            case '(':
            {
                _at++;
                SkipSpace(newlines: true);
                var inner = Alternatives(nested: true);
                SkipSpace(newlines: true);
                if (_at >= _text.Length || _text[_at] != ')') throw Error("missing ')'");
                _at++;
                return inner;
            }
            default:
                int at = _at;
                string name = Name() ?? throw Error($"unexpected '{c}'");
                return new GRef(Rule(name, at));
        }
    }

    private GExpr Postfix(GExpr item)
    {
        while (_at < _text.Length)
        {
            char c = _text[_at];
            if (c == '*') { _at++; item = GExpr.Star(item); }
            else if (c == '+') { _at++; item = GExpr.Plus(item); }
            else if (c == '?') { _at++; item = GExpr.Optional(item); }
            else if (c == '{')
            {
                int close = _text.IndexOf('}', _at);
                if (close < 0) throw Error("missing '}'");
                string[] parts = _text[(_at + 1)..close].Split(',');
                if (parts.Length > 2 || !int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int min))
                    throw Error("expected {m}, {m,} or {m,n}");
                int max = parts.Length == 1 ? min : parts[1].Trim().Length == 0 ? -1
                    : int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int m) ? m : throw Error("expected {m}, {m,} or {m,n}");
                if (max >= 0 && max < min) throw Error("a repetition's maximum is below its minimum");
                _at = close + 1;
                item = GExpr.Repeat(item, min, max);
            }
            else break;
        }
        return item;
    }

    private int Char(bool inClass)
    {
        char c = _text[_at];
        if (c != '\\')
        {
            int cp = char.ConvertToUtf32(_text, _at);
            _at += char.IsSurrogatePair(_text, _at) ? 2 : 1;
            return cp;
        }
        _at++;
        if (_at >= _text.Length) throw Error("a trailing backslash");
        char e = _text[_at++];
        return e switch
        {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '\\' => '\\',
            '"' => '"',
            '[' => '[',
            ']' => ']',
            '-' when inClass => '-',
            '^' when inClass => '^',
            'x' => Hex(2),
            'u' => Hex(4),
            'U' => Hex(8),
            _ => throw Error($"unknown escape \\{e}"),
        };
    }

    private int Hex(int digits)
    {
        if (_at + digits > _text.Length || !int.TryParse(_text.AsSpan(_at, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value) || value > CodePointSet.MaxCodePoint)
            throw Error($"expected {digits} hexadecimal digits");
        _at += digits;
        return value;
    }
}

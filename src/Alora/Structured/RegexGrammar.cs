using System.Globalization;
using System.Text;

namespace Alora.Structured;

/// <summary>
/// Compiles a regular expression (the common subset of Python's and ECMAScript's syntax that vLLM's
/// guided_regex and JSON Schema's pattern use) to a grammar expression over UTF-8 bytes that matches exactly the
/// strings the expression matches in full. Supported: literals and escapes (\d \D \w \W \s \S \t \n \r \f \v \0
/// \xHH \uHHHH and escaped punctuation), '.', classes with ranges and negation, groups ((…), (?:…), named),
/// alternation, and the quantifiers * + ? {n} {n,} {n,m} (lazy forms match the same strings). '^' at the start
/// and '$' at the end are accepted. Backreferences, lookaround, word boundaries, flags and Unicode properties are
/// refused with the construct named. In <see cref="JsonString"/> mode the result matches the text as it appears
/// inside a JSON string literal: quote, backslash and control characters come escaped.
/// </summary>
internal sealed class RegexGrammar
{
    private readonly string _pattern;
    private readonly bool _jsonString;
    private readonly string _what;
    private int _at;

    private RegexGrammar(string pattern, bool jsonString, string what)
    {
        _pattern = pattern;
        _jsonString = jsonString;
        _what = what;
    }

    /// <summary>The expression for a whole pattern.</summary>
    /// <param name="what">How messages name the pattern (e.g. "guided_regex", "the pattern at #/properties/id").</param>
    public static GExpr Compile(string pattern, bool jsonString, string what)
    {
        var parser = new RegexGrammar(pattern, jsonString, what);
        if (parser.Peek('^')) parser._at++;
        var expr = parser.Alternation();
        if (parser._at < pattern.Length) throw parser.Error($"unexpected '{pattern[parser._at]}'");
        return expr;
    }

    private StructuredOutputException Error(string message)
        => new($"{_what}: {message} at offset {_at} of /{_pattern}/", _what);

    private bool Peek(char c) => _at < _pattern.Length && _pattern[_at] == c;

    private GExpr Alternation()
    {
        var alternatives = new List<GExpr> { Sequence() };
        while (Peek('|'))
        {
            _at++;
            alternatives.Add(Sequence());
        }
        return GExpr.Alt([.. alternatives]);
    }

    private GExpr Sequence()
    {
        var items = new List<GExpr>();
        while (_at < _pattern.Length && !Peek('|') && !Peek(')'))
        {
            if (Peek('$'))
            {
                _at++;
                if (_at != _pattern.Length && !Peek(')') && !Peek('|')) throw Error("'$' is supported only at the end");
                continue;
            }
            var atom = Atom();
            items.Add(Quantified(atom));
        }
        return GExpr.Seq([.. items]);
    }

    private GExpr Quantified(GExpr atom)
    {
        while (_at < _pattern.Length)
        {
            int min, max;
            char c = _pattern[_at];
            if (c == '*') { min = 0; max = -1; _at++; }
            else if (c == '+') { min = 1; max = -1; _at++; }
            else if (c == '?') { min = 0; max = 1; _at++; }
            else if (c == '{' && TryBraces(out min, out max)) { }
            else break;
            if (Peek('?')) _at++;   // lazy: the same set of full matches
            else if (Peek('+')) throw Error("possessive quantifiers are not supported");
            atom = GExpr.Repeat(atom, min, max);
        }
        return atom;
    }

    private bool TryBraces(out int min, out int max)
    {
        min = max = 0;
        int close = _pattern.IndexOf('}', _at);
        if (close < 0) return false;
        string body = _pattern[(_at + 1)..close];
        string[] parts = body.Split(',');
        if (parts.Length > 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out min)) return false;
        if (parts.Length == 1) max = min;
        else if (parts[1].Length == 0) max = -1;
        else if (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out max)) return false;
        if (max >= 0 && max < min) throw Error($"the repetition {{{body}}} has its maximum below its minimum");
        if (Math.Max(min, max) > 10_000) throw Error($"the repetition {{{body}}} is too large (at most 10000)");
        _at = close + 1;
        return true;
    }

    private GExpr Atom()
    {
        char c = _pattern[_at];
        switch (c)
        {
            case '(':
                _at++;
                if (Peek('?'))
                {
                    _at++;
                    if (Peek(':')) _at++;
                    else if (Peek('<') && _at + 1 < _pattern.Length && _pattern[_at + 1] is not ('=' or '!') || Peek('P'))
                    {
                        if (Peek('P')) _at++;
                        int close = _pattern.IndexOf('>', _at);
                        if (close < 0) throw Error("unterminated group name");
                        _at = close + 1;
                    }
                    else throw Error($"the group construct (?{(_at < _pattern.Length ? _pattern[_at] : ' ')}…) (lookaround, flags or conditionals) is not supported");
                }
                var inner = Alternation();
                if (!Peek(')')) throw Error("missing ')'");
                _at++;
                return inner;
            case ')': throw Error("unbalanced ')'");
            case '[': return Chars(ClassSet());
            case '.':
                _at++;
                return Chars(CodePointSet.Any().Minus(CodePointSet.Of(('\n', '\n'))));
            case '\\': return Escape();
            case '*' or '+' or '?': throw Error($"'{c}' has nothing to repeat");
            case '{' when TryBracesAhead(): throw Error("'{' has nothing to repeat");
            case '^': throw Error("'^' is supported only at the start");
            default:
                int cp = CodePointAt(_at);
                _at += char.IsSurrogatePair(_pattern, _at) ? 2 : 1;
                return Literal(cp);
        }
    }

    private bool TryBracesAhead()
    {
        int saved = _at;
        bool ok = TryBraces(out _, out _);
        _at = saved;
        return ok;
    }

    private GExpr Escape()
    {
        _at++;
        if (_at >= _pattern.Length) throw Error("a trailing backslash");
        char c = _pattern[_at];
        if (ClassEscape(c) is { } set) { _at++; return Chars(set); }
        if (c is 'b' or 'B' or 'A' or 'Z' or 'z' or 'G') throw Error($"the anchor \\{c} is not supported");
        if (char.IsAsciiDigit(c) && c != '0') throw Error($"backreferences (\\{c}) are not supported");
        if (c is 'p' or 'P') throw Error("Unicode properties (\\p{…}) are not supported");
        return Literal(EscapedCodePoint());
    }

    /// <summary>The code point at <paramref name="at"/>; half a surrogate pair is an error, not an ArgumentException.</summary>
    private int CodePointAt(int at)
    {
        if (char.IsSurrogate(_pattern[at]) && !char.IsSurrogatePair(_pattern, at)) throw Error($"half a UTF-16 surrogate pair at position {at}");
        return char.ConvertToUtf32(_pattern, at);
    }

    /// <summary>The code point of a single-character escape at <see cref="_at"/> (just after the backslash).</summary>
    private int EscapedCodePoint()
    {
        if (_at >= _pattern.Length) throw Error("a trailing backslash");
        if (char.IsSurrogate(_pattern[_at]))
        {
            // An escaped character outside the BMP stands for itself.
            int codePoint = CodePointAt(_at);
            _at += 2;
            return codePoint;
        }
        char c = _pattern[_at++];
        switch (c)
        {
            case 't': return '\t';
            case 'n': return '\n';
            case 'r': return '\r';
            case 'f': return '\f';
            case 'v': return '\v';
            case '0': return 0;
            case 'x': return Hex(2);
            case 'u': return Hex(4);
            default:
                if (char.IsAsciiLetterOrDigit(c)) throw Error($"unknown escape \\{c}");
                return c;
        }
    }

    private int Hex(int digits)
    {
        if (_at + digits > _pattern.Length || !int.TryParse(_pattern.AsSpan(_at, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
            throw Error($"expected {digits} hexadecimal digits");
        _at += digits;
        return value;
    }

    private static CodePointSet? ClassEscape(char c) => c switch
    {
        'd' => Digits(),
        'D' => Digits().Complement(),
        'w' => Word(),
        'W' => Word().Complement(),
        's' => Space(),
        'S' => Space().Complement(),
        _ => null,
    };

    private static CodePointSet Digits() => CodePointSet.Of(('0', '9'));
    private static CodePointSet Word() => CodePointSet.Of(('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_'));
    private static CodePointSet Space() => CodePointSet.Of((' ', ' '), ('\t', '\r'));

    private CodePointSet ClassSet()
    {
        _at++;   // [
        bool negated = Peek('^');
        if (negated) _at++;
        var set = new CodePointSet();
        bool first = true;
        while (true)
        {
            if (_at >= _pattern.Length) throw Error("missing ']'");
            char c = _pattern[_at];
            if (c == ']' && !first) { _at++; break; }
            first = false;
            if (c == '[' && _at + 1 < _pattern.Length && _pattern[_at + 1] == ':') throw Error("POSIX classes ([:alpha:]) are not supported");
            int lo;
            if (c == '\\')
            {
                _at++;
                if (_at >= _pattern.Length) throw Error("a trailing backslash");
                if (ClassEscape(_pattern[_at]) is { } inner) { _at++; set.Add(inner); continue; }
                if (_pattern[_at] == 'b') { _at++; lo = '\b'; }
                else lo = EscapedCodePoint();
            }
            else
            {
                lo = CodePointAt(_at);
                _at += char.IsSurrogatePair(_pattern, _at) ? 2 : 1;
            }
            if (Peek('-') && _at + 1 < _pattern.Length && _pattern[_at + 1] != ']')
            {
                _at++;
                int hi;
                if (Peek('\\')) { _at++; hi = EscapedCodePoint(); }
                else
                {
                    hi = CodePointAt(_at);
                    _at += char.IsSurrogatePair(_pattern, _at) ? 2 : 1;
                }
                if (hi < lo) throw Error($"the class range {char.ConvertFromUtf32(lo)}-{char.ConvertFromUtf32(hi)} is reversed");
                set.Add(lo, hi);
            }
            else set.Add(lo, lo);
        }
        var result = negated ? set.Complement() : set;
        if (result.IsEmpty) throw Error("the character class matches nothing");
        return result;
    }

    private GExpr Literal(int codePoint) => Chars(CodePointSet.Of((codePoint, codePoint)));

    /// <summary>One character of a set; in JSON-string mode, as it appears inside a JSON string literal.</summary>
    private GExpr Chars(CodePointSet set) => _jsonString ? JsonStringChars(set) : GExpr.Chars(set);

    /// <summary>
    /// One character from a set as JSON writes it inside a string: characters that need no escape as UTF-8, and
    /// quote, backslash and control characters as their escapes (\" \\ \n … or \u00XX).
    /// </summary>
    public static GExpr JsonStringChars(CodePointSet set)
    {
        var needsEscape = CodePointSet.Of((0, 0x1F), ('"', '"'), ('\\', '\\'));
        var plain = set.Minus(needsEscape);
        var alternatives = new List<GExpr>();
        if (!plain.IsEmpty) alternatives.Add(GExpr.Chars(plain));
        foreach (var (lo, hi) in set.Minus(plain).Ranges)
            for (int c = lo; c <= hi; c++) alternatives.Add(JsonEscape(c));
        return GExpr.Alt([.. alternatives]);
    }

    /// <summary>The escapes a JSON writer may use for a character that must be escaped (the short form where JSON has one, and \u00XX).</summary>
    private static GExpr JsonEscape(int c)
    {
        string? shortForm = c switch { '"' => "\\\"", '\\' => "\\\\", '\b' => "\\b", '\f' => "\\f", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", _ => null };
        var unicode = GExpr.Seq(GExpr.Literal("\\u00"), HexDigit(c >> 4), HexDigit(c & 15));
        return shortForm is null ? unicode : GExpr.Alt(GExpr.Literal(shortForm), unicode);
    }

    private static GExpr HexDigit(int value)
    {
        string lower = value.ToString("x", CultureInfo.InvariantCulture), upper = value.ToString("X", CultureInfo.InvariantCulture);
        return lower == upper ? GExpr.Literal(lower) : GExpr.Alt(GExpr.Literal(lower), GExpr.Literal(upper));
    }

    /// <summary>A JSON string literal's text for a value, escaped as the grammar's canonical form (raw UTF-8 except what must be escaped).</summary>
    public static string JsonQuote(string value)
    {
        var builder = new StringBuilder();
        Tokenization.Templates.TemplateJson.AppendString(builder, value, ensureAscii: false);
        return builder.ToString();
    }
}

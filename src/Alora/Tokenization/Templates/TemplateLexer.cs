using System.Globalization;
using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>
/// Splits a template into text and tag tokens the way Jinja2 does when configured as transformers
/// configures it: trim_blocks (drop the first newline after a block or comment tag), lstrip_blocks (drop
/// spaces and tabs before a block or comment tag that starts its line), <c>-</c> / <c>+</c> whitespace
/// control, and one trailing newline of the source removed (keep_trailing_newline=False).
/// </summary>
internal sealed class TemplateLexer
{
    private readonly string _source;
    private readonly SourcePositions _positions;
    private readonly List<TemplateToken> _tokens = [];
    private int _pos;
    // Jinja2 lets lstrip_blocks strip text that has no newline only when the previous tag ended a line.
    private bool _lineStarting = true;

    private TemplateLexer(string source, SourcePositions positions)
    {
        _source = source;
        _positions = positions;
    }

    /// <summary>Normalizes line breaks to \n and removes one trailing newline, as Jinja2's lexer does.</summary>
    public static string NormalizeSource(string source)
    {
        string normalized = source.Contains('\r', StringComparison.Ordinal)
            ? source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n')
            : source;
        return normalized.EndsWith('\n') ? normalized[..^1] : normalized;
    }

    public static List<TemplateToken> Tokenize(string normalizedSource, SourcePositions positions)
    {
        var lexer = new TemplateLexer(normalizedSource, positions);
        lexer.Run();
        return lexer._tokens;
    }

    private void Run()
    {
        while (_pos < _source.Length)
        {
            int tagStart = FindTagStart(_pos);
            if (tagStart < 0)
            {
                EmitData(_source[_pos..], _pos);
                _pos = _source.Length;
                break;
            }

            char kind = _source[tagStart + 1];  // '{', '%' or '#'
            char sign = tagStart + 2 < _source.Length ? _source[tagStart + 2] : '\0';
            string text = _source[_pos..tagStart];
            text = ApplyLeadingWhitespaceControl(text, kind, sign);
            EmitData(text, _pos);

            int afterBegin = tagStart + 2 + (sign is '-' or '+' ? 1 : 0);
            if (kind == '#')
                LexComment(tagStart, afterBegin);
            else if (kind == '%' && TryLexRaw(tagStart, afterBegin))
                continue;
            else
                LexTag(kind, tagStart, afterBegin);
        }
        _tokens.Add(new TemplateToken(TokenKind.EndOfTemplate, "", _source.Length));
    }

    private int FindTagStart(int from)
    {
        int i = from;
        while (true)
        {
            i = _source.IndexOf('{', i);
            if (i < 0 || i + 1 >= _source.Length) return -1;
            char next = _source[i + 1];
            if (next is '{' or '%' or '#') return i;
            i++;
        }
    }

    private string ApplyLeadingWhitespaceControl(string text, char kind, char sign)
    {
        if (sign == '-') return text.TrimEnd();
        if (sign == '+' || kind == '{') return text;
        // lstrip_blocks: strip spaces/tabs between the line start and a block or comment tag.
        int lineStart = text.LastIndexOf('\n') + 1;
        if (lineStart > 0 || _lineStarting)
        {
            if (lineStart < text.Length && IsAllWhitespace(text, lineStart))
                return text[..lineStart];
        }
        return text;
    }

    private static bool IsAllWhitespace(string text, int from)
    {
        for (int i = from; i < text.Length; i++)
            if (!char.IsWhiteSpace(text[i])) return false;
        return true;
    }

    private void EmitData(string text, int offset)
    {
        if (text.Length > 0) _tokens.Add(new TemplateToken(TokenKind.Data, text, offset));
    }

    /// <summary>Consumes a block or comment end: <c>-%}</c> eats all following whitespace, <c>+%}</c>
    /// nothing, plain <c>%}</c> one newline (trim_blocks).</summary>
    private void ConsumeEnd(int markerStart, int markerLength, char sign, bool trimBlocks)
    {
        int end = markerStart + markerLength;
        if (sign == '-')
        {
            while (end < _source.Length && char.IsWhiteSpace(_source[end])) end++;
        }
        else if (sign != '+' && trimBlocks && end < _source.Length && _source[end] == '\n')
        {
            end++;
        }
        _lineStarting = end > 0 && _source[end - 1] == '\n';
        _pos = end;
    }

    private void LexComment(int tagStart, int afterBegin)
    {
        int close = _source.IndexOf("#}", afterBegin, StringComparison.Ordinal);
        if (close < 0) throw _positions.SyntaxError("missing end of comment tag '#}'", tagStart);
        char sign = close > afterBegin && _source[close - 1] is '-' or '+' ? _source[close - 1] : '\0';
        int markerStart = sign == '\0' ? close : close - 1;
        ConsumeEnd(markerStart, close + 2 - markerStart, sign, trimBlocks: true);
    }

    /// <summary>{% raw %}...{% endraw %}: the body is literal text.</summary>
    private bool TryLexRaw(int tagStart, int afterBegin)
    {
        int i = SkipSpaces(afterBegin);
        if (!MatchWord(i, "raw")) return false;
        i = SkipSpaces(i + 3);
        char beginEndSign = '\0';
        if (i < _source.Length && _source[i] == '-') { beginEndSign = '-'; i++; }
        if (!_source.AsSpan(i).StartsWith("%}")) return false;
        ConsumeEnd(beginEndSign == '-' ? i - 1 : i, beginEndSign == '-' ? 3 : 2, beginEndSign, trimBlocks: false);

        int bodyStart = _pos;
        int search = bodyStart;
        while (true)
        {
            int candidate = _source.IndexOf("{%", search, StringComparison.Ordinal);
            if (candidate < 0) throw _positions.SyntaxError("missing '{% endraw %}' for this raw block", tagStart);
            char sign = candidate + 2 < _source.Length ? _source[candidate + 2] : '\0';
            int j = SkipSpaces(candidate + 2 + (sign is '-' or '+' ? 1 : 0));
            if (MatchWord(j, "endraw"))
            {
                j = SkipSpaces(j + 6);
                char endSign = '\0';
                if (j < _source.Length && _source[j] is '-' or '+') { endSign = _source[j]; j++; }
                if (_source.AsSpan(j).StartsWith("%}"))
                {
                    string body = ApplyLeadingWhitespaceControl(_source[bodyStart..candidate], '%', sign);
                    EmitData(body, bodyStart);
                    ConsumeEnd(endSign == '\0' ? j : j - 1, endSign == '\0' ? 2 : 3, endSign, trimBlocks: true);
                    return true;
                }
            }
            search = candidate + 2;
        }
    }

    private int SkipSpaces(int i)
    {
        while (i < _source.Length && char.IsWhiteSpace(_source[i])) i++;
        return i;
    }

    private bool MatchWord(int i, string word)
        => _source.AsSpan(i).StartsWith(word) &&
           (i + word.Length >= _source.Length || !IsNameChar(_source[i + word.Length]));

    private void LexTag(char kind, int tagStart, int afterBegin)
    {
        bool isBlock = kind == '%';
        _tokens.Add(new TemplateToken(isBlock ? TokenKind.BlockBegin : TokenKind.VariableBegin, isBlock ? "{%" : "{{", tagStart));
        _pos = afterBegin;
        var brackets = new Stack<(char Close, int Offset)>();
        string closeMarker = isBlock ? "%}" : "}}";
        while (true)
        {
            while (_pos < _source.Length && char.IsWhiteSpace(_source[_pos])) _pos++;
            if (_pos >= _source.Length)
                throw _positions.SyntaxError($"unexpected end of template, expected '{closeMarker}' to close the tag opened here", tagStart);

            if (brackets.Count == 0)
            {
                char c = _source[_pos];
                bool signed = c is '-' or '+' && _source.AsSpan(_pos + 1).StartsWith(closeMarker)
                              && (c == '-' || isBlock);
                if (signed || _source.AsSpan(_pos).StartsWith(closeMarker))
                {
                    _tokens.Add(new TemplateToken(isBlock ? TokenKind.BlockEnd : TokenKind.VariableEnd, closeMarker, _pos));
                    ConsumeEnd(_pos, signed ? 3 : 2, signed ? c : '\0', trimBlocks: isBlock);
                    return;
                }
            }
            LexExpressionToken(brackets);
        }
    }

    private static bool IsNameStart(char c) => c == '_' || char.IsLetter(c);
    private static bool IsNameChar(char c) => c == '_' || char.IsLetterOrDigit(c);

    private static readonly string[] Operators =
        ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}",
         ">", "<", "=", ".", ":", "|", ",", ";"];

    private void LexExpressionToken(Stack<(char Close, int Offset)> brackets)
    {
        int start = _pos;
        char c = _source[_pos];
        if (char.IsAsciiDigit(c))
        {
            LexNumber();
            return;
        }
        if (IsNameStart(c))
        {
            while (_pos < _source.Length && IsNameChar(_source[_pos])) _pos++;
            _tokens.Add(new TemplateToken(TokenKind.Name, _source[start.._pos], start));
            return;
        }
        if (c is '\'' or '"')
        {
            _tokens.Add(new TemplateToken(TokenKind.String, LexString(c), start));
            return;
        }
        foreach (string op in Operators)
        {
            if (!_source.AsSpan(_pos).StartsWith(op)) continue;
            if (op is "(" or "[" or "{")
            {
                brackets.Push((op switch { "(" => ')', "[" => ']', _ => '}' }, _pos));
            }
            else if (op is ")" or "]" or "}")
            {
                if (brackets.Count == 0) throw _positions.SyntaxError($"unexpected '{op}'", _pos);
                var (expected, _) = brackets.Pop();
                if (expected != op[0]) throw _positions.SyntaxError($"unexpected '{op}', expected '{expected}'", _pos);
            }
            _pos += op.Length;
            _tokens.Add(new TemplateToken(TokenKind.Operator, op, start));
            return;
        }
        throw _positions.SyntaxError($"unexpected character '{c}'", _pos);
    }

    private void LexNumber()
    {
        int start = _pos;
        // Prefixed integers: 0x.., 0o.., 0b..
        if (_source[_pos] == '0' && _pos + 1 < _source.Length && "xXoObB".Contains(_source[_pos + 1], StringComparison.Ordinal))
        {
            int radix = char.ToLowerInvariant(_source[_pos + 1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            _pos += 2;
            int digitsStart = _pos;
            while (_pos < _source.Length && (Uri.IsHexDigit(_source[_pos]) || _source[_pos] == '_')) _pos++;
            string digits = _source[digitsStart.._pos].Replace("_", "", StringComparison.Ordinal);
            if (digits.Length == 0) throw _positions.SyntaxError("invalid integer literal", start);
            long value = 0;
            foreach (char d in digits)
            {
                int digit = Convert.ToInt32(d.ToString(), 16);
                if (digit >= radix) throw _positions.SyntaxError($"invalid digit '{d}' in base-{radix} literal", start);
                value = checked(value * radix + digit);
            }
            _tokens.Add(new TemplateToken(TokenKind.Integer, value.ToString(CultureInfo.InvariantCulture), start));
            return;
        }
        SkipDigits();
        bool isFloat = false;
        if (_pos + 1 < _source.Length && _source[_pos] == '.' && char.IsAsciiDigit(_source[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            SkipDigits();
        }
        if (_pos < _source.Length && _source[_pos] is 'e' or 'E')
        {
            int save = _pos;
            _pos++;
            if (_pos < _source.Length && _source[_pos] is '+' or '-') _pos++;
            if (_pos < _source.Length && char.IsAsciiDigit(_source[_pos]))
            {
                isFloat = true;
                SkipDigits();
            }
            else
            {
                _pos = save;
            }
        }
        string text = _source[start.._pos].Replace("_", "", StringComparison.Ordinal);
        _tokens.Add(new TemplateToken(isFloat ? TokenKind.Float : TokenKind.Integer, text, start));
    }

    private void SkipDigits()
    {
        while (_pos < _source.Length && (char.IsAsciiDigit(_source[_pos]) ||
               (_source[_pos] == '_' && _pos + 1 < _source.Length && char.IsAsciiDigit(_source[_pos + 1]))))
            _pos++;
    }

    /// <summary>Reads a quoted string literal and decodes Python-style escapes.</summary>
    private string LexString(char quote)
    {
        int start = _pos;
        _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _source.Length) throw _positions.SyntaxError("unterminated string literal", start);
            char c = _source[_pos];
            if (c == quote)
            {
                _pos++;
                return sb.ToString();
            }
            if (c != '\\')
            {
                sb.Append(c);
                _pos++;
                continue;
            }
            if (_pos + 1 >= _source.Length) throw _positions.SyntaxError("unterminated string literal", start);
            char e = _source[_pos + 1];
            _pos += 2;
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case '\n': break;  // backslash-newline continues the line
                case 'x': AppendCodePoint(sb, ReadHex(2, start)); break;
                case 'u': AppendCodePoint(sb, ReadHex(4, start)); break;
                case 'U': AppendCodePoint(sb, ReadHex(8, start)); break;
                case >= '0' and <= '7':
                    {
                        int value = e - '0';
                        for (int k = 0; k < 2 && _pos < _source.Length && _source[_pos] is >= '0' and <= '7'; k++)
                            value = value * 8 + (_source[_pos++] - '0');
                        AppendCodePoint(sb, value);
                        break;
                    }
                default:
                    // Python keeps unknown escapes verbatim.
                    sb.Append('\\').Append(e);
                    break;
            }
        }
    }

    private int ReadHex(int count, int literalStart)
    {
        if (_pos + count > _source.Length)
            throw _positions.SyntaxError($"truncated \\x/\\u escape in string literal (expected {count} hex digits)", literalStart);
        string hex = _source.Substring(_pos, count);
        if (!int.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int value))
            throw _positions.SyntaxError($"invalid escape in string literal: expected {count} hex digits, found '{hex}'", literalStart);
        _pos += count;
        return value;
    }

    private static void AppendCodePoint(StringBuilder sb, int codePoint)
    {
        if (codePoint is >= 0xD800 and <= 0xDFFF) sb.Append((char)codePoint);
        else sb.Append(char.ConvertFromUtf32(codePoint));
    }
}

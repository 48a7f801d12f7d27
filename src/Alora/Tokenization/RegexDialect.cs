using System.Text;

namespace Alora.Tokenization;

/// <summary>
/// Rewrites the Oniguruma regex syntax that tokenizer.json patterns may use (tokenizers compiles them with
/// Oniguruma) into .NET syntax: possessive quantifiers (<c>X++</c>, <c>X*+</c>, <c>X?+</c>, <c>X{1,3}+</c>,
/// as in tiktoken-derived patterns) become atomic groups (<c>(?&gt;X+)</c>), and <c>\h</c>/<c>\H</c> become
/// hex-digit classes. Everything else is passed through unchanged.
/// </summary>
internal static class RegexDialect
{
    public static string ToDotNet(string pattern)
    {
        if (!pattern.Contains('+', StringComparison.Ordinal) && !pattern.Contains("\\h", StringComparison.OrdinalIgnoreCase)) return pattern;
        var output = new StringBuilder(pattern.Length + 16);
        int atomStart = -1; // where the last complete atom starts in output, or -1
        int i = 0;
        while (i < pattern.Length)
        {
            char c = pattern[i];
            if (IsQuantifierStart(pattern, i) && atomStart >= 0)
            {
                int end = QuantifierEnd(pattern, i);
                string quantifier = pattern[i..end];
                if (end < pattern.Length && pattern[end] == '+')
                {
                    // Possessive: the atom and its quantifier never give characters back.
                    string atom = output.ToString(atomStart, output.Length - atomStart);
                    output.Length = atomStart;
                    output.Append("(?>").Append(atom).Append(quantifier).Append(')');
                    end++;
                }
                else
                {
                    output.Append(quantifier);
                    if (end < pattern.Length && pattern[end] == '?') { output.Append('?'); end++; } // lazy
                }
                atomStart = -1;
                i = end;
                continue;
            }
            atomStart = output.Length;
            int next = AtomEnd(pattern, i);
            string text = pattern[i..next];
            if (c == '(' && text.Length >= 2 && text[^1] == ')')
            {
                // A group: keep its opening ("(", "(?:", "(?i:", "(?<name>", lookarounds), translate its body.
                int bodyStart = GroupBodyStart(text);
                output.Append(text, 0, bodyStart).Append(ToDotNet(text[bodyStart..^1])).Append(')');
            }
            else
            {
                output.Append(text switch
                {
                    "\\h" => "[0-9A-Fa-f]",
                    "\\H" => "[^0-9A-Fa-f]",
                    _ => text,
                });
            }
            if (c == '|') atomStart = -1; // alternation is not an atom a quantifier could follow
            i = next;
        }
        return output.ToString();
    }

    /// <summary>Length of a group's opening: "(" plus "?:", "?i:", "?=", "?!", "?&gt;", "?&lt;=", "?&lt;!" or "?&lt;name&gt;".</summary>
    private static int GroupBodyStart(string group)
    {
        if (group.Length < 3 || group[1] != '?') return 1;
        char kind = group[2];
        if (kind is '=' or '!' or '>' or ':') return 3;
        if (kind == '<')
        {
            if (group.Length > 3 && group[3] is '=' or '!') return 4;
            int close = group.IndexOf('>', 3);
            return close < 0 ? 1 : close + 1;
        }
        // Inline options: "(?i:" or "(?i)"/"(?-i)".
        int j = 2;
        while (j < group.Length && (char.IsAsciiLetter(group[j]) || group[j] == '-')) j++;
        return j < group.Length && group[j] == ':' ? j + 1 : group.Length - 1;
    }

    private static bool IsQuantifierStart(string p, int i) =>
        p[i] is '*' or '+' or '?' || (p[i] == '{' && QuantifierEnd(p, i) > i);

    private static int QuantifierEnd(string p, int i)
    {
        if (p[i] != '{') return i + 1;
        int j = i + 1;
        while (j < p.Length && (char.IsAsciiDigit(p[j]) || p[j] == ',')) j++;
        return j < p.Length && p[j] == '}' && j > i + 1 ? j + 1 : i; // "{" not followed by a count is a literal
    }

    /// <summary>End of the atom starting at i: an escape, a character class, a whole group, or one character.</summary>
    private static int AtomEnd(string p, int i)
    {
        char c = p[i];
        if (c == '\\') return EscapeEnd(p, i);
        if (c == '[') return ClassEnd(p, i);
        if (c == '(') return GroupEnd(p, i);
        return i + 1;
    }

    private static int EscapeEnd(string p, int i)
    {
        if (i + 1 >= p.Length) return p.Length;
        char e = p[i + 1];
        if ((e is 'p' or 'P') && i + 2 < p.Length && p[i + 2] == '{')
        {
            int close = p.IndexOf('}', i + 3);
            return close < 0 ? p.Length : close + 1;
        }
        if (e == 'u' && i + 5 < p.Length) return i + 6;
        if (e == 'x' && i + 3 < p.Length) return i + 4;
        return i + 2;
    }

    private static int ClassEnd(string p, int i)
    {
        int j = i + 1;
        if (j < p.Length && p[j] == '^') j++;
        if (j < p.Length && p[j] == ']') j++; // a leading ']' is a literal
        int depth = 1;
        while (j < p.Length && depth > 0)
        {
            if (p[j] == '\\') { j = EscapeEnd(p, j); continue; }
            if (p[j] == '[') depth++;
            else if (p[j] == ']') depth--;
            j++;
        }
        return j;
    }

    private static int GroupEnd(string p, int i)
    {
        int depth = 0;
        int j = i;
        while (j < p.Length)
        {
            char c = p[j];
            if (c == '\\') { j = EscapeEnd(p, j); continue; }
            if (c == '[') { j = ClassEnd(p, j); continue; }
            if (c == '(') depth++;
            else if (c == ')' && --depth == 0) return j + 1;
            j++;
        }
        return p.Length;
    }
}

using System.Text.RegularExpressions;

namespace Alora.Intrinsics;

/// <summary>
/// Splits text into sentences the way granite-common's input processing does, which calls NLTK's
/// <c>PunktSentenceTokenizer()</c> without training data (so with no learned abbreviations, collocations or
/// orthographic statistics). What that leaves of Punkt, and what this class does:
/// <list type="bullet">
/// <item>a candidate break is a run of <c>.</c>, <c>?</c> or <c>!</c> followed by whitespace and more text (text
///   that ends without whitespace after the mark is not split; the end of the text is not a break);</item>
/// <item>closing quotes and brackets right after the mark (<c>"</c> <c>'</c> <c>)</c> <c>]</c> <c>}</c>) stay with the sentence they close;</item>
/// <item><c>?</c> and <c>!</c> always break;</item>
/// <item>a word ending in a period breaks, except: an ellipsis (two or more periods); an initial (one letter and
///   the period, as in "J. Smith"), which never breaks; a number ("3." in "page 3. then"), which does not break
///   before a word that starts lower case or with punctuation;</item>
/// <item>sentences keep their text exactly, without the whitespace between them.</item>
/// </list>
/// </summary>
public static partial class SentenceSplitter
{
    /// <summary>The sentences of <paramref name="text"/> as (start, length) spans into it.</summary>
    public static List<(int Start, int Length)> Spans(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var spans = new List<(int, int)>();
        int start = SkipSpace(text, 0);
        int i = start;
        while (i < text.Length)
        {
            char c = text[i];
            if (c is not ('.' or '?' or '!')) { i++; continue; }
            int runStart = i;
            while (i < text.Length && text[i] is '.' or '?' or '!') i++;
            int runEnd = i;
            int close = i;
            while (close < text.Length && text[close] is '"' or '\'' or ')' or ']' or '}' or '\u201d' or '\u2019') close++;
            if (close >= text.Length || !char.IsWhiteSpace(text[close])) { i = Math.Max(i, close); continue; }
            int next = SkipSpace(text, close);
            if (next >= text.Length) break;
            if (IsBreak(text, runStart, runEnd, next))
            {
                spans.Add((start, close - start));
                start = next;
            }
            i = next;
        }
        if (start < text.Length)
        {
            int end = text.Length;
            while (end > start && char.IsWhiteSpace(text[end - 1])) end--;
            spans.Add((start, end - start));
        }
        return spans;
    }

    /// <summary>The sentences of <paramref name="text"/>.</summary>
    public static List<string> Split(string text) => Spans(text).Select(s => text.Substring(s.Start, s.Length)).ToList();

    private static int SkipSpace(string text, int i)
    {
        while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
        return i;
    }

    private static bool IsBreak(string text, int runStart, int runEnd, int next)
    {
        string run = text[runStart..runEnd];
        if (run.Contains('?') || run.Contains('!')) return true;
        if (run.Length >= 2) return false;   // an ellipsis
        int wordStart = runStart;
        while (wordStart > 0 && !char.IsWhiteSpace(text[wordStart - 1])) wordStart--;
        string word = text[wordStart..runStart].TrimStart('"', '\'', '(', '[', '{', '\u201c', '\u2018');
        char following = text[next];
        bool nextStartsLowerOrPunct = char.IsLower(following) || ";:,.!?".Contains(following);
        if (word.Length == 1 && char.IsLetter(word[0])) return false;          // an initial: never a break untrained
        if (NumberPattern().IsMatch(word + ".") && nextStartsLowerOrPunct) return false;   // "3. then": an ordinal
        return true;
    }

    [GeneratedRegex(@"^-?[\.,]?\d[\d,\.-]*\.?$", RegexOptions.CultureInvariant)]
    private static partial Regex NumberPattern();
}

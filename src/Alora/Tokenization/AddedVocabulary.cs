namespace Alora.Tokenization;

/// <summary>A token matched in the text before the model runs (tokenizer.json "added_tokens").</summary>
public sealed record AddedToken(int Id, string Content, bool Special, bool Normalized = false, bool LStrip = false, bool RStrip = false, bool SingleWord = false);

/// <summary>A run of text, or one added token found in it.</summary>
internal readonly record struct Section(string Text, int TokenId, bool StartsText)
{
    public bool IsToken => TokenId >= 0;
}

/// <summary>
/// Finds added tokens in text, leftmost first and longest on ties, honouring lstrip/rstrip (the
/// token swallows whitespace on that side) and single_word (only matched between non-word characters).
/// Tokens marked normalized are looked for in the normalized text, in their normalized form.
/// </summary>
internal sealed class AddedVocabulary
{
    private readonly TokenMatcher _raw;
    private readonly TokenMatcher _normalized;
    private readonly Normalizer? _normalizer;

    public AddedVocabulary(IReadOnlyList<AddedToken> tokens, Normalizer? normalizer)
    {
        Tokens = tokens;
        _normalizer = normalizer;
        var raw = new List<(string, AddedToken)>();
        var normalized = new List<(string, AddedToken)>();
        foreach (var token in tokens)
        {
            if (token.Content.Length == 0) continue;
            if (token.Normalized && normalizer != null) normalized.Add((normalizer.Normalize(token.Content), token));
            else if (token.Normalized) normalized.Add((token.Content, token));
            else raw.Add((token.Content, token));
        }
        _raw = new TokenMatcher(raw);
        _normalized = new TokenMatcher(normalized);
    }

    public IReadOnlyList<AddedToken> Tokens { get; }

    /// <summary>Splits text into added tokens and normalized runs of plain text.</summary>
    public List<Section> SplitAndNormalize(string text)
    {
        var sections = new List<Section>();
        foreach (var rawSection in _raw.Split(text, startsText: true))
        {
            if (rawSection.IsToken) { sections.Add(rawSection); continue; }
            string normalized = _normalizer?.Normalize(rawSection.Text) ?? rawSection.Text;
            sections.AddRange(_normalized.Split(normalized, rawSection.StartsText));
        }
        return sections;
    }

    private sealed class TokenMatcher
    {
        // Candidates by first character, longest first so the first hit is the longest match.
        private readonly Dictionary<char, (string Pattern, AddedToken Token)[]> _byFirstChar;
        private readonly System.Buffers.SearchValues<char> _firstChars;

        public TokenMatcher(List<(string Pattern, AddedToken Token)> patterns)
        {
            _byFirstChar = patterns
                .Where(p => p.Pattern.Length > 0)
                .GroupBy(p => p.Pattern[0])
                .ToDictionary(g => g.Key, g => g.OrderByDescending(p => p.Pattern.Length).ToArray());
            _firstChars = System.Buffers.SearchValues.Create(_byFirstChar.Keys.ToArray());
        }

        public IEnumerable<Section> Split(string text, bool startsText)
        {
            if (text.Length == 0) yield break;
            if (_byFirstChar.Count == 0)
            {
                yield return new Section(text, -1, startsText);
                yield break;
            }
            int emitted = 0; // end of the text already handed out
            int position = 0;
            while (position < text.Length)
            {
                // Jump to the next character that can start a token.
                int skip = text.AsSpan(position).IndexOfAny(_firstChars);
                if (skip < 0) break;
                position += skip;
                if (!TryMatchAt(text, position, out var pattern, out var token))
                {
                    position++;
                    continue;
                }
                int start = position, stop = position + pattern.Length;
                position = stop;
                if (token.SingleWord)
                {
                    bool wordBefore = start > 0 && IsWordChar(text, start - 1, before: true);
                    bool wordAfter = stop < text.Length && IsWordChar(text, stop, before: false);
                    if (wordBefore || wordAfter) continue;
                }
                if (token.LStrip)
                {
                    int newStart = start;
                    while (newStart > emitted && char.IsWhiteSpace(text[newStart - 1])) newStart--;
                    start = newStart;
                }
                if (token.RStrip)
                {
                    while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
                    position = stop;
                }
                if (start > emitted) yield return new Section(text[emitted..start], -1, startsText && emitted == 0);
                yield return new Section(text[start..stop], token.Id, startsText && start == 0);
                emitted = stop;
            }
            if (emitted < text.Length) yield return new Section(text[emitted..], -1, startsText && emitted == 0);
        }

        private bool TryMatchAt(string text, int position, out string pattern, out AddedToken token)
        {
            if (_byFirstChar.TryGetValue(text[position], out var candidates))
            {
                foreach (var candidate in candidates)
                {
                    if (text.AsSpan(position).StartsWith(candidate.Pattern, StringComparison.Ordinal))
                    {
                        (pattern, token) = candidate;
                        return true;
                    }
                }
            }
            pattern = ""; token = null!;
            return false;
        }

        // tokenizers tests single_word boundaries with the regex \w: letters, marks, digits, letter numbers
        // and connector punctuation such as '_'.
        private static bool IsWordChar(string text, int index, bool before)
        {
            char c = text[index];
            int cp = c;
            if (char.IsSurrogate(c))
            {
                cp = before
                    ? (index > 0 && char.IsSurrogatePair(text[index - 1], c) ? char.ConvertToUtf32(text[index - 1], c) : -1)
                    : (index + 1 < text.Length && char.IsSurrogatePair(c, text[index + 1]) ? char.ConvertToUtf32(c, text[index + 1]) : -1);
                if (cp < 0) return false;
            }
            return System.Globalization.CharUnicodeInfo.GetUnicodeCategory(cp) is
                System.Globalization.UnicodeCategory.UppercaseLetter or System.Globalization.UnicodeCategory.LowercaseLetter
                or System.Globalization.UnicodeCategory.TitlecaseLetter or System.Globalization.UnicodeCategory.ModifierLetter
                or System.Globalization.UnicodeCategory.OtherLetter or System.Globalization.UnicodeCategory.NonSpacingMark
                or System.Globalization.UnicodeCategory.SpacingCombiningMark or System.Globalization.UnicodeCategory.EnclosingMark
                or System.Globalization.UnicodeCategory.DecimalDigitNumber or System.Globalization.UnicodeCategory.LetterNumber
                or System.Globalization.UnicodeCategory.ConnectorPunctuation;
        }
    }
}

using System.Text;
using System.Text.RegularExpressions;

namespace Alora.Tokenization;

/// <summary>Rewrites text before it is split and tokenized (tokenizers' normalizer).</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);
}

/// <summary>Unicode normalization forms (NFC, NFD, NFKC, NFKD), computed from Alora's own tables.</summary>
internal sealed class UnicodeFormNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalization.Normalize(text, form);
}

/// <summary>Puts a fixed string in front of any non-empty text (SentencePiece's dummy prefix "▁").</summary>
internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

/// <summary>Replaces every occurrence of a literal string or a regex match.</summary>
internal sealed class ReplaceNormalizer : Normalizer
{
    private readonly string? _literal;
    private readonly Regex? _regex;
    private readonly string _content;

    public ReplaceNormalizer(string? literal, Regex? regex, string content)
    {
        _literal = literal;
        _regex = regex;
        _content = content;
    }

    public override string Normalize(string text) => Apply(text);

    public string Apply(string text)
    {
        if (_literal != null) return _literal.Length == 0 ? text : text.Replace(_literal, _content, StringComparison.Ordinal);
        return _regex!.Replace(text, _content.Replace("$", "$$", StringComparison.Ordinal));
    }
}

/// <summary>
/// Lower-cases text per character as Rust's char::to_lowercase: the simple mapping, except 'İ' (U+0130),
/// whose full lowercase is "i̇" (two characters). Culture-independent.
/// </summary>
internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        string lower = text.ToLowerInvariant();
        return text.Contains('\u0130', StringComparison.Ordinal) ? ReplaceDottedCapitalI(text, lower) : lower;
    }

    // ToLowerInvariant maps U+0130 to 'i' (or leaves it); rebuild those positions as "i\u0307".
    private static string ReplaceDottedCapitalI(string original, string lower)
    {
        var builder = new StringBuilder(lower.Length + 4);
        for (int i = 0; i < original.Length; i++) builder.Append(original[i] == '\u0130' ? "i\u0307" : lower[i].ToString());
        return builder.ToString();
    }
}

/// <summary>Removes whitespace at the start and/or the end.</summary>
internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => (left, right) switch
    {
        (true, true) => text.Trim(),
        (true, false) => text.TrimStart(),
        (false, true) => text.TrimEnd(),
        _ => text,
    };
}

/// <summary>Removes combining marks (category Mn), as tokenizers' StripAccents; usually after NFD/NFKD.</summary>
internal sealed class StripAccentsNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        var builder = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (System.Globalization.CharUnicodeInfo.GetUnicodeCategory(text, i) == System.Globalization.UnicodeCategory.NonSpacingMark)
            {
                if (char.IsSurrogatePair(text, i)) i++;
                continue;
            }
            builder.Append(text[i]);
        }
        return builder.ToString();
    }
}

/// <summary>Applies normalizers one after the other.</summary>
internal sealed class SequenceNormalizer(IReadOnlyList<Normalizer> steps) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var step in steps) text = step.Normalize(text);
        return text;
    }
}

using System.Text.RegularExpressions;

namespace Alora.Tokenization;

/// <summary>
/// Cuts normalized text into the pieces the model tokenizes one by one (tokenizers' pre_tokenizer).
/// </summary>
internal abstract class PreTokenizer
{
    /// <summary>
    /// Replaces <paramref name="pieces"/> by their subdivision. <paramref name="firstPieceStartsText"/> tells
    /// whether pieces[0] begins at the start of the whole input (Metaspace's prepend_scheme "first" needs it).
    /// </summary>
    public abstract void PreTokenize(List<Piece> pieces, bool firstPieceStartsText);

    /// <summary>Runs <paramref name="split"/> over every piece and swaps the result in.</summary>
    protected static void SplitEach(List<Piece> pieces, bool firstPieceStartsText, Action<Piece, bool, List<Piece>> split)
    {
        var output = new List<Piece>(pieces.Count * 2);
        for (int i = 0; i < pieces.Count; i++) split(pieces[i], i == 0 && firstPieceStartsText, output);
        pieces.Clear();
        pieces.AddRange(output);
    }

    /// <summary>Runs of regex matches and the gaps between them, covering the whole piece.</summary>
    protected static List<(int Start, int Length, bool IsDelimiter)> RegexRuns(Regex regex, Piece piece, bool invert)
    {
        var runs = new List<(int, int, bool)>();
        int previousEnd = 0;
        foreach (var match in regex.EnumerateMatches(piece.Span))
        {
            if (match.Length == 0) continue;
            if (match.Index > previousEnd) runs.Add((previousEnd, match.Index - previousEnd, invert));
            runs.Add((match.Index, match.Length, !invert));
            previousEnd = match.Index + match.Length;
        }
        if (previousEnd < piece.Length) runs.Add((previousEnd, piece.Length - previousEnd, invert));
        return runs;
    }
}

/// <summary>
/// GPT-2's ByteLevel pre-tokenizer: optional leading space, the GPT-2 regex split, then every byte
/// mapped to its printable character. The byte mapping is left to the model stage when this is the
/// last pre-tokenizer (<see cref="MapsBytes"/> false), so the BPE cache can be probed without allocating.
/// </summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    /// <summary>GPT-2's split pattern, as tokenizers' ByteLevel pre-tokenizer uses it.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Regex Gpt2Regex = new(Gpt2Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    public bool AddPrefixSpace { get; } = addPrefixSpace;
    public bool UseRegex { get; } = useRegex;

    /// <summary>False when the tokenizer maps bytes itself right before the model.</summary>
    public bool MapsBytes { get; set; } = true;

    public override void PreTokenize(List<Piece> pieces, bool firstPieceStartsText) => SplitEach(pieces, firstPieceStartsText, (piece, _, output) =>
    {
        if (AddPrefixSpace && (piece.Length == 0 || piece.Span[0] != ' ')) piece = Piece.Whole(" " + piece.ToString());
        if (!UseRegex)
        {
            Add(piece, output);
            return;
        }
        foreach (var match in Gpt2Regex.EnumerateMatches(piece.Span))
            if (match.Length > 0) Add(piece.Slice(match.Index, match.Length), output);
    });

    private void Add(Piece piece, List<Piece> output)
    {
        if (piece.Length == 0) return;
        output.Add(MapsBytes ? Piece.Whole(ByteLevelAlphabet.Encode(piece.Span)) : piece);
    }
}

/// <summary>Splits on a literal string or a regex, keeping delimiters as the behavior says.</summary>
internal sealed class SplitPreTokenizer(Regex pattern, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, bool firstPieceStartsText) => SplitEach(pieces, firstPieceStartsText, (piece, _, output) =>
        Splitter.Apply(piece, RegexRuns(pattern, piece, invert), behavior, output));
}

/// <summary>Where Metaspace puts its leading replacement character.</summary>
internal enum PrependScheme { Always, First, Never }

/// <summary>
/// SentencePiece's whitespace handling: spaces become '▁', a '▁' is prepended (always, or only to the
/// start of the input), and the text is optionally split before each '▁'.
/// </summary>
internal sealed class MetaspacePreTokenizer(char replacement, PrependScheme prependScheme, bool split) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, bool firstPieceStartsText) => SplitEach(pieces, firstPieceStartsText, (piece, isFirst, output) =>
    {
        string text = piece.ToString().Replace(' ', replacement);
        bool prepend = prependScheme == PrependScheme.Always || (prependScheme == PrependScheme.First && isFirst);
        if (prepend && (text.Length == 0 || text[0] != replacement)) text = replacement + text;
        var whole = Piece.Whole(text);
        if (!split)
        {
            if (text.Length > 0) output.Add(whole);
            return;
        }
        var runs = new List<(int, int, bool)>();
        int gapStart = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != replacement) continue;
            if (i > gapStart) runs.Add((gapStart, i - gapStart, false));
            runs.Add((i, 1, true));
            gapStart = i + 1;
        }
        if (gapStart < text.Length) runs.Add((gapStart, text.Length - gapStart, false));
        Splitter.Apply(whole, runs, SplitBehavior.MergedWithNext, output);
    });
}

/// <summary>Splits digits from the rest: each digit alone, or runs of digits together.</summary>
internal sealed class DigitsPreTokenizer(bool individualDigits) : PreTokenizer
{
    public override void PreTokenize(List<Piece> pieces, bool firstPieceStartsText) => SplitEach(pieces, firstPieceStartsText, (piece, _, output) =>
    {
        var runs = new List<(int, int, bool)>();
        var span = piece.Span;
        int gapStart = 0;
        for (int i = 0; i < span.Length;)
        {
            int width = i + 1 < span.Length && char.IsSurrogatePair(span[i], span[i + 1]) ? 2 : 1;
            if (IsNumeric(span.Slice(i, width)))
            {
                if (i > gapStart) runs.Add((gapStart, i - gapStart, false));
                runs.Add((i, width, true));
                gapStart = i + width;
            }
            i += width;
        }
        if (gapStart < span.Length) runs.Add((gapStart, span.Length - gapStart, false));
        Splitter.Apply(piece, runs, individualDigits ? SplitBehavior.Isolated : SplitBehavior.Contiguous, output);
    });

    // Rust's char::is_numeric: general categories Nd, Nl and No.
    private static bool IsNumeric(ReadOnlySpan<char> scalar)
    {
        var category = scalar.Length == 2
            ? System.Globalization.CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(scalar[0], scalar[1]))
            : System.Globalization.CharUnicodeInfo.GetUnicodeCategory(scalar[0]);
        return category is System.Globalization.UnicodeCategory.DecimalDigitNumber
            or System.Globalization.UnicodeCategory.LetterNumber
            or System.Globalization.UnicodeCategory.OtherNumber;
    }
}

/// <summary>
/// Splits on a character class: WhitespaceSplit (whitespace dropped) and Punctuation (each punctuation
/// character set apart by the given behavior).
/// </summary>
internal sealed class CharacterClassPreTokenizer(Func<string, int, bool> isDelimiter, SplitBehavior behavior) : PreTokenizer
{
    public static CharacterClassPreTokenizer WhitespaceSplit() => new((s, i) => char.IsWhiteSpace(s, i), SplitBehavior.Removed);

    // tokenizers' is_punc: ASCII punctuation or any Unicode punctuation category (P*).
    public static CharacterClassPreTokenizer Punctuation(SplitBehavior behavior) => new(IsPunctuation, behavior);

    private static bool IsPunctuation(string s, int i)
    {
        char c = s[i];
        if (c < 0x80) return c is > ' ' and < '\x7F' && !char.IsAsciiLetterOrDigit(c); // Rust's is_ascii_punctuation
        return System.Globalization.CharUnicodeInfo.GetUnicodeCategory(s, i) is
            System.Globalization.UnicodeCategory.ConnectorPunctuation or System.Globalization.UnicodeCategory.DashPunctuation
            or System.Globalization.UnicodeCategory.OpenPunctuation or System.Globalization.UnicodeCategory.ClosePunctuation
            or System.Globalization.UnicodeCategory.InitialQuotePunctuation or System.Globalization.UnicodeCategory.FinalQuotePunctuation
            or System.Globalization.UnicodeCategory.OtherPunctuation;
    }

    public override void PreTokenize(List<Piece> pieces, bool firstPieceStartsText) => SplitEach(pieces, firstPieceStartsText, (piece, _, output) =>
    {
        string text = piece.Source;
        var runs = new List<(int, int, bool)>();
        int gapStart = 0;
        for (int i = 0; i < piece.Length;)
        {
            int at = piece.Start + i;
            int width = char.IsSurrogatePair(text, at) ? 2 : 1;
            if (isDelimiter(text, at))
            {
                if (i > gapStart) runs.Add((gapStart, i - gapStart, false));
                runs.Add((i, width, true));
                gapStart = i + width;
            }
            i += width;
        }
        if (gapStart < piece.Length) runs.Add((gapStart, piece.Length - gapStart, false));
        Splitter.Apply(piece, runs, behavior, output);
    });
}

/// <summary>Applies pre-tokenizers one after the other.</summary>
internal sealed class SequencePreTokenizer(IReadOnlyList<PreTokenizer> steps) : PreTokenizer
{
    public IReadOnlyList<PreTokenizer> Steps { get; } = steps;

    public override void PreTokenize(List<Piece> pieces, bool firstPieceStartsText)
    {
        foreach (var step in Steps) step.PreTokenize(pieces, firstPieceStartsText);
    }
}

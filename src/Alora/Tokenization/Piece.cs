namespace Alora.Tokenization;

/// <summary>A slice of a string: pre-tokenizers cut text into pieces without copying it.</summary>
internal readonly record struct Piece(string Source, int Start, int Length)
{
    public static Piece Whole(string text) => new(text, 0, text.Length);

    public ReadOnlySpan<char> Span => Source.AsSpan(Start, Length);

    public Piece Slice(int offset, int length) => new(Source, Start + offset, length);

    public override string ToString() => Source.Substring(Start, Length);
}

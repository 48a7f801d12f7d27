namespace Alora.Tokenization;

/// <summary>Turns token ids into text incrementally, never splitting a UTF-8 character.</summary>
public interface ITokenTextStream
{
    /// <summary>Ids whose text is already out (the prompt's end): what follows decodes as their continuation.</summary>
    void Prime(ReadOnlySpan<int> contextIds);

    /// <summary>The text that became complete with this token (may be empty).</summary>
    string Append(int tokenId);
    /// <summary>Whatever is still held back at the end.</summary>
    string Flush();
}

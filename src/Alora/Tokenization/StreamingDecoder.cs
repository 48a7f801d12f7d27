namespace Alora.Tokenization;

/// <summary>
/// Decodes ids as they are generated. It decodes a short window of recent ids, and hands out only the
/// text past what the window's older ids already gave, and only once that text does not end in U+FFFD
/// (the mark of a UTF-8 character whose remaining bytes are still to come). Decoding a window rather
/// than single ids keeps context-dependent decoders right (SentencePiece strips the first space only).
/// </summary>
public sealed class StreamingDecoder : Alora.Inference.ITokenTextStream
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _window = [];  // ids from the first one whose text is already out
    private int _emittedCount;                 // ids at the start of the window whose text is already out
    private string _emittedText = "";          // text of those ids

    internal StreamingDecoder(Tokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>
    /// Takes ids whose text is already shown (the end of a prompt) as context, so the ids that follow decode as
    /// a continuation: SentencePiece keeps their leading space, and a character split across the boundary completes.
    /// </summary>
    public void Prime(ReadOnlySpan<int> contextIds)
    {
        _window.Clear();
        _window.AddRange(contextIds);
        _emittedCount = _window.Count;
        _emittedText = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens);
    }

    /// <summary>Adds one id and returns the text it completes ("" while a character is still partial).</summary>
    public string Append(int id)
    {
        if (_tokenizer.IdToToken(id) == null)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is not in the vocabulary (ids are 0..{_tokenizer.VocabSize - 1}).");
        _window.Add(id);
        string text = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens);
        if (text.Length <= _emittedText.Length || text.EndsWith('\uFFFD'))
            return "";
        string fresh = text[_emittedText.Length..];
        // Slide: keep the ids not yet fully out as the new window's context.
        _window.RemoveRange(0, _emittedCount);
        _emittedCount = _window.Count;
        _emittedText = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens);
        return fresh;
    }

    /// <summary>Returns whatever is held back (an incomplete character comes out as U+FFFD) and resets.</summary>
    public string Flush()
    {
        string text = _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens);
        string rest = text.Length > _emittedText.Length ? text[_emittedText.Length..] : "";
        _window.Clear();
        _emittedCount = 0;
        _emittedText = "";
        return rest;
    }
}

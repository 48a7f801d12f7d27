using System.Text;

namespace Alora.Tokenization;

/// <summary>
/// Decodes ids as they are generated. It decodes a short window of recent ids, and hands out only the
/// text past what the window's older ids already gave, and only once that text does not end in U+FFFD
/// (the mark of a UTF-8 character whose remaining bytes are still to come). Decoding a window rather
/// than single ids keeps context-dependent decoders right (SentencePiece strips the first space only).
/// When the tokenizer cleans up tokenization spaces (" ." becomes "."), text after a recent space is held
/// back until it can no longer change; the pieces always add up to <see cref="Tokenizer.Decode(ReadOnlySpan{int}, bool)"/>.
/// It is the generator's <see cref="ITokenTextStream"/>: pass <c>() => tokenizer.CreateStreamingDecoder()</c>.
/// </summary>
public sealed class StreamingDecoder : ITokenTextStream
{
    // Every clean-up pattern starts with a space and is at most 4 characters long ("␣n't"), so text whose
    // last 3 characters hold no space can no longer be changed by what follows.
    private const int CleanUpReach = 3;

    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly bool _cleanUp;
    private readonly List<int> _window = [];   // ids from the first one whose text is already out
    private int _emittedCount;                  // ids at the start of the window whose text is already out
    private string _emittedText = "";           // text of those ids (before clean-up)
    private readonly StringBuilder _held = new(); // decoded text held back for the clean-up (before clean-up)

    internal StreamingDecoder(Tokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _cleanUp = tokenizer.CleansUpTokenizationSpaces;
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
        _emittedText = DecodeWindow();
        _held.Clear();
    }

    /// <summary>Adds one id and returns the text it completes ("" while a character is still partial).</summary>
    public string Append(int id)
    {
        if (_tokenizer.IdToToken(id) == null)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is not in the vocabulary (ids are 0..{_tokenizer.VocabSize - 1}).");
        _window.Add(id);
        string text = DecodeWindow();
        if (text.Length <= _emittedText.Length || text.EndsWith('\uFFFD'))
            return "";
        string fresh = text[_emittedText.Length..];
        // Slide: keep the ids not yet fully out as the new window's context.
        _window.RemoveRange(0, _emittedCount);
        _emittedCount = _window.Count;
        _emittedText = DecodeWindow();
        return Release(fresh);
    }

    /// <summary>Returns whatever is held back (an incomplete character comes out as U+FFFD) and resets.</summary>
    public string Flush()
    {
        string text = DecodeWindow();
        string rest = text.Length > _emittedText.Length ? text[_emittedText.Length..] : "";
        _held.Append(rest);
        string result = _cleanUp ? Tokenizer.CleanUpTokenizationSpaces(_held.ToString()) : _held.ToString();
        _held.Clear();
        _window.Clear();
        _emittedCount = 0;
        _emittedText = "";
        return result;
    }

    private string DecodeWindow() =>
        _tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_window), _skipSpecialTokens, cleanUpTokenizationSpaces: false);

    /// <summary>Hands out the part of the decoded text the clean-up can no longer change.</summary>
    private string Release(string fresh)
    {
        if (!_cleanUp) return fresh;
        _held.Append(fresh);
        int stable = _held.Length;
        while (stable > 0 && HasSpaceBefore(stable)) stable--;
        if (stable == 0) return "";
        string ready = _held.ToString(0, stable);
        _held.Remove(0, stable);
        return Tokenizer.CleanUpTokenizationSpaces(ready);
    }

    private bool HasSpaceBefore(int end)
    {
        for (int i = Math.Max(0, end - CleanUpReach); i < end; i++) if (_held[i] == ' ') return true;
        return false;
    }
}

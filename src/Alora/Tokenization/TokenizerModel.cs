namespace Alora.Tokenization;

/// <summary>Turns one pre-tokenized piece into token ids (tokenizers' model).</summary>
internal abstract class TokenizerModel
{
    /// <summary>Appends the ids of <paramref name="piece"/>, already in the model's alphabet.</summary>
    public abstract void Tokenize(ReadOnlySpan<char> piece, List<int> output);

    public abstract int? TokenToId(string token);

    public abstract string? IdToToken(int id);

    /// <summary>One more than the largest id the model itself knows.</summary>
    public abstract int IdCount { get; }
}

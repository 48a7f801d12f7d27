using Alora.Inference;
using Alora.Tokenization;

namespace Alora.Intrinsics;

/// <summary>Builds the token view that output processing reads (OpenAI's logprobs content) from what the engine generated.</summary>
public static class OutputTokens
{
    /// <summary>Tokens decoded before each position so a piece's text is what it adds in context (SentencePiece's leading space, byte pieces).</summary>
    private const int ContextTokens = 8;

    /// <summary>
    /// Each generated token's text, log probability and top alternatives. A token's text is what it adds to the
    /// decoded text after the tokens before it (the same for an alternative put in its place), so the texts of the
    /// chosen tokens concatenate to the output and a literal's offset finds the token that starts it.
    /// </summary>
    public static List<OutputToken> Build(Tokenizer tokenizer, ReadOnlySpan<int> promptIds, IReadOnlyList<int> generated, IReadOnlyList<TokenLogprobs> logprobs)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (logprobs.Count != generated.Count)
            throw new ArgumentException($"{generated.Count} generated tokens but {logprobs.Count} logprob entries; ask for logprobs on every token", nameof(logprobs));
        var all = new List<int>(promptIds.Length + generated.Count);
        all.AddRange(promptIds.ToArray());
        all.AddRange(generated);
        var result = new List<OutputToken>(generated.Count);
        var window = new List<int>(ContextTokens + 1);
        for (int i = 0; i < generated.Count; i++)
        {
            int at = promptIds.Length + i;
            window.Clear();
            window.AddRange(all.GetRange(Math.Max(0, at - ContextTokens), Math.Min(at, ContextTokens)));
            string before = tokenizer.Decode(window.ToArray(), skipSpecialTokens: true);
            string Piece(int id)
            {
                window.Add(id);
                string text = tokenizer.Decode(window.ToArray(), skipSpecialTokens: true);
                window.RemoveAt(window.Count - 1);
                return text.StartsWith(before, StringComparison.Ordinal) ? text[before.Length..] : tokenizer.Decode([id], skipSpecialTokens: true);
            }
            var lp = logprobs[i];
            var top = lp.Top.Select(t => new TokenAlternative(Piece(t.TokenId), t.Logprob)).ToList();
            result.Add(new OutputToken(Piece(generated[i]), lp.Chosen.Logprob, top));
        }
        return result;
    }
}

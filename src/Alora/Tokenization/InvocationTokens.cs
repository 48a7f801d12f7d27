namespace Alora.Tokenization;

/// <summary>
/// Helpers for an aLoRA's invocation sequence: the token ids whose last occurrence in a request
/// switches the adapter on. They must be the ids the conversation really contains, and BPE can tokenize
/// a string differently in context ("ab" + "c" is not always "ab" then "c"), which PEFT's docs warn about.
/// </summary>
public static class InvocationTokens
{
    /// <summary>The ids of <paramref name="invocation"/> without special tokens, as PEFT users get them with <c>tokenizer(invocation, add_special_tokens=False)</c>.</summary>
    public static int[] Encode(Tokenizer t, string invocation)
    {
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(invocation);
        return t.Encode(invocation, addSpecialTokens: false);
    }

    /// <summary>Start of the last occurrence of <paramref name="pattern"/> in <paramref name="ids"/> (occurrences may overlap), or -1 when absent or empty.</summary>
    public static int FindLast(ReadOnlySpan<int> ids, ReadOnlySpan<int> pattern)
        => pattern.IsEmpty || pattern.Length > ids.Length ? -1 : ids.LastIndexOf(pattern);

    /// <summary>
    /// Warnings (empty when fine) about using <paramref name="invocationIds"/> with a conversation rendered by
    /// a chat template: the rendered text is tokenized without special tokens, as apply_chat_template does,
    /// and the ids must appear in it verbatim. When they do not, the warning shows how the same text
    /// tokenizes in context, which are the ids to use instead.
    /// </summary>
    public static IReadOnlyList<string> CheckInConversation(Tokenizer t, int[] invocationIds, string renderedConversationContainingIt)
    {
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(invocationIds);
        ArgumentNullException.ThrowIfNull(renderedConversationContainingIt);
        var warnings = new List<string>();
        if (invocationIds.Length == 0)
        {
            warnings.Add("The invocation sequence is empty: the adapter would never activate.");
            return warnings;
        }
        foreach (int id in invocationIds)
        {
            if (t.IdToToken(id) == null)
            {
                warnings.Add($"Invocation id {id} is not in the tokenizer's vocabulary (ids are 0..{t.VocabSize - 1}): wrong tokenizer for this adapter?");
                return warnings;
            }
        }

        string rendered = renderedConversationContainingIt;
        int[] conversationIds = t.Encode(rendered, addSpecialTokens: false);
        if (FindLast(conversationIds, invocationIds) >= 0) return warnings;

        string invocationText = t.Decode(invocationIds);
        string shown = $"{Describe(t, invocationIds)} (text {Quote(invocationText)})";
        int at = rendered.LastIndexOf(invocationText, StringComparison.Ordinal);
        if (invocationText.Length == 0 || at < 0)
        {
            warnings.Add($"The invocation sequence {shown} does not appear in the tokenized conversation, and its text does not appear in the rendered conversation either: the adapter would not activate. Check that the chat template renders the invocation string.");
            return warnings;
        }

        // How the same characters tokenize in context: the ids that tokenizing up to the end of the
        // occurrence adds after the ids of the text before it.
        int[] before = t.Encode(rendered[..at], addSpecialTokens: false);
        int[] through = t.Encode(rendered[..(at + invocationText.Length)], addSpecialTokens: false);
        int common = 0;
        while (common < before.Length && common < through.Length && before[common] == through[common]) common++;
        int[] inContext = through[common..];
        warnings.Add(
            $"The invocation sequence {shown} does not appear verbatim in the tokenized conversation: in context the text tokenizes as " +
            $"{Describe(t, inContext)}. Tokenization at the boundary differs (the \"ab\" + \"c\" problem PEFT's aLoRA documentation describes); " +
            "take the invocation ids from the tokenized conversation, or include the preceding characters (e.g. the newline or space the template puts before it) in the invocation string.");
        return warnings;
    }

    private static string Describe(Tokenizer t, int[] ids) =>
        "[" + string.Join(", ", ids) + "] " + "[" + string.Join(", ", ids.Select(id => Quote(t.IdToToken(id) ?? "?"))) + "]";

    private static string Quote(string text) => System.Text.Json.JsonSerializer.Serialize(text);
}

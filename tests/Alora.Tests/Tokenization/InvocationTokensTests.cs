using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>aLoRA invocation sequences: encoding, last occurrence, and the in-context boundary check.</summary>
public class InvocationTokensTests
{
    [Fact]
    public void EncodeAddsNoSpecialTokens()
    {
        var tokenizer = TokenizerFixtures.Load("maykeye-tinyllama-v0");
        Assert.Equal(tokenizer.Encode("Is it hallucinated?", addSpecialTokens: false), InvocationTokens.Encode(tokenizer, "Is it hallucinated?"));
        Assert.NotEqual(tokenizer.BosTokenId, InvocationTokens.Encode(tokenizer, "Is it hallucinated?")[0]);
    }

    [Theory]
    [InlineData(new[] { 1, 2, 3, 1, 2 }, new[] { 1, 2 }, 3)]
    [InlineData(new[] { 1, 2, 3 }, new[] { 2, 3 }, 1)]
    [InlineData(new[] { 7, 7, 7 }, new[] { 7, 7 }, 1)]   // overlapping occurrences: the last starts at 1
    [InlineData(new[] { 1, 2, 3 }, new[] { 3, 4 }, -1)]
    [InlineData(new[] { 1 }, new[] { 1, 1 }, -1)]
    [InlineData(new[] { 1, 2 }, new int[0], -1)]
    public void FindLast(int[] ids, int[] pattern, int expected) => Assert.Equal(expected, InvocationTokens.FindLast(ids, pattern));

    [Fact]
    public void NoWarningWhenTheIdsAppearInContext()
    {
        var tokenizer = TokenizerFixtures.Load("granite3");
        int[] invocation = InvocationTokens.Encode(tokenizer, "<|start_of_role|>certainty<|end_of_role|>");
        string conversation = "<|start_of_role|>user<|end_of_role|>What is 2+2?<|end_of_text|>\n<|start_of_role|>certainty<|end_of_role|>";
        Assert.Empty(InvocationTokens.CheckInConversation(tokenizer, invocation, conversation));
    }

    [Fact]
    public void WarnsAtABoundaryThatTokenizesDifferentlyInContext()
    {
        // SentencePiece: alone, "Answer:" gets the dummy prefix "▁Answer"; after a newline in the
        // conversation the same characters tokenize without it, so the ids are not found verbatim.
        var tokenizer = TokenizerFixtures.Load("maykeye-tinyllama-v0");
        int[] invocation = InvocationTokens.Encode(tokenizer, "Answer:");
        string conversation = "Question: what is two plus two?\nAnswer:";
        Assert.Equal(-1, InvocationTokens.FindLast(tokenizer.Encode(conversation, false), invocation));
        var warnings = InvocationTokens.CheckInConversation(tokenizer, invocation, conversation);
        var warning = Assert.Single(warnings);
        Assert.Contains("does not appear verbatim", warning);
        Assert.Contains("in context the text tokenizes as", warning);
    }

    [Fact]
    public void WarnsWhenTheTextIsAbsent()
    {
        var tokenizer = TokenizerFixtures.Load("granite3");
        var warning = Assert.Single(InvocationTokens.CheckInConversation(tokenizer, InvocationTokens.Encode(tokenizer, "certainty"), "<|start_of_role|>user<|end_of_role|>hi"));
        Assert.Contains("does not appear in the rendered conversation", warning);
    }

    [Fact]
    public void WarnsOnEmptyOrForeignIds()
    {
        var tokenizer = TokenizerFixtures.Load("stories260K");
        Assert.Contains("empty", Assert.Single(InvocationTokens.CheckInConversation(tokenizer, [], "text")));
        Assert.Contains("wrong tokenizer", Assert.Single(InvocationTokens.CheckInConversation(tokenizer, [100000], "text")));
    }
}

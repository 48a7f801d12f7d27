using System.Text.Json.Nodes;

namespace Alora.Tests.Tokenization;

/// <summary>Added tokens are found before the model runs, with lstrip, rstrip, single_word and normalized honoured.</summary>
public class AddedTokenTests
{
    private const int Mask = 200;

    private static int[] Encode(JsonObject added, string text, JsonNode? normalizer = null)
    {
        using var folder = new TempFolder();
        return SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: [added.DeepClone()], normalizer: normalizer?.DeepClone()), folder).Encode(text, addSpecialTokens: false);
    }

    [Fact]
    public void PlainTokenIsCutOutOfTheText()
    {
        Assert.Equal([.. SyntheticTokenizer.Chars("a "), Mask, .. SyntheticTokenizer.Chars(" b")], Encode(SyntheticTokenizer.Added(Mask, "<mask>"), "a <mask> b"));
    }

    [Fact]
    public void LStripSwallowsWhitespaceBefore()
    {
        Assert.Equal([.. SyntheticTokenizer.Chars("a"), Mask, .. SyntheticTokenizer.Chars(" b")], Encode(SyntheticTokenizer.Added(Mask, "<mask>", lstrip: true), "a  <mask> b"));
    }

    [Fact]
    public void RStripSwallowsWhitespaceAfter()
    {
        Assert.Equal([.. SyntheticTokenizer.Chars("a "), Mask, .. SyntheticTokenizer.Chars("b")], Encode(SyntheticTokenizer.Added(Mask, "<mask>", rstrip: true), "a <mask>   b"));
    }

    [Fact]
    public void SingleWordOnlyMatchesBetweenNonWordCharacters()
    {
        var token = SyntheticTokenizer.Added(Mask, "mask", singleWord: true);
        Assert.Equal([.. SyntheticTokenizer.Chars("a "), Mask, .. SyntheticTokenizer.Chars(".")], Encode(token, "a mask."));
        Assert.Equal(SyntheticTokenizer.Chars("unmasked"), Encode(token, "unmasked"));
        Assert.Equal(SyntheticTokenizer.Chars("a_mask"), Encode(token, "a_mask"));
    }

    [Fact]
    public void LongestTokenWinsAtTheSamePosition()
    {
        using var folder = new TempFolder();
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: [SyntheticTokenizer.Added(201, "<a>"), SyntheticTokenizer.Added(202, "<a><b>")]), folder);
        Assert.Equal([202, 201], tokenizer.Encode("<a><b><a>", addSpecialTokens: false));
    }

    [Fact]
    public void NormalizedTokenIsMatchedInNormalizedText()
    {
        var lowercase = new JsonObject { ["type"] = "Lowercase" };
        var normalizedToken = SyntheticTokenizer.Added(Mask, "<MASK>", special: false, normalized: true);
        Assert.Equal([.. SyntheticTokenizer.Chars("a "), Mask], Encode(normalizedToken, "A <mAsK>", lowercase));
        // Not normalized: only the raw spelling matches, and the rest is lowercased.
        var rawToken = SyntheticTokenizer.Added(Mask, "<MASK>", special: false, normalized: false);
        Assert.Equal([.. SyntheticTokenizer.Chars("a "), Mask], Encode(rawToken, "A <MASK>", lowercase));
        Assert.Equal(SyntheticTokenizer.Chars("a <mask>"), Encode(rawToken, "A <mAsK>", lowercase));
    }

    [Fact]
    public void SpecialTokensAreSkippedOnRequest()
    {
        using var folder = new TempFolder();
        var tokenizer = SyntheticTokenizer.Load(SyntheticTokenizer.Json(addedTokens: [SyntheticTokenizer.Added(Mask, "<mask>"), SyntheticTokenizer.Added(201, "<keep>", special: false)], decoder: new JsonObject { ["type"] = "Fuse" }), folder);
        int[] ids = tokenizer.Encode("x<mask>y<keep>", addSpecialTokens: false);
        Assert.Equal("x<mask>y<keep>", tokenizer.Decode(ids));
        Assert.Equal("xy<keep>", tokenizer.Decode(ids, skipSpecialTokens: true));
        Assert.True(tokenizer.IsSpecial(Mask));
        Assert.False(tokenizer.IsSpecial(201));
        Assert.Equal(Mask, tokenizer.TokenToId("<mask>"));
        Assert.Equal("<keep>", tokenizer.IdToToken(201));
        Assert.Equal(202, tokenizer.VocabSize);
    }
}

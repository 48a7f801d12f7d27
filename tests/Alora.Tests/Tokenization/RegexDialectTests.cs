using System.Text.RegularExpressions;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>Oniguruma-only syntax in tokenizer.json regexes is rewritten for .NET; everything else is left alone.</summary>
public class RegexDialectTests
{
    [Theory]
    [InlineData(ByteLevelPreTokenizer.Gpt2Pattern)]
    [InlineData(PreTokenizerPatterns.Llama3)]
    [InlineData(PreTokenizerPatterns.Qwen2)]
    [InlineData(@"a+?b*?(c)+[+*]+\p{L}+")]
    public void PatternsWithoutOnigurumaSyntaxAreUnchanged(string pattern) => Assert.Equal(pattern, RegexDialect.ToDotNet(pattern));

    [Theory]
    [InlineData(@"\p{L}++", @"(?>\p{L}+)")]
    [InlineData(@"a?+b", @"(?>a?)b")]
    [InlineData(@"\p{N}{1,3}+", @"(?>\p{N}{1,3})")]
    [InlineData(@"[^\s\p{L}]++[\r\n]*+", @"(?>[^\s\p{L}]+)(?>[\r\n]*)")]
    [InlineData(@"(?i:'s|'t)|(ab)++", @"(?i:'s|'t)|(?>(ab)+)")]
    [InlineData(@"(?:x\s++y)", @"(?:x(?>\s+)y)")]
    [InlineData(@"\h+", @"[0-9A-Fa-f]+")]
    public void PossessiveQuantifiersBecomeAtomicGroups(string oniguruma, string dotnet) => Assert.Equal(dotnet, RegexDialect.ToDotNet(oniguruma));

    [Fact]
    public void TiktokenStylePatternSplitsLikeItsGreedyTwin()
    {
        // Llama-3's split pattern written with possessive quantifiers, as tiktoken spells it, against the greedy form in its tokenizer.json.
        const string possessive = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s*[\r\n]+|\s+(?!\S)|\s+";
        var atomic = new Regex(RegexDialect.ToDotNet(possessive));
        var greedy = new Regex(PreTokenizerPatterns.Llama3);
        foreach (var row in TokenizerFixtures.Rows("llama3"))
        {
            var a = atomic.Matches(row.Text).Select(m => m.Value).ToArray();
            var g = greedy.Matches(row.Text).Select(m => m.Value).ToArray();
            Assert.True(a.SequenceEqual(g), $"{row.Id}: {string.Join("|", a)} vs {string.Join("|", g)}");
        }
    }
}

using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>Every row of shared/fixtures/tokenizers/*.jsonl: ids with and without special tokens, decoded text.</summary>
public class FixtureTests
{
    public static TheoryData<string> Names() => new(TokenizerFixtures.Names);

    private static void AssertAll(string name, Func<TokenizerFixtureRow, Tokenizer, string?> check)
    {
        var tokenizer = TokenizerFixtures.Load(name);
        var rows = TokenizerFixtures.Rows(name);
        var failures = new List<string>();
        foreach (var row in rows)
        {
            string? failure = check(row, tokenizer);
            if (failure != null) failures.Add($"{row.Id} ({row.Category}) text={TokenizerFixtures.Escape(row.Text)}: {failure}");
        }
        Assert.True(failures.Count == 0, $"{name}: {failures.Count} of {rows.Count} rows differ:\n" + string.Join("\n", failures.Take(15)));
    }

    [Theory, MemberData(nameof(Names))]
    public void EncodeWithSpecialTokensMatches(string name) => AssertAll(name, (row, t) =>
    {
        var ids = t.Encode(row.Text);
        return ids.SequenceEqual(row.Ids) ? null : $"expected {TokenizerFixtures.Show(row.Ids)}, got {TokenizerFixtures.Show(ids)}";
    });

    [Theory, MemberData(nameof(Names))]
    public void EncodeWithoutSpecialTokensMatches(string name) => AssertAll(name, (row, t) =>
    {
        var ids = t.Encode(row.Text, addSpecialTokens: false);
        return ids.SequenceEqual(row.IdsNoSpecial) ? null : $"expected {TokenizerFixtures.Show(row.IdsNoSpecial)}, got {TokenizerFixtures.Show(ids)}";
    });

    [Theory, MemberData(nameof(Names))]
    public void TokenStringsMatchOutsideAddedTokens(string name) => AssertAll(name, (row, t) =>
    {
        // A matched normalized added token shows as the matched text (e.g. "▁<s>"), not its vocabulary entry.
        if (row.IdsNoSpecial.Length != row.Tokens.Length) return $"fixture has {row.Tokens.Length} tokens for {row.IdsNoSpecial.Length} ids";
        for (int i = 0; i < row.Tokens.Length; i++)
        {
            int id = row.IdsNoSpecial[i];
            if (t.AddedTokens.Any(a => a.Id == id)) continue;
            if (t.IdToToken(id) != row.Tokens[i]) return $"token {i}: expected {TokenizerFixtures.Escape(row.Tokens[i])}, got {TokenizerFixtures.Escape(t.IdToToken(id) ?? "(null)")}";
        }
        return null;
    });

    [Theory, MemberData(nameof(Names))]
    public void DecodeMatches(string name) => AssertAll(name, (row, t) =>
    {
        string text = t.Decode(row.Ids);
        return text == row.ExpectedDecoded ? null : $"expected {TokenizerFixtures.Escape(row.ExpectedDecoded)}, got {TokenizerFixtures.Escape(text)}";
    });

    [Theory, MemberData(nameof(Names))]
    public void DecodeSkippingSpecialTokensMatches(string name) => AssertAll(name, (row, t) =>
    {
        string text = t.Decode(row.Ids, skipSpecialTokens: true);
        return text == row.ExpectedDecodedSkipSpecial ? null : $"expected {TokenizerFixtures.Escape(row.ExpectedDecodedSkipSpecial)}, got {TokenizerFixtures.Escape(text)}";
    });
}

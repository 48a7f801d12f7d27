namespace Alora.Tests.Tokenization;

/// <summary>One tokenizer shared by many threads gives the same ids as one thread (the BPE word cache and scratch buffers are shared or per thread).</summary>
public class ConcurrencyTests
{
    [Theory]
    [InlineData("granite3")]
    [InlineData("maykeye-tinyllama-v0")]
    public void ParallelEncodeMatchesSequential(string name)
    {
        var tokenizer = Alora.Tokenization.Tokenizer.FromModelFolder(TokenizerFixtures.FolderOf(name)); // fresh: empty cache
        var rows = TokenizerFixtures.Rows(name);
        var results = new int[rows.Count][];
        Parallel.For(0, rows.Count * 4, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var row = rows[i % rows.Count];
            var ids = tokenizer.Encode(row.Text);
            if (i < rows.Count) results[i] = ids;
            else Assert.Equal(row.Ids, ids);
        });
        for (int i = 0; i < rows.Count; i++) Assert.Equal(rows[i].Ids, results[i]);
    }
}

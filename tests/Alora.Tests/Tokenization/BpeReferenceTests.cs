using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>
/// The optimized merge loops (linked symbols and a priority queue) against plain reference twins that
/// rescan the whole word for the best pair after every merge, on random vocabularies and words.
/// </summary>
public class BpeReferenceTests
{
    private const string Alphabet = "abcde";

    /// <summary>A random merge table over a small alphabet: each merge joins two existing tokens.</summary>
    private static (Dictionary<string, int> Vocab, List<(string, string)> Merges) RandomMerges(Random random, int count)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (char c in Alphabet) vocab[c.ToString()] = vocab.Count;
        var tokens = vocab.Keys.ToList();
        var merges = new List<(string, string)>();
        var seen = new HashSet<(string, string)>();
        while (merges.Count < count)
        {
            string left = tokens[random.Next(tokens.Count)], right = tokens[random.Next(tokens.Count)];
            if (left.Length + right.Length > 6 || !seen.Add((left, right))) continue;
            merges.Add((left, right));
            if (vocab.TryAdd(left + right, vocab.Count)) tokens.Add(left + right);
        }
        return (vocab, merges);
    }

    private static string RandomWord(Random random) =>
        new(Enumerable.Range(0, random.Next(1, 30)).Select(_ => Alphabet[random.Next(Alphabet.Length)]).ToArray());

    /// <summary>Reference BPE: merge the lowest-ranked adjacent pair (leftmost on ties) until none is left.</summary>
    private static List<int> ReferenceBpe(string word, Dictionary<string, int> vocab, List<(string, string)> merges)
    {
        var rank = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Count; i++) rank[merges[i]] = i; // a repeated pair keeps its last rank
        var symbols = word.Select(c => c.ToString()).ToList();
        while (true)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (rank.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank) { best = i; bestRank = r; }
            if (best < 0) break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        return symbols.Select(s => vocab[s]).ToList();
    }

    [Fact]
    public void BpeModelMatchesReferenceTwin()
    {
        var random = new Random(42);
        for (int table = 0; table < 20; table++)
        {
            var (vocab, merges) = RandomMerges(random, 40);
            var model = new BpeModel(vocab, merges, new BpeOptions(), "random");
            for (int w = 0; w < 200; w++)
            {
                string word = RandomWord(random);
                var actual = new List<int>();
                model.Tokenize(word, actual);
                Assert.Equal(ReferenceBpe(word, vocab, merges), actual);
            }
        }
    }

    /// <summary>Reference SentencePiece BPE: merge the adjacent pair whose joined text has the best score (leftmost on ties).</summary>
    private static List<int> ReferenceSentencePiece(string word, string[] pieces, float[] scores)
    {
        var ids = pieces.Select((p, i) => (p, i)).GroupBy(x => x.p).ToDictionary(g => g.Key, g => g.First().i);
        var symbols = word.Select(c => c.ToString()).ToList();
        while (true)
        {
            int best = -1;
            float bestScore = float.NegativeInfinity;
            for (int i = 0; i + 1 < symbols.Count; i++)
                if (ids.TryGetValue(symbols[i] + symbols[i + 1], out int id) && scores[id] > bestScore) { best = i; bestScore = scores[id]; }
            if (best < 0) break;
            symbols[best] += symbols[best + 1];
            symbols.RemoveAt(best + 1);
        }
        return symbols.Select(s => ids[s]).ToList();
    }

    [Fact]
    public void SentencePieceModelMatchesReferenceTwin()
    {
        var random = new Random(7);
        for (int table = 0; table < 20; table++)
        {
            var (vocab, _) = RandomMerges(random, 40);
            string[] pieces = vocab.OrderBy(kv => kv.Value).Select(kv => kv.Key).ToArray();
            // Distinct scores: ties between different pieces are broken by position, which both sides do alike,
            // but distinct scores keep the comparison about the merge order itself.
            float[] scores = pieces.Select((_, i) => (float)random.NextDouble() * 10 + i * 1e-3f).ToArray();
            var model = new SentencePieceModel(pieces, scores, unknownId: -1);
            for (int w = 0; w < 200; w++)
            {
                string word = RandomWord(random);
                var actual = new List<int>();
                model.Tokenize(word, actual);
                Assert.Equal(ReferenceSentencePiece(word, pieces, scores), actual);
            }
        }
    }
}

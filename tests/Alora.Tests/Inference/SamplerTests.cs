using Alora.Inference;

namespace Alora.Tests.Inference;

public sealed class SamplerTests
{
    private static readonly float[] Logits = [1f, 3f, 2.5f, -1f, 3f, 0f];

    [Fact]
    public void GreedyTakesTheFirstMaximum() => Assert.Equal(1, new Sampler(6, SamplingOptions.Greedy).Sample(Logits, []));

    [Fact]
    public void TopKOneIsGreedyAtAnyTemperature()
    {
        var sampler = new Sampler(6, new SamplingOptions { Temperature = 5f, TopK = 1, TopP = 1, MinP = 0, Seed = 3 });
        for (int i = 0; i < 50; i++) Assert.Equal(1, sampler.Sample(Logits, []));
    }

    [Fact]
    public void SameSeedSameTokens()
    {
        var options = new SamplingOptions { Temperature = 1.5f, TopK = 0, TopP = 1, MinP = 0, Seed = 1234 };
        var a = new Sampler(6, options);
        var b = new Sampler(6, options);
        var seqA = Enumerable.Range(0, 100).Select(_ => a.Sample(Logits, [])).ToArray();
        var seqB = Enumerable.Range(0, 100).Select(_ => b.Sample(Logits, [])).ToArray();
        Assert.Equal(seqA, seqB);
        Assert.True(seqA.Distinct().Count() >= 4, "a hot temperature should visit most tokens");
    }

    [Fact]
    public void TopPAndMinPRestrictTheSupport()
    {
        // Probabilities at T=1 (sorted): 1,4 (0.356 each), 2 (0.216), 0 (0.048), 5 (0.018), 3 (0.007).
        var topP = new Sampler(6, new SamplingOptions { Temperature = 1, TopK = 0, TopP = 0.8f, MinP = 0, Seed = 9 });
        var seen = Enumerable.Range(0, 2000).Select(_ => topP.Sample(Logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 4, 2 }, seen);
        var minP = new Sampler(6, new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0.5f, Seed = 9 });
        seen = Enumerable.Range(0, 2000).Select(_ => minP.Sample(Logits, [])).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 4, 2 }, seen);   // 0.216 / 0.356 ≥ 0.5; 0.048 / 0.356 < 0.5
    }

    [Fact]
    public void RepetitionPenaltyDemotesSeenTokens()
    {
        var sampler = new Sampler(6, SamplingOptions.Greedy with { RepetitionPenalty = 2f });
        Assert.Equal(2, sampler.Sample(Logits, [1, 4, 1]));   // 3 → 1.5 for both seen maxima; 2.5 wins
    }

    [Fact]
    public void BadOptionsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new Sampler(6, new SamplingOptions { TopP = 0 }));
        Assert.Throws<ArgumentException>(() => new Sampler(6, new SamplingOptions { Temperature = -1 }));
    }
}

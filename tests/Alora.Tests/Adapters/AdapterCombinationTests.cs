using Alora.Adapters;

namespace Alora.Tests.Adapters;

public sealed class AdapterCombinationTests
{
    /// <summary>A second LoRA with non-zero B (init_lora_weights false), on a subset of the modules, rank 2.</summary>
    private static LoraAdapter Second(int rank = 2, string[]? targets = null)
        => LoraAdapter.Create("second", new LoraConfig { R = rank, LoraAlpha = 3, TargetModules = targets ?? ["q_proj", "v_proj", "down_proj"], InitLoraWeights = "false" },
            AdapterFixtures.BaseConfig(), seed: 11);

    private static double[] Delta(LoraModule? module, int outFeatures, int inFeatures)
        => module?.DeltaWeight() ?? new double[outFeatures * inFeatures];

    private static void AssertDeltaEquals(double[] expected, double[] actual, double tolerance, string what)
    {
        double scale = Math.Max(1e-12, expected.Max(Math.Abs));
        double maxDiff = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(maxDiff <= tolerance * scale, $"{what}: max |ΔW diff| {maxDiff} (max |ΔW| {scale})");
    }

    [Fact]
    public void CatGivesTheWeightedSumOfDeltasExactly()
    {
        using var first = LoraAdapter.Load(AdapterFixtures.LoraAll, AdapterFixtures.BaseConfig());
        using var second = Second();
        using var combined = AdapterCombination.AddWeighted([(first, 0.7), (second, -1.3)], "cat", "mix");
        Assert.Equal(35, combined.Modules.Count);
        Assert.Equal(6, combined.Get(0, "q_proj")!.Rank);
        Assert.Equal(4, combined.Get(0, "o_proj")!.Rank);
        foreach (var m in combined.Modules)
        {
            Assert.Equal(1f, m.Scaling);
            var expected = Delta(first.Get(m.Layer, m.Module), m.OutFeatures, m.InFeatures).Select(v => 0.7 * v)
                .Zip(Delta(second.Get(m.Layer, m.Module), m.OutFeatures, m.InFeatures), (a, b) => a - 1.3 * b).ToArray();
            AssertDeltaEquals(expected, m.DeltaWeight(), 1e-6, $"cat {m}");
        }
        AssertSavesAndReloads(combined);
    }

    [Fact]
    public void LinearScalesAAndBBySquareRootOfWeightTimesScaling()
    {
        var baseConfig = AdapterFixtures.BaseConfig();
        using var first = LoraAdapter.Load(AdapterFixtures.LoraAll, baseConfig);
        using var second = Second(rank: 4, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
        using var combined = AdapterCombination.AddWeighted([(first, 0.5), (second, 2.0)], "linear", "lin");
        foreach (var m in combined.Modules)
        {
            var a = first.Get(m.Layer, m.Module)!;
            var b = second.Get(m.Layer, m.Module)!;
            float fa = MathF.Sqrt(0.5f * a.Scaling), fb = MathF.Sqrt(2f * b.Scaling);
            for (int i = 0; i < m.AValues.Length; i++) Assert.Equal(fa * a.AValues[i] + fb * b.AValues[i], m.AValues[i], 1e-6);
            for (int i = 0; i < m.BValues.Length; i++) Assert.Equal(fa * a.BValues[i] + fb * b.BValues[i], m.BValues[i], 1e-6);
        }
        // One adapter alone: (√(ws)·B)(√(ws)·A) = w·s·B·A.
        using var alone = AdapterCombination.AddWeighted([(first, 0.25)], "svd", "alone");
        foreach (var m in alone.Modules)
            AssertDeltaEquals(first.Get(m.Layer, m.Module)!.DeltaWeight().Select(v => 0.25 * v).ToArray(), m.DeltaWeight(), 1e-5, $"single {m}");
    }

    [Fact]
    public void LinearRefusesDifferentRanksAndPutsANegativeSignOnAOnly()
    {
        using var first = LoraAdapter.Load(AdapterFixtures.LoraAll, AdapterFixtures.BaseConfig());
        using var second = Second(rank: 2);
        var e = Assert.Throws<ArgumentException>(() => AdapterCombination.AddWeighted([(first, 1), (second, 1)], "linear", "x"));
        Assert.Contains("same rank", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => AdapterCombination.AddWeighted([(first, 1), (second, 1)], "ties", "x", new CombinationOptions { Density = 0.5 }));
        Assert.Contains("same rank", e.Message, StringComparison.Ordinal);
        // PEFT: A gets sign(w·s)·√|w·s|, B gets √|w·s|, so one adapter with weight −1 gives −ΔW.
        using var negated = AdapterCombination.AddWeighted([(first, -1)], "linear", "x");
        foreach (var m in negated.Modules)
        {
            var source = first.Get(m.Layer, m.Module)!;
            float f = MathF.Sqrt(source.Scaling);
            for (int i = 0; i < m.BValues.Length; i++) Assert.Equal(f * source.BValues[i], m.BValues[i], 1e-6);
            AssertDeltaEquals(source.DeltaWeight().Select(v => -v).ToArray(), m.DeltaWeight(), 1e-6, $"negated {m}");
        }
    }

    [Fact]
    public void SvdAtFullRankReproducesTheSumAndTruncatesOptimally()
    {
        using var first = LoraAdapter.Load(AdapterFixtures.LoraAll, AdapterFixtures.BaseConfig());
        using var second = Second();
        using var full = AdapterCombination.AddWeighted([(first, 1.0), (second, -0.5)], "svd", "full", svdRank: 6);
        using var truncated = AdapterCombination.AddWeighted([(first, 1.0), (second, -0.5)], "svd", "cut", svdRank: 2);
        Assert.Equal(6, full.Config.R);
        Assert.Equal(6, full.Config.LoraAlpha);
        foreach (var m in full.Modules)
        {
            var expected = Delta(first.Get(m.Layer, m.Module), m.OutFeatures, m.InFeatures)
                .Zip(Delta(second.Get(m.Layer, m.Module), m.OutFeatures, m.InFeatures), (a, b) => a - 0.5 * b).ToArray();
            AssertDeltaEquals(expected, m.DeltaWeight(), 1e-5, $"svd full {m}");

            // Truncation keeps the largest singular values: the residual is what the full SVD's tail holds.
            var t = truncated.Get(m.Layer, m.Module)!;
            var sigmas = Enumerable.Range(0, m.Rank).Select(j => ColumnNorm(m, j)).ToArray();
            for (int j = 1; j < sigmas.Length; j++) Assert.True(sigmas[j] <= sigmas[j - 1] * (1 + 1e-6), $"{m}: singular values not descending");
            double tail = sigmas.Skip(2).Sum(s => s * s);
            double residual = expected.Zip(t.DeltaWeight(), (a, b) => (a - b) * (a - b)).Sum();
            double total = expected.Sum(v => v * v);
            Assert.True(Math.Abs(residual - tail) <= 1e-5 * total + 1e-12, $"{m}: residual {residual} vs σ tail {tail}");
            // A' rows are orthonormal (A' = Vᵀ).
            for (int p = 0; p < t.Rank; p++)
                for (int q = 0; q < t.Rank; q++)
                {
                    double dot = 0;
                    for (int i = 0; i < t.InFeatures; i++) dot += (double)t.AValues[p * t.InFeatures + i] * t.AValues[q * t.InFeatures + i];
                    Assert.Equal(p == q ? 1.0 : 0.0, dot, 4);
                }
        }
        AssertSavesAndReloads(truncated);
    }

    private static double ColumnNorm(LoraModule m, int column)
    {
        double sum = 0;
        for (int o = 0; o < m.OutFeatures; o++) sum += (double)m.BValues[o * m.Rank + column] * m.BValues[o * m.Rank + column];
        return Math.Sqrt(sum);
    }

    [Fact]
    public void LowRankSvdFormsTheProductWhenTheInnerRankIsLarge()
    {
        // out = 3 < R = 4 and in = 5: the direct (transposed) Jacobi path.
        var random = new Random(3);
        var bc = Enumerable.Range(0, 12).Select(_ => random.NextDouble() - 0.5).ToArray();
        var ac = Enumerable.Range(0, 20).Select(_ => random.NextDouble() - 0.5).ToArray();
        var (b, a) = LowRankSvd.Truncate(bc, ac, 3, 5, 4, 3);
        var expected = new double[15];
        var actual = new double[15];
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < 5; i++)
            {
                for (int k = 0; k < 4; k++) expected[o * 5 + i] += bc[o * 4 + k] * ac[k * 5 + i];
                for (int k = 0; k < 3; k++) actual[o * 5 + i] += b[o * 3 + k] * a[k * 5 + i];
            }
        AssertDeltaEquals(expected, actual, 1e-12, "direct svd");
    }

    [Fact]
    public void AloraCannotBeCombined()
    {
        using var alora = LoraAdapter.Load(AdapterFixtures.AloraQkv, AdapterFixtures.BaseConfig());
        var e = Assert.Throws<InvalidOperationException>(() => AdapterCombination.AddWeighted([(alora, 1)], "cat", "x"));
        Assert.Contains("aLoRA", e.Message, StringComparison.Ordinal);
    }

    private static void AssertSavesAndReloads(LoraAdapter adapter)
    {
        using var temp = new TempFolder();
        adapter.Save(temp.Path);
        using var reloaded = LoraAdapter.Load(temp.Path, adapter.BaseConfig);
        Assert.Equal(adapter.Modules.Count, reloaded.Modules.Count);
        foreach (var m in adapter.Modules)
        {
            var r = reloaded.Get(m.Layer, m.Module)!;
            Assert.Equal((m.Rank, m.Scaling), (r.Rank, r.Scaling));
            Assert.True(m.AValues.SequenceEqual(r.AValues) && m.BValues.SequenceEqual(r.BValues), $"{m}: reloaded tensors differ");
        }
    }
}

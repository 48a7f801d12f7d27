using System.Text.Json;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Xunit.Abstractions;

namespace Alora.Tests.Adapters;

/// <summary>
/// PEFT's add_weighted_adapter types (ties, dare, magnitude_prune and their svd forms) against
/// tests/Alora.Tests/Fixtures/merge-stories260K, made by tools/reference/merge_reference.py (numpy, float64, from PEFT's
/// semantics); DARE's random masks are drawn there and given to Alora, and the seeded masks are tested for their statistics.
/// </summary>
public sealed class MergeTypeTests(ITestOutputHelper output)
{
    public static string FixtureRoot { get; } = Path.Combine(SharedPaths.RepositoryRoot, "tests", "Alora.Tests", "Fixtures", "merge-stories260K");

    private static ModelConfig BaseConfig() => ModelConfig.FromFile(Path.Combine(SharedPaths.Stories260K, "config.json"));

    private static LoraAdapter LoadFixtureAdapter(string name, ModelConfig config) => LoraAdapter.Load(Path.Combine(FixtureRoot, "adapters", name), config, name);

    public static TheoryData<int> Cases()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureRoot, "reference.json")));
        var data = new TheoryData<int>();
        for (int k = 0; k < json.RootElement.GetProperty("cases").GetArrayLength(); k++) data.Add(k);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EachTypeMatchesTheReference(int caseIndex)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureRoot, "reference.json")));
        var weights = json.RootElement.GetProperty("weights").EnumerateArray().Select(w => w.GetDouble()).ToArray();
        var names = json.RootElement.GetProperty("adapters").EnumerateArray().Select(n => n.GetString()!).ToArray();
        var c = json.RootElement.GetProperty("cases")[caseIndex];
        string type = c.GetProperty("type").GetString()!;
        double? Optional(string field) => c.TryGetProperty(field, out var v) ? v.GetDouble() : null;

        var config = BaseConfig();
        var adapters = names.Select(n => LoadFixtureAdapter(n, config)).ToList();
        using var masks = SafeTensorsFile.Open(Path.Combine(FixtureRoot, "masks.safetensors"));
        using var expected = SafeTensorsFile.Open(Path.Combine(FixtureRoot, "expected.safetensors"));
        int asked = 0;
        var options = new CombinationOptions
        {
            Density = Optional("density"),
            MajoritySignMethod = c.TryGetProperty("majority_sign_method", out var m) ? m.GetString()! : "total",
            SvdRank = Optional("svd_rank") is { } r ? (int)r : null,
            SvdClamp = Optional("svd_clamp"),
            DareMask = request =>
            {
                asked++;
                var values = masks.ReadFloats($"L{request.Layer}.{request.Module}.{request.Tensor}.{request.AdapterIndex}");
                Assert.Equal(request.Length, values.Length);
                return values.Select(v => v != 0).ToArray();
            },
        };
        try
        {
            using var combined = AdapterCombination.AddWeighted(adapters.Select((a, i) => (a, weights[i])).ToList(), type, "mix", options);
            Assert.Equal(3, combined.Modules.Count);
            if (type.StartsWith("dare", StringComparison.Ordinal)) Assert.True(asked > 0, "the DARE masks were not asked for");
            double worst = 0;
            foreach (var module in combined.Modules)
            {
                Assert.Equal(1f, module.Scaling);
                string prefix = $"case_{caseIndex}.L{module.Layer}.{module.Module}";
                bool factors = expected.Tensors.ContainsKey(prefix + ".A");
                if (factors)
                {
                    worst = Math.Max(worst, Compare(expected.ReadFloats(prefix + ".A"), module.AValues, $"{type} {prefix}.A"));
                    worst = Math.Max(worst, Compare(expected.ReadFloats(prefix + ".B"), module.BValues, $"{type} {prefix}.B"));
                }
                if (expected.Tensors.ContainsKey(prefix + ".delta"))
                    worst = Math.Max(worst, Compare(expected.ReadFloats(prefix + ".delta"), module.DeltaWeight().Select(v => (float)v).ToArray(), $"{type} {prefix}.delta"));
            }
            output.WriteLine($"case {caseIndex} ({type}): max |diff| / max |reference| = {worst:E2}");
        }
        finally
        {
            foreach (var a in adapters) a.Dispose();
        }
    }

    private static double Compare(float[] reference, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(reference.Length, actual.Length);
        double scale = Math.Max(1e-12, reference.Max(v => Math.Abs((double)v)));
        double maxDiff = 0;
        for (int i = 0; i < reference.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs((double)reference[i] - actual[i]));
        Assert.True(maxDiff <= 2e-6 * scale, $"{what}: max |diff| {maxDiff} (max |reference| {scale})");
        return maxDiff / scale;
    }

    [Fact]
    public void PruningSelectsTheLargestMagnitudesAndElectsSigns()
    {
        // Hand-computed: k = ⌊0.5·5⌋ = 2 of the largest |x|.
        Assert.Equal([0, -5, 0, 4, 0], TaskArithmetic.MagnitudePrune([1, -5, 2, 4, -3], 0.5));
        Assert.Equal([0, 0, 0, 0, 0], TaskArithmetic.MagnitudePrune([1, -5, 2, 4, -3], 0.1));
        Assert.Equal([1, -5, 2, 4, -3], TaskArithmetic.MagnitudePrune([1, -5, 2, 4, -3], 1));
        // Equal magnitudes at the cut: the lower index wins.
        Assert.Equal([2, 0, 0], TaskArithmetic.MagnitudePrune([2, -2, 2], 0.4));
        double[][] t = [[3, -1, 0, 1], [-1, -1, 2, -2], [-1, 3, 0, -1]];
        // total: sums 1, 1, 2, −2 → + + + −; frequency: counts −1, −1, 1, −1 → − − + −.
        Assert.Equal([1, 1, 1, -1], TaskArithmetic.MajoritySign(t, "total"));
        Assert.Equal([-1, -1, 1, -1], TaskArithmetic.MajoritySign(t, "frequency"));
        // Disjoint mean of the weighted agreeing entries (weights 1, 2, 3); a zero never agrees.
        var merged = TaskArithmetic.DisjointMerge(t, [1, 2, 3], [1, 1, 1, -1]);
        Assert.Equal([3, 9, 4, (-4 - 3) / 2.0], merged);
        Assert.Throws<ArgumentException>(() => TaskArithmetic.MajoritySign(t, "mean"));
    }

    [Fact]
    public void SeededDareMasksKeepTheDensityAndRescaleTheMean()
    {
        const int length = 200_000;
        foreach (double density in new[] { 0.1, 0.5, 0.9 })
        {
            var mask = TaskArithmetic.DareMask(seed: 7, key: 42, length, density);
            double kept = mask.Count(k => k) / (double)length;
            double sigma = Math.Sqrt(density * (1 - density) / length);
            Assert.True(Math.Abs(kept - density) <= 5 * sigma, $"density {density}: kept fraction {kept}");
            // Rescaled by 1/d, the pruned tensor keeps the mean of a constant tensor: E[x·mask/d] = x.
            var ones = Enumerable.Repeat(1.0, length).ToArray();
            double mean = TaskArithmetic.RandomPrune(ones, mask, density).Average();
            Assert.True(Math.Abs(mean - 1) <= 5 * sigma / density, $"density {density}: rescaled mean {mean}");
            // Neighbouring entries are independent: P(both kept) ≈ d².
            int pairs = 0;
            for (int j = 0; j + 1 < length; j += 2) if (mask[j] && mask[j + 1]) pairs++;
            double both = pairs / (length / 2.0);
            Assert.True(Math.Abs(both - density * density) <= 5 * Math.Sqrt(density * density * (1 - density * density) / (length / 2.0)), $"density {density}: pair rate {both}");
        }
        // Reproducible for a seed and a key; other seeds or keys give other masks.
        Assert.Equal(TaskArithmetic.DareMask(1, 2, 1000, 0.5), TaskArithmetic.DareMask(1, 2, 1000, 0.5));
        Assert.NotEqual(TaskArithmetic.DareMask(1, 2, 1000, 0.5), TaskArithmetic.DareMask(2, 2, 1000, 0.5));
        Assert.NotEqual(TaskArithmetic.DareMask(1, 2, 1000, 0.5), TaskArithmetic.DareMask(1, 3, 1000, 0.5));
    }

    [Fact]
    public void SeededDareCombinationIsReproducibleAndUnbiased()
    {
        var config = BaseConfig();
        using var a0 = LoadFixtureAdapter("a0", config);
        using var a1 = LoadFixtureAdapter("a1", config);
        (LoraAdapter, double)[] inputs = [(a0, 0.7), (a1, -1.2)];
        using var first = AdapterCombination.AddWeighted(inputs, "dare_linear", "x", new CombinationOptions { Density = 0.5, Seed = 3 });
        using var again = AdapterCombination.AddWeighted(inputs, "dare_linear", "x", new CombinationOptions { Density = 0.5, Seed = 3 });
        using var other = AdapterCombination.AddWeighted(inputs, "dare_linear", "x", new CombinationOptions { Density = 0.5, Seed = 4 });
        using var linear = AdapterCombination.AddWeighted(inputs, "linear", "x");
        var m = first.Get(1, "down_proj")!;
        Assert.True(m.AValues.SequenceEqual(again.Get(1, "down_proj")!.AValues));
        Assert.False(m.AValues.SequenceEqual(other.Get(1, "down_proj")!.AValues));
        // About half the entries of each adapter survive; the survivors are rescaled by 2, so the sum of A over many
        // entries stays near the linear combination's (unbiased), and about a quarter of A's entries (both dropped) are 0.
        var aLinear = linear.Get(1, "down_proj")!.AValues.ToArray();
        var aDare = m.AValues.ToArray();
        double zeros = aDare.Count(v => v == 0) / (double)aDare.Length;
        Assert.InRange(zeros, 0.25 - 0.06, 0.25 + 0.06);
        double meanAbsLinear = aLinear.Average(v => Math.Abs((double)v));
        double bias = Math.Abs(aDare.Sum(v => (double)v) - aLinear.Sum(v => (double)v)) / aDare.Length;
        Assert.True(bias < 0.1 * meanAbsLinear, $"DARE mean differs from linear's by {bias} (mean |A| {meanAbsLinear})");
    }

    [Fact]
    public void BadParametersAreRefusedWithTheReason()
    {
        var config = BaseConfig();
        using var a0 = LoadFixtureAdapter("a0", config);
        using var a1 = LoadFixtureAdapter("a1", config);
        (LoraAdapter, double)[] inputs = [(a0, 1), (a1, 1)];
        var e = Assert.Throws<ArgumentException>(() => AdapterCombination.AddWeighted(inputs, "ties", "x", new CombinationOptions()));
        Assert.Contains("needs a density", e.Message, StringComparison.Ordinal);
        var range = Assert.Throws<ArgumentOutOfRangeException>(() => AdapterCombination.AddWeighted(inputs, "dare_linear", "x", new CombinationOptions { Density = 0 }));
        Assert.Contains("DARE divides", range.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => AdapterCombination.AddWeighted(inputs, "magnitude_prune", "x", new CombinationOptions { Density = 1.5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => AdapterCombination.AddWeighted(inputs, "svd", "x", new CombinationOptions { SvdClamp = 2 }));
        e = Assert.Throws<ArgumentException>(() => AdapterCombination.AddWeighted(inputs, "ties", "x", new CombinationOptions { Density = 0.5, MajoritySignMethod = "mean" }));
        Assert.Contains("majority_sign_method", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => AdapterCombination.AddWeighted(inputs, "dare", "x", new CombinationOptions()));
        Assert.Contains("dare_linear", e.Message, StringComparison.Ordinal);
        // One adapter is combined linearly, as in PEFT, so a pruning type needs no density then.
        using var alone = AdapterCombination.AddWeighted([(a0, -0.5)], "ties", "x", new CombinationOptions());
        var source = a0.Get(1, "q_proj")!;
        var delta = alone.Get(1, "q_proj")!.DeltaWeight();
        var reference = source.DeltaWeight();
        for (int i = 0; i < delta.Length; i++) Assert.Equal(-0.5 * reference[i], delta[i], 5);
    }

    [Fact]
    public void SafeMergeRefusesNonFiniteWeightsAndMergesNothing()
    {
        var config = BaseConfig();
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var adapter = LoadFixtureAdapter("a0", config);
        var before = Snapshot(weights, 1, "v_proj");
        var beforeQ = Snapshot(weights, 1, "q_proj");
        var bad = adapter.Get(1, "v_proj")!;
        bad.BValues[5] = float.PositiveInfinity;
        var e = Assert.Throws<InvalidOperationException>(() => LoraMerge.Merge(weights, adapter, safeMerge: true));
        Assert.Contains("model.layers.1.self_attn.v_proj", e.Message, StringComparison.Ordinal);
        Assert.Contains("nothing was merged", e.Message, StringComparison.Ordinal);
        Assert.Equal(beforeQ, Snapshot(weights, 1, "q_proj"));
        Assert.Equal(before, Snapshot(weights, 1, "v_proj"));
        Assert.Empty(LoraMerge.MergedInto(weights));
        // NaN too, and merge-and-unload writes no weights file.
        bad.BValues[5] = float.NaN;
        using var temp = new TempFolder();
        e = Assert.Throws<InvalidOperationException>(() => LoraMerge.MergeAndUnload(SharedPaths.Stories260K, adapter, temp.File("merged"), safeMerge: true));
        Assert.Contains("v_proj", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(temp.File("merged"), "model.safetensors")));
        // A finite adapter merges the same with and without the check.
        bad.BValues[5] = 0.25f;
        using var plain = ModelWeights.Load(SharedPaths.Stories260K);
        LoraMerge.Merge(weights, adapter, safeMerge: true);
        LoraMerge.Merge(plain, adapter);
        Assert.Equal(Snapshot(plain, 1, "v_proj"), Snapshot(weights, 1, "v_proj"));
        Assert.NotEqual(before, Snapshot(weights, 1, "v_proj"));
    }

    private static unsafe float[] Snapshot(ModelWeights weights, int layer, string module)
    {
        var matrix = weights.Layers[layer].Projection(module);
        var values = new float[matrix.Rows * matrix.Cols];
        fixed (float* v = values) Alora.Kernels.Convert.ToSingle(v, matrix.Data, matrix.DType, values.Length);
        return values;
    }
}

using System.Diagnostics;
using Alora.Adapters;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// Adapter weight operations on a 1B-class layer shape (random bf16 weights, LoRA r=16 on all seven projections):
/// merge, unmerge, add_weighted_adapter (cat, svd), save/load and GGUF export; and the low-rank SVD against the
/// dense one-sided Jacobi it avoids (its peer, same run).
/// </summary>
internal static class AdapterBench
{
    public static void Run(int layers)
    {
        var config = new ModelConfig
        {
            Architecture = ModelArchitecture.Llama, HiddenSize = 2048, IntermediateSize = 5632, LayerCount = layers, HeadCount = 32,
            KeyValueHeadCount = 4, HeadDim = 64, VocabSize = 32000, RmsNormEps = 1e-5f,
        };
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        var loraConfig = new LoraConfig { R = 16, LoraAlpha = 32, TargetModulesRegex = LoraConfig.AllLinear, InitLoraWeights = "false" };
        using var first = LoraAdapter.Create("first", loraConfig, config, seed: 1);
        using var second = LoraAdapter.Create("second", loraConfig, config, seed: 2);
        Console.WriteLine($"adapter ops: {layers} layers of D=2048, F=5632, Hq/Hkv=32/4; LoRA r=16 on 7 projections ({first.ParameterCount / 1e6:F1} M parameters per adapter); {Environment.ProcessorCount} cores");

        double firstMerge = Once(() => LoraMerge.Merge(weights, first));     // includes the one-time bf16 → f32 copies
        LoraMerge.Unmerge(weights, first);
        double merge = double.MaxValue, unmerge = double.MaxValue;
        for (int run = 0; run < 3; run++)
        {
            merge = Math.Min(merge, Once(() => LoraMerge.Merge(weights, first)));
            unmerge = Math.Min(unmerge, Once(() => LoraMerge.Unmerge(weights, first)));
        }
        Console.WriteLine($"merge (first, with f32 copies): {firstMerge * 1e3,8:F1} ms   merge (best of 3): {merge * 1e3,8:F1} ms   unmerge: {unmerge * 1e3,8:F1} ms   ({merge / layers * 1e3:F1} ms per layer)");

        double cat = Once(() => AdapterCombination.AddWeighted([(first, 0.5), (second, 0.5)], "cat", "cat").Dispose());
        double svd = Once(() => AdapterCombination.AddWeighted([(first, 0.5), (second, 0.5)], "svd", "svd", svdRank: 16).Dispose());
        Console.WriteLine($"add_weighted_adapter cat: {cat * 1e3,8:F1} ms   svd to r=16: {svd * 1e3,8:F1} ms   ({svd / (7.0 * layers) * 1e3:F1} ms per module)");

        string folder = Path.Combine(Path.GetTempPath(), "alora-bench-adapter-" + Environment.ProcessId);
        try
        {
            double save = Once(() => first.Save(folder));
            double load = Once(() => LoraAdapter.Load(folder, config).Dispose());
            double export = Once(() => GgufLoraExport.Export(first, Path.Combine(folder, "adapter.gguf")));
            Console.WriteLine($"save: {save * 1e3,8:F1} ms   load: {load * 1e3,8:F1} ms   GGUF export: {export * 1e3,8:F1} ms");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }

        // The peer: a dense Jacobi SVD of the formed ΔW, on a shape small enough for it to finish.
        foreach (int n in new[] { 256, 512 })
        {
            var random = new Random(5);
            int r = 32;
            var bc = Enumerable.Range(0, n * r).Select(_ => random.NextDouble() - 0.5).ToArray();
            var ac = Enumerable.Range(0, r * n).Select(_ => random.NextDouble() - 0.5).ToArray();
            double lowRank = BenchTimer.Best(() => LowRankSvd.Truncate(bc, ac, n, n, r, 16), minSeconds: 0.2);
            // innerRank = n routes Truncate to the dense path: the same ΔW, padded with zero columns.
            var bcPadded = new double[n * n];
            var acPadded = new double[n * n];
            for (int i = 0; i < n; i++) for (int k = 0; k < r; k++) bcPadded[i * n + k] = bc[i * r + k];
            Array.Copy(ac, acPadded, ac.Length);
            double dense = Once(() => LowRankSvd.Truncate(bcPadded, acPadded, n, n, n, 16));
            Console.WriteLine($"svd of a rank-{r} {n}x{n} delta to r=16: low-rank QR+Jacobi {lowRank * 1e3,8:F2} ms   dense Jacobi {dense * 1e3,9:F1} ms   ratio {dense / lowRank:F0}x");
        }
    }

    private static double Once(Action action)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}

using System.Diagnostics;
using System.Globalization;
using Alora.Adapters;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// Time of PEFT's base-rewriting initialisations (pissa: full one-sided Jacobi SVD per projection; olora: r
/// Householder steps) on stories260K and on one layer of the SmolLM2-135M shape. One run each (the init is a
/// one-off and rewrites the weights, so it is not repeated on the same model).
/// </summary>
internal static class MutatedInitBench
{
    private static readonly string[] AllProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public static void Run(string sharedDir, int rank)
    {
        Console.WriteLine($"r = {rank} on q/k/v/o/gate/up/down");
        Console.WriteLine("| model | layers | init | seconds |");
        Console.WriteLine("| --- | --- | --- | --- |");
        foreach (string init in new[] { "olora", "pissa" })
        {
            using (var stories = ModelWeights.Load(Path.Combine(sharedDir, "models", "stories260K")))
                Measure("stories260K", stories, init, rank, null);
            var config = ModelConfig.FromFile(Path.Combine(sharedDir, "configs", "smollm2-135m", "config.json"));
            using var smol = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
            Measure("SmolLM2-135M shape (random)", smol, init, rank, [0]);
        }
    }

    private static void Measure(string name, ModelWeights weights, string init, int rank, int[]? layers)
    {
        var config = new LoraConfig { R = rank, LoraAlpha = 2 * rank, TargetModules = AllProjections, LayersToTransform = layers, InitLoraWeights = init };
        long start = Stopwatch.GetTimestamp();
        using var adapter = LoraAdapter.Create("bench", config, weights, 1);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {(layers is null ? "all " + weights.Config.LayerCount : "1 of " + weights.Config.LayerCount)} | {init} | {seconds:F2} |"));
    }
}

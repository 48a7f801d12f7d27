using System.Diagnostics;
using System.Globalization;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Training;

namespace Alora.Bench;

/// <summary>
/// LoRA training step (forward + backward) against the trainer's own forward alone, measured in the same run:
/// the ratio says what the backward costs (about 2× the forward's matrix work is the textbook figure, so a step
/// near 3× the forward is the target). Also with and without gradient checkpointing, and the activation memory.
/// </summary>
internal static class TrainingBench
{
    public static void Run(int rows, int length)
    {
        Console.WriteLine($"{WorkerPool.Shared.ThreadCount} threads; batch {rows} × {length} tokens, LoRA r 8 on q/k/v/o/gate/up/down, every position labelled");
        Console.WriteLine("| model | weights | checkpointing | lora dropout | activation MB | forward s | step s | step / forward | step tokens/s |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        using (var stories = ModelWeights.Load(Path.Combine(BenchPaths.SharedRoot(), "models", "stories260K")))
        {
            Measure("stories260K", stories, rows, length);
        }
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var smol = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        Measure("SmolLM2-135M shape (random)", smol, rows, length);
    }

    private static void Measure(string name, ModelWeights weights, int rows, int length)
    {
        var c = weights.Config;
        using var lora = new TrainableLora(c, ForwardAdapter.Modules, 8, 2f);
        var random = new Random(1);
        foreach (var m in lora.Modules)
        {
            foreach (ref float a in m.AValues) a = (float)(random.NextDouble() - 0.5) * 0.02f;
            foreach (ref float b in m.BValues) b = (float)(random.NextDouble() - 0.5) * 0.02f;
        }
        var batch = Enumerable.Range(0, rows).Select(r =>
        {
            int[] ids = Enumerable.Range(0, length).Select(i => (i * 7919 + r * 104729 + 13) % c.VocabSize).ToArray();
            return new TrainingRow(ids, ids, 0);
        }).ToList();
        // The dropout row measures the cost of hashing the mask (forward, and twice again in the backward).
        foreach (var (checkpointing, dropout) in new[] { (false, 0f), (true, 0f), (false, 0.1f) })
        {
            using var trainer = new DecoderTrainer(weights, lora, rows, length, checkpointing, new LoraDropout(dropout, 1));
            double forward = BenchTimer.Best(() => trainer.Loss(batch), minSeconds: 1, minRuns: 2);
            double step = BenchTimer.Best(() => trainer.ForwardBackward(batch), minSeconds: 1, minRuns: 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {weights.Embedding.DType} | {(checkpointing ? "on" : "off")} | {dropout} | {trainer.ActivationBytes / 1e6:F1} | {forward:F3} | {step:F3} | {step / forward:F2}x | {rows * length / step:F0} |"));
        }
    }
}

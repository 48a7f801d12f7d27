using System.Diagnostics;
using System.Globalization;
using Alora.Adapters;
using Alora.Inference;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// DoRA's inference overhead against plain LoRA of the same rank, in one run: SmolLM2-135M shape (random bf16 weights),
/// r = 16 on all seven projections, the same A and B; DoRA adds the magnitude (its weight norms are computed once, on
/// the first forward, and cached). Decode (one token per step after a 16-token prompt) and prefill (512 tokens), rounds
/// alternating base, LoRA and DoRA; best of the rounds. Prints the ratios DoRA / LoRA and LoRA / base; then one
/// training step (forward + backward over 128 tokens) with each, alternated.
/// </summary>
internal static class DoraBench
{
    public static void Run(int rounds = 3)
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        var loraConfig = new LoraConfig { R = 16, LoraAlpha = 32, TargetModulesRegex = LoraConfig.AllLinear, InitLoraWeights = "false" };
        using var lora = LoraAdapter.Create("lora", loraConfig, config, seed: 1);
        using var dora = LoraAdapter.Create("dora", loraConfig with { UseDora = true }, weights, seed: 1);
        using var model = new DecoderModel(weights, maxBatchTokens: 512);
        var adapters = new (string Name, ForwardAdapter? Adapter)[] { ("base", null), ("LoRA r16", lora.AsForwardAdapter()), ("DoRA r16", dora.AsForwardAdapter()) };

        long start = Stopwatch.GetTimestamp();
        Prefill(model, dora.AsForwardAdapter(), 8);   // the one-time weight norms
        double normSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"SmolLM2-135M shape, bf16 weights, all 7 projections, r = 16; {Alora.Kernels.WorkerPool.Shared.ThreadCount} threads; first DoRA forward (weight norms of 210 projections): {normSeconds * 1e3:F0} ms"));

        var decode = new double[adapters.Length];
        var prefill = new double[adapters.Length];
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < adapters.Length; i++)
            {
                decode[i] = Math.Max(decode[i], DecodeTokensPerSecond(model, adapters[i].Adapter, steps: 48));
                prefill[i] = Math.Max(prefill[i], 512 / Prefill(model, adapters[i].Adapter, 512));
            }
        Console.WriteLine("| adapter | decode tokens/s | prefill tokens/s (512) |");
        Console.WriteLine("| --- | ---: | ---: |");
        for (int i = 0; i < adapters.Length; i++)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {adapters[i].Name} | {decode[i]:F1} | {prefill[i]:F0} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"DoRA / LoRA time per token: decode {decode[1] / decode[2]:F3}x, prefill {prefill[1] / prefill[2]:F3}x   (LoRA / base: decode {decode[0] / decode[1]:F3}x, prefill {prefill[0] / prefill[1]:F3}x)"));

        // One training step (forward + backward, 1 row of 128 tokens, every position labelled), LoRA vs DoRA, alternated.
        using var loraTrainable = new Alora.Training.TrainableLora(lora);
        using var doraTrainable = new Alora.Training.TrainableLora(dora);
        int[] ids = Enumerable.Range(0, 128).Select(i => 100 + i * 37 % 4000).ToArray();
        var rows = new List<Alora.Training.TrainingRow> { new(ids, ids, 0) };
        using var loraTrainer = new Alora.Training.DecoderTrainer(weights, loraTrainable, 1, 128);
        using var doraTrainer = new Alora.Training.DecoderTrainer(weights, doraTrainable, 1, 128);
        double loraStep = double.MaxValue, doraStep = double.MaxValue;
        for (int round = 0; round < rounds; round++)
        {
            loraStep = Math.Min(loraStep, BenchTimer.Best(() => loraTrainer.ForwardBackward(rows), minSeconds: 0.5, minRuns: 2));
            doraStep = Math.Min(doraStep, BenchTimer.Best(() => doraTrainer.ForwardBackward(rows), minSeconds: 0.5, minRuns: 2));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"training step (1 × 128 tokens): LoRA {loraStep * 1e3:F0} ms, DoRA {doraStep * 1e3:F0} ms (with its per-step weight norms): DoRA / LoRA {doraStep / loraStep:F3}x"));
    }

    private static double Prefill(DecoderModel model, ForwardAdapter? adapter, int tokens)
    {
        using var cache = model.CreateCache(tokens + 16);
        using var sequence = new KvSequence(cache);
        var prompt = Enumerable.Range(0, tokens).Select(i => 100 + i * 37 % 4000).ToArray();
        var logits = new float[model.VocabSize];
        long start = Stopwatch.GetTimestamp();
        model.Forward([new SequenceChunk(sequence, prompt, LogitRows.Last, adapter, 0)], logits);
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double DecodeTokensPerSecond(DecoderModel model, ForwardAdapter? adapter, int steps)
    {
        using var cache = model.CreateCache(16 + steps + 16);
        using var sequence = new KvSequence(cache);
        var logits = new float[model.VocabSize];
        model.Forward([new SequenceChunk(sequence, Enumerable.Range(100, 16).ToArray(), LogitRows.Last, adapter, 0)], logits);
        var token = new int[1];
        long start = Stopwatch.GetTimestamp();
        for (int s = 0; s < steps; s++)
        {
            token[0] = 100 + s;
            model.Forward([new SequenceChunk(sequence, token, LogitRows.Last, adapter, 0)], logits);
        }
        return steps / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }
}

using System.Diagnostics;
using System.Globalization;
using Alora.Inference;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// Whole-model scenarios: decode tokens/s against the memory roofline, prefill tokens/s, and stories260K
/// decode against llama2.c's run.c measured in the same run.
/// </summary>
internal static class ModelBench
{
    /// <summary>Bytes a decode step must stream: every weight matrix once (the LM head included).</summary>
    private static long WeightBytesPerToken(ModelWeights weights)
    {
        long bytes = weights.LmHead.ByteCount;
        foreach (var layer in weights.Layers)
            foreach (var module in ParameterLayout.AttentionProjections.Concat(ParameterLayout.MlpProjections))
                bytes += layer.Projection(module).ByteCount;
        return bytes;
    }

    /// <summary>Decode tokens/s of one sequence after a short prompt, best of a few runs.</summary>
    private static double DecodeTokensPerSecond(DecoderModel model, int promptLength, int steps, int runs = 3)
    {
        double best = 0;
        var logits = new float[model.VocabSize];
        for (int run = 0; run < runs; run++)
        {
            using var cache = model.CreateCache(promptLength + steps + 16);
            using var sequence = new KvSequence(cache);
            sequence.Reserve(promptLength + steps + 1);
            var prompt = Enumerable.Range(0, promptLength).Select(i => (i * 7919 + 13) % model.VocabSize).ToArray();
            model.Forward([new SequenceChunk(sequence, prompt, LogitRows.Last)], logits);
            var token = new int[1];
            SequenceChunk[] step = [new SequenceChunk(sequence, token, LogitRows.Last)];
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < steps; i++)
            {
                token[0] = Sampler.ArgMax(logits);
                model.Forward(step, logits);
            }
            best = Math.Max(best, steps / Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return best;
    }

    private static double PrefillTokensPerSecond(DecoderModel model, int tokens, int runs = 2)
    {
        double best = 0;
        var logits = new float[model.VocabSize];
        var prompt = Enumerable.Range(0, tokens).Select(i => (i * 7919 + 13) % model.VocabSize).ToArray();
        for (int run = 0; run < runs; run++)
        {
            using var cache = model.CreateCache(tokens + 16);
            using var sequence = new KvSequence(cache);
            long start = Stopwatch.GetTimestamp();
            model.Forward([new SequenceChunk(sequence, prompt, LogitRows.Last)], logits);
            best = Math.Max(best, tokens / Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return best;
    }

    /// <summary>
    /// Decode tokens/s against the roofline. The host moves this VM's two vCPUs between separate cores (read
    /// bandwidth ~65 GB/s) and one shared core (~37 GB/s) from minute to minute, so every decode measurement is
    /// bracketed by two bandwidth measurements and compared with the higher of them (the stricter roofline).
    /// </summary>
    public static void Decode(int rounds = 3)
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        Console.WriteLine($"threads: {Alora.Kernels.WorkerPool.Shared.ThreadCount}; bandwidth = 1 GiB streaming read, before and after each decode measurement");
        Console.WriteLine("| model | weights | weight MB/token | round | read GB/s (before / after) | decode tokens/s | roofline tokens/s | ratio |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var dtype in new[] { DType.BF16, DType.F32 })
        {
            using var weights = ModelWeights.CreateRandom(config, dtype, seed: 1);
            using var model = new DecoderModel(weights);
            long bytes = WeightBytesPerToken(weights);
            for (int round = 1; round <= rounds; round++)
            {
                double before = MemoryBandwidth.MeasureReadGBps(repeats: 3);
                double measured = DecodeTokensPerSecond(model, promptLength: 16, steps: 64);
                double after = MemoryBandwidth.MeasureReadGBps(repeats: 3);
                double roofline = Math.Max(before, after) * 1e9 / bytes;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| SmolLM2-135M shape (random) | {dtype} | {bytes / 1e6:F1} | {round} | {before:F1} / {after:F1} | {measured:F1} | {roofline:F1} | {measured / roofline:F2}x |"));
            }
        }
    }

    public static void Prefill()
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        Console.WriteLine("| model | weights | prompt tokens | prefill tokens/s |");
        Console.WriteLine("| --- | --- | --- | --- |");
        foreach (var dtype in new[] { DType.BF16, DType.F32 })
        {
            using var weights = ModelWeights.CreateRandom(config, dtype, seed: 1);
            using var model = new DecoderModel(weights, maxBatchTokens: 512);
            foreach (int tokens in new[] { 512, 2048 })
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| SmolLM2-135M shape (random) | {dtype} | {tokens} | {PrefillTokensPerSecond(model, tokens):F1} |"));
        }
    }

    /// <summary>stories260K: our decode tokens/s against llama2.c's run.c (a binary the caller built locally).</summary>
    public static void Llama2C(string runBinary, int threads)
    {
        string folder = Path.Combine(BenchPaths.SharedRoot(), "models", "stories260K");
        const int steps = 256;
        using var weights = ModelWeights.Load(folder);
        using var model = new DecoderModel(weights);
        double ours = DecodeTokensPerSecond(model, promptLength: 5, steps: steps - 5, runs: 5);

        double peer = 0;
        for (int run = 0; run < 5; run++)
        {
            var info = new ProcessStartInfo(runBinary)
            {
                ArgumentList = { Path.Combine(folder, "stories260K.bin"), "-z", Path.Combine(folder, "tok512.bin"), "-t", "0", "-n", steps.ToString(CultureInfo.InvariantCulture), "-i", "Once upon a time" },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            info.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
            using var process = Process.Start(info)!;
            string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit();
            int at = output.LastIndexOf("achieved tok/s:", StringComparison.Ordinal);
            if (at < 0) throw new InvalidOperationException($"{runBinary} printed no 'achieved tok/s': {output}");
            peer = Math.Max(peer, double.Parse(output[(at + 15)..].Trim(), CultureInfo.InvariantCulture));
        }
        Console.WriteLine("| model | Alora decode tokens/s | llama2.c run.c tokens/s | ratio |");
        Console.WriteLine("| --- | --- | --- | --- |");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| stories260K ({threads} threads for run.c) | {ours:F0} | {peer:F0} | {ours / peer:F2}x |"));
    }
}

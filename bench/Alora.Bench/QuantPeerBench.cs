using System.Globalization;
using Alora.Formats;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

// Legend: P = prompt tokens, S = decode steps, V = vocab.

/// <summary>
/// decode-quant-peer: single-stream decode tokens/s on the same quantized GGUF files, Alora against llama.cpp
/// (bench/peers/LlamaCppPeer, LLamaSharp 0.30.0's CPU backend, in its own process), alternating rounds in one run.
/// The files are made by llama.cpp's own quantizer (LlamaCppPeer quantize) from a random-weight bf16 GGUF of a
/// Llama-3.2-1B shape cut to a few layers (tied embeddings, so the LM head reads token_embd, Q6_K in Q4_K_M).
/// "alora:Q4_K_M" is the same scheme written by `alora quantize` instead (llama.cpp decodes Alora's file).
/// Also prints the read-bandwidth roofline (bytes a token reads / the bandwidth measured in the same run).
/// </summary>
internal static class QuantPeerBench
{
    public static int Run(string[] args)
    {
        string? Value(string name)
        {
            int at = Array.IndexOf(args, name);
            return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
        }
        int Int(string name, int fallback) => Value(name) is string v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        int layers = Int("--layers", 4), steps = Int("--steps", 32), rounds = Int("--rounds", 3), promptLength = Int("--prompt-length", 8);
        string[] types = (Value("--types") ?? "Q8_0,Q4_K_M,alora:Q4_K_M").Split(',');
        string configName = Value("--config") ?? "llama-3.2-1b";
        string work = Value("--work") ?? Path.Combine(Path.GetTempPath(), "alora-quant-peer");
        Directory.CreateDirectory(work);
        int threads = WorkerPool.Shared.ThreadCount;

        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", configName, "config.json")) with { LayerCount = layers, RopeScaling = null };
        string source = Path.Combine(work, $"{configName}-{layers}l-random-bf16.gguf");
        if (!File.Exists(source))
        {
            using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
            LlamaGgufExport.Write(source, weights, Path.Combine(BenchPaths.SharedRoot(), "tokenizers", "llama3", "tokenizer.json"));
        }
        string peer = ConcurrencyPeerBench.BuildPeer();
        Console.WriteLine($"model: {configName} shape, {layers} layers, random bf16 weights → llama.cpp's quantizer; threads: Alora {threads}, llama.cpp {threads}; prompt {promptLength}, {steps} decode steps, {rounds} alternating rounds");
        Console.WriteLine($"load average: {LoadAverage()} (the machine is shared: compare the ratios, measured in the same run)");
        double bandwidth = MemoryBandwidth.MeasureReadGBps();
        Console.WriteLine($"read bandwidth {bandwidth:F1} GB/s");
        Console.WriteLine("| file | tensor types | MB read per token | Alora tok/s | llama.cpp tok/s | Alora / llama.cpp | roofline tok/s | Alora / roofline | logits: max abs diff / spread, argmax Alora / llama.cpp |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        foreach (string type in types)
        {
            // "alora:Q4_K_M": the file `alora quantize` writes (llama.cpp then reads Alora's file); else llama.cpp's quantizer.
            bool byAlora = type.StartsWith("alora:", StringComparison.Ordinal);
            string scheme = byAlora ? type["alora:".Length..] : type;
            string file = Path.Combine(work, $"{configName}-{layers}l-random-{scheme.ToLowerInvariant()}{(byAlora ? "-by-alora" : "")}.gguf");
            if (!File.Exists(file))
            {
                if (byAlora) GgufQuantize.Write(source, file, scheme);
                else ConcurrencyPeerBench.RunPeer(peer, "quantize", "--model", source, "--out", file, "--type", scheme, "--threads", Invariant(threads));
            }
            using var weights = ModelWeights.LoadGguf(file);
            using var decoder = new DecoderModel(weights, maxBatchTokens: 64);
            string histogram = string.Join(" ", weights.Parameters.Values.Where(t => t.Shape.Length == 2).GroupBy(t => t.DType).OrderBy(g => g.Key).Select(g => $"{g.Key}×{g.Count()}"));
            double bytesPerToken = BytesPerToken(weights);

            int[] prompt = Enumerable.Range(0, 24).Select(i => ConcurrencyPeerBench.PromptToken(2, i, decoder.VocabSize)).ToArray();
            float[] ours = ConcurrencyPeerBench.AloraLastLogits(decoder, prompt);
            float[]? theirs = null;
            foreach (var line in ConcurrencyPeerBench.RunPeer(peer, "logits", "--model", file, "--prompt-ids", string.Join(',', prompt), "--threads", Invariant(threads)))
                if (line.RootElement.TryGetProperty("logits", out var array)) theirs = array.EnumerateArray().Select(x => x.GetSingle()).ToArray();
            double diff = 0, lo = double.MaxValue, hi = double.MinValue;
            for (int v = 0; v < ours.Length; v++) { diff = Math.Max(diff, Math.Abs(ours[v] - theirs![v])); lo = Math.Min(lo, ours[v]); hi = Math.Max(hi, ours[v]); }

            double alora = double.MaxValue, llama = double.MaxValue;
            for (int round = 0; round < rounds; round++)
            {
                Thread.Sleep(300);
                foreach (var line in ConcurrencyPeerBench.RunPeer(peer, "decode", "--model", file, "--streams", "1", "--prompt-length", Invariant(promptLength),
                             "--steps", Invariant(steps), "--rounds", "2", "--threads", Invariant(threads)))
                    if (line.RootElement.TryGetProperty("streams", out _)) llama = Math.Min(llama, line.RootElement.GetProperty("ms_per_step").GetDouble() / 1000);
                Thread.Sleep(300);
                for (int inner = 0; inner < 2; inner++)
                    alora = Math.Min(alora, ConcurrencyPeerBench.AloraDecodeSeconds(decoder, 1, promptLength, steps) / steps);
            }
            double roofline = bandwidth * 1e9 / bytesPerToken;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {Path.GetFileName(file)} | {histogram} | {bytesPerToken / 1e6:F0} | {1 / alora:F1} | {1 / llama:F1} | {llama / alora:F2}x | {roofline:F0} | {1 / alora / roofline:F2} | {diff / (hi - lo):F4}, {Sampler.ArgMax(ours)} / {Sampler.ArgMax(theirs)} |"));
        }
        Console.WriteLine($"load average after: {LoadAverage()}");
        return 0;
    }

    /// <summary>Bytes of weight a decode step reads: every projection, the LM head once (one embedding row is negligible).</summary>
    private static double BytesPerToken(ModelWeights weights)
    {
        double bytes = weights.LmHead.ByteCount;
        foreach (var layer in weights.Layers)
            foreach (Projection p in Enum.GetValues<Projection>()) bytes += layer.Weight(p).ByteCount;
        return bytes;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}

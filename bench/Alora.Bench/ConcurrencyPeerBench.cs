using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

// Legend: N = concurrent streams (sequences decoded together), P = prompt tokens per sequence, S = decode steps,
// V = vocab.

/// <summary>
/// decode-concurrency-peer: aggregate decode tokens/s of N sequences decoded together, Alora's
/// <see cref="DecoderModel.Forward"/> against llama.cpp with parallel sequences (bench/peers/LlamaCppPeer, LLamaSharp
/// 0.30.0's CPU backend, in a process of its own), both on the same random-weight SmolLM2-135M-shape GGUF file.
/// Before the table it checks that both read the file alike (last-position logits of a few prompts).
/// </summary>
internal static class ConcurrencyPeerBench
{
    public sealed record Options(int[] Streams, int PromptLength, int Steps, int Rounds, DType DType, int Seed, string WorkDir, string? PeerDll, bool CheckOnly);

    public static Options ParseOptions(string[] args)
    {
        string? Value(string name)
        {
            int at = Array.IndexOf(args, name);
            return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
        }
        int Int(string name, int fallback) => Value(name) is string v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        var dtype = (Value("--dtype") ?? "bf16").ToUpperInvariant() switch
        {
            "BF16" => DType.BF16,
            "F16" => DType.F16,
            "F32" => DType.F32,
            var other => throw new ArgumentException($"--dtype {other}: expected bf16, f16 or f32"),
        };
        return new Options(
            (Value("--streams") ?? "1,4,16,64").Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray(),
            Int("--prompt-length", 8), Int("--steps", 32), Int("--rounds", 3), dtype, Int("--seed", 1),
            Value("--work") ?? Path.Combine(Path.GetTempPath(), "alora-concurrency-peer"), Value("--peer"), args.Contains("--check-only"));
    }

    /// <summary>
    /// The prompt token at <paramref name="index"/> of sequence <paramref name="sequence"/>: distinct prompts per
    /// sequence, ids ≥ 100 (clear of the tokenizer's special ids). LlamaCppPeer uses the same formula.
    /// </summary>
    public static int PromptToken(int sequence, int index, int vocab) => 100 + (sequence * 7919 + index * 131) % (vocab - 100);

    public static int Run(Options o)
    {
        string model = WriteModel(o.DType, o.Seed, o.WorkDir);
        string peer = o.PeerDll ?? BuildPeer();
        int threads = WorkerPool.Shared.ThreadCount;
        Console.WriteLine($"model: {model} ({new FileInfo(model).Length / 1e6:F1} MB, SmolLM2-135M shape, random {o.DType} weights, seed {o.Seed})");
        Console.WriteLine($"load average before: {LoadAverage()} (other processes on these 2 cores distort both sides, llama.cpp's OpenMP threads badly: run on a quiet machine)");
        Console.WriteLine($"threads: Alora WorkerPool {threads}, llama.cpp --threads {threads}; prompt {o.PromptLength} tokens per sequence (distinct), {o.Steps} decode steps, greedy argmax");

        // With an f32 file, llama.cpp's K/V are f32 too, so f32 is compared with f32.
        CrossCheckLogits(model, o.DType, o.Seed, peer, threads, kvF32: o.DType == DType.F32);
        if (o.CheckOnly) return 0;

        using var weights = ModelWeights.LoadGguf(model);
        using var decoder = new DecoderModel(weights, maxBatchTokens: Math.Max(256, o.Streams.Max()));

        // Alternate the two sides per N: a peer process (two rounds, best kept), then Alora (two rounds), R times.
        var ours = new Dictionary<int, double>();
        var theirs = new Dictionary<int, double>();
        string info = "";
        foreach (int n in o.Streams)
        {
            ours[n] = theirs[n] = double.MaxValue;
            for (int round = 0; round < o.Rounds; round++)
            {
                Thread.Sleep(300);
                foreach (var line in RunPeer(peer, "decode", "--model", model, "--streams", Invariant(n), "--prompt-length", Invariant(o.PromptLength),
                             "--steps", Invariant(o.Steps), "--rounds", "2", "--threads", Invariant(threads)))
                {
                    if (line.RootElement.TryGetProperty("info", out _)) info = line.RootElement.GetRawText();
                    if (line.RootElement.TryGetProperty("streams", out var s) && s.GetInt32() == n)
                        theirs[n] = Math.Min(theirs[n], line.RootElement.GetProperty("ms_per_step").GetDouble() / 1000);
                }
                Thread.Sleep(300);
                for (int inner = 0; inner < 2; inner++)
                    ours[n] = Math.Min(ours[n], AloraDecodeSeconds(decoder, n, o.PromptLength, o.Steps) / o.Steps);
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"N={n}: Alora {ours[n] * 1000:F2} ms/step, llama.cpp {theirs[n] * 1000:F2} ms/step; load average {LoadAverage()}"));
        }
        Console.WriteLine($"llama.cpp: {info}");
        int first = o.Streams[0];
        Console.WriteLine($"| streams | Alora tok/s | llama.cpp tok/s | Alora / llama.cpp | Alora scaling vs N={first} | llama.cpp scaling vs N={first} |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (int n in o.Streams)
        {
            double a = n / ours[n], l = n / theirs[n];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {n} | {a:F1} | {l:F1} | {a / l:F2}x | {a / (first / ours[first]):F2}x | {l / (first / theirs[first]):F2}x |"));
        }
        return 0;
    }

    /// <summary>
    /// Alora's side of one round, through the serving engine: <paramref name="streams"/> requests (prompts of
    /// PromptToken ids, greedy, end-of-sequence ignored) are admitted and prefilled, then the seconds that
    /// <paramref name="steps"/> engine steps take in which every stream decodes one token (schedule, one forward
    /// pass over N rows, sampling, streaming) are returned.
    /// </summary>
    public static double AloraDecodeSeconds(DecoderModel model, int streams, int promptLength, int steps)
    {
        var prompts = Enumerable.Range(0, streams).Select(s => Enumerable.Range(0, promptLength).Select(i => PromptToken(s, i, model.VocabSize)).ToArray()).ToArray();
        var times = EngineBench.DecodeStepTimes(model, prompts, steps);
        return times.Sum() * steps / Math.Max(1, times.Count);
    }

    /// <summary>Alora's last-position logits [V] of one prompt.</summary>
    public static float[] AloraLastLogits(DecoderModel model, int[] ids)
    {
        using var cache = model.CreateCache(ids.Length + 16);
        using var sequence = new KvSequence(cache);
        var logits = new float[model.VocabSize];
        model.Forward([new SequenceChunk(sequence, ids, LogitRows.Last)], logits);
        return logits;
    }

    /// <summary>
    /// Checks the GGUF two ways, on the last-position logits of a few prompts:
    /// (1) Alora on the GGUF against Alora on the weights it was written from (<see cref="RandomWeights"/>): the same
    /// numbers must come back exactly (0), which tests the export, its q/k permutation included. A comparison with
    /// llama.cpp cannot test that permutation: Alora's un-permute plus rotate-half RoPE equals llama.cpp's
    /// interleaved RoPE on whatever rows the file holds.
    /// (2) llama.cpp against Alora on the GGUF: llama.cpp keeps K/V in f16 (unless <paramref name="kvF32"/>) and
    /// rounds activations to the weights' type (bf16, f16) before its matmuls, and this 30-layer random model
    /// amplifies rounding, so about 1% of the largest logit is normal; a misread file (names, norms, RoPE mode,
    /// tied output) gives differences as large as the logits and a different argmax.
    /// Returns the max abs difference of (2).
    /// </summary>
    public static double CrossCheckLogits(string gguf, DType dtype, int seed, string peer, int threads, bool kvF32)
    {
        using var fileWeights = ModelWeights.LoadGguf(gguf);
        using var fromFile = new DecoderModel(fileWeights);
        using var memoryWeights = RandomWeights(dtype, seed);
        using var inMemory = new DecoderModel(memoryWeights);
        int[][] prompts = [[1234], [100, 2000, 3000, 4000, 5000], Enumerable.Range(0, 24).Select(i => PromptToken(3, i, fromFile.VocabSize)).ToArray()];
        double worst = 0, worstRoundTrip = 0;
        Console.WriteLine($"logits of {Path.GetFileName(gguf)} (llama.cpp K/V {(kvF32 ? "f32" : "f16")}):");
        Console.WriteLine("| prompt ids | tokens | Alora GGUF vs in-memory, max abs diff | llama.cpp vs Alora GGUF, max abs diff | max abs logit | argmax Alora / llama.cpp |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | --- |");
        foreach (var ids in prompts)
        {
            float[] ours = AloraLastLogits(fromFile, ids);
            float[] reference = AloraLastLogits(inMemory, ids);
            float[]? theirs = null;
            foreach (var line in RunPeer(peer, "logits", "--model", gguf, "--prompt-ids", string.Join(',', ids), "--threads", Invariant(threads), kvF32 ? "--kv-f32" : ""))
                if (line.RootElement.TryGetProperty("logits", out var array))
                    theirs = array.EnumerateArray().Select(x => x.GetSingle()).ToArray();
            if (theirs is null || theirs.Length != ours.Length)
                throw new InvalidOperationException($"LlamaCppPeer logits: expected {ours.Length} logits, got {theirs?.Length.ToString(CultureInfo.InvariantCulture) ?? "none"}");
            double diff = 0, roundTrip = 0, scale = 0;
            for (int v = 0; v < ours.Length; v++)
            {
                diff = Math.Max(diff, Math.Abs(ours[v] - theirs[v]));
                roundTrip = Math.Max(roundTrip, Math.Abs(ours[v] - reference[v]));
                scale = Math.Max(scale, Math.Abs(ours[v]));
            }
            worst = Math.Max(worst, diff);
            worstRoundTrip = Math.Max(worstRoundTrip, roundTrip);
            string shown = ids.Length <= 5 ? string.Join(',', ids) : string.Join(',', ids.Take(4)) + ",…";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {shown} | {ids.Length} | {roundTrip:G3} | {diff:G3} | {scale:G3} | {Sampler.ArgMax(ours)} / {Sampler.ArgMax(theirs)} |"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"logits cross-check over {prompts.Length} prompts: Alora GGUF vs in-memory {worstRoundTrip:G3} (must be 0), llama.cpp vs Alora {worst:G3}"));
        if (worstRoundTrip != 0) throw new InvalidOperationException($"{gguf}: Alora reads back different weights than were written (max abs logit diff {worstRoundTrip:G3})");
        return worst;
    }

    /// <summary>The random-weight SmolLM2-135M-shape model the GGUF is written from.</summary>
    public static ModelWeights RandomWeights(DType dtype, int seed)
        => ModelWeights.CreateRandom(ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json")), dtype, seed);

    /// <summary>
    /// Writes (or reuses) the random-weight SmolLM2-135M-shape GGUF with granite3's 49152-piece vocabulary
    /// (a StarCoder-family BPE like SmolLM2's, of the same size).
    /// </summary>
    public static string WriteModel(DType dtype, int seed, string workDir)
    {
        Directory.CreateDirectory(workDir);
        string path = Path.Combine(workDir, $"smollm2-135m-random-{dtype.ToString().ToLowerInvariant()}-seed{seed}.gguf");
        if (File.Exists(path)) return path;
        using var weights = RandomWeights(dtype, seed);
        LlamaGgufExport.Write(path, weights, Path.Combine(BenchPaths.SharedRoot(), "tokenizers", "granite3", "tokenizer.json"));
        return path;
    }

    /// <summary>Builds bench/peers/LlamaCppPeer in Release (a no-op when up to date) and returns its dll.</summary>
    internal static string BuildPeer()
    {
        string project = Path.Combine(BenchPaths.RepoRoot(), "bench", "peers", "LlamaCppPeer");
        var info = new ProcessStartInfo("dotnet") { ArgumentList = { "build", project, "-c", "Release", "-v", "quiet", "-nologo" }, RedirectStandardOutput = true };
        using var build = Process.Start(info)!;
        string output = build.StandardOutput.ReadToEnd();
        build.WaitForExit();
        if (build.ExitCode != 0) throw new InvalidOperationException($"building {project} failed:\n{output}");
        return Path.Combine(project, "bin", "Release", "net10.0", "LlamaCppPeer.dll");
    }

    /// <summary>Runs the peer in its own process; returns its JSON lines (stdout). Its stderr is shown only on failure.</summary>
    internal static List<JsonDocument> RunPeer(string dll, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(dll);
        foreach (string a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"LlamaCppPeer {string.Join(' ', args)} exited with {process.ExitCode}:\n{stderr.Result}\n{stdout}");
        return stdout.Split('\n').Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l)).ToList();
    }

    /// <summary>The 1-minute load average (/proc/loadavg), or "?" where there is none.</summary>
    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}

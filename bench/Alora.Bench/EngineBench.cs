using System.Diagnostics;
using System.Globalization;
using Alora.Inference;
using Alora.Models;
using Alora.Serving;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// The serving engine on the random-weight SmolLM2-135M shape (bf16), 2 threads:
/// <list type="bullet">
/// <item><c>engine-concurrency</c>: aggregate decode tokens/s with 1, 4, 16 and 64 streams decoding together;</item>
/// <item><c>engine-agentic</c>: 8 conversations growing by base-model turns, three aLoRA intrinsics invoked on
/// each after every turn; time to first token of the intrinsic calls and the prefix-cache hit rate, against
/// the same workload with LoRA intrinsics and with the prefix cache off.</item>
/// </list>
/// </summary>
internal static class EngineBench
{
    private static ModelConfig SmolLm2() => ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));

    private static string F(double value, string format = "F1") => value.ToString(format, CultureInfo.InvariantCulture);

    public static void Concurrency(int[] streamCounts, int steps = 32, int rounds = 3)
    {
        var config = SmolLm2();
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        using var model = new DecoderModel(weights, maxBatchTokens: 512);
        Console.WriteLine($"threads: {Alora.Kernels.WorkerPool.Shared.ThreadCount}; prompt 16 tokens per stream, {steps} decode steps, best of {rounds} rounds (decode steps only)");
        Console.WriteLine("| streams | ms per step | aggregate decode tokens/s | × one stream |");
        Console.WriteLine("| ---: | ---: | ---: | ---: |");
        double one = 0;
        foreach (int n in streamCounts)
        {
            double best = double.MaxValue;
            for (int round = 0; round < rounds; round++) best = Math.Min(best, DecodeStepSeconds(model, n, steps));
            double tokensPerSecond = n / best;
            if (n == 1) one = tokensPerSecond;
            Console.WriteLine($"| {n} | {F(best * 1e3, "F2")} | {F(tokensPerSecond)} | {(one > 0 ? F(tokensPerSecond / one, "F2") + "x" : "-")} |");
        }
    }

    /// <summary>Median seconds of the engine steps in which all <paramref name="n"/> streams decode one token.</summary>
    private static double DecodeStepSeconds(DecoderModel model, int n, int steps)
    {
        var random = new Random(n);
        var prompts = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, 16).Select(_ => random.Next(model.VocabSize)).ToArray()).ToArray();
        var times = DecodeStepTimes(model, prompts, steps);
        times.Sort();
        return times[times.Count / 2];
    }

    /// <summary>
    /// Seconds of each of <paramref name="steps"/> engine steps in which every prompt's request decodes one token
    /// (schedule, one forward pass over N rows, sampling, streaming); prefill steps are not timed. Greedy, EOS ignored.
    /// </summary>
    internal static List<double> DecodeStepTimes(DecoderModel model, int[][] prompts, int steps)
    {
        int n = prompts.Length;
        using var engine = new Engine(model, [], null, new EngineOptions
        {
            MaxRunningRequests = Math.Max(n, 1), MaxTokensPerStep = Math.Max(512, prompts.Sum(p => p.Length)),
            KvCacheTokens = prompts.Sum(p => p.Length + steps + 16) + 64, PrefixCaching = false,
        }, startLoop: false);
        var streams = prompts.Select(p => engine.Submit(new GenerationRequest { PromptIds = p, MaxTokens = steps + 2, IgnoreEos = true })).ToList();
        var times = new List<double>();
        while (engine.HasWork && times.Count < steps)
        {
            long start = Stopwatch.GetTimestamp();
            var report = engine.Step();
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (report.Scheduled.Count == n && report.Scheduled.TrueForAll(w => !w.Prefill)) times.Add(seconds);
            foreach (var s in streams) while (s.Updates.TryRead(out _)) { }
        }
        return times;
    }

    private sealed record Mode(string Name, bool Activated, bool PrefixCaching);

    public static async Task Agentic(int conversations = 8, int turns = 4, int turnTokens = 500, int kvCacheTokens = 32768)
    {
        var config = SmolLm2();
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 3);
        using var model = new DecoderModel(weights, maxBatchTokens: 512);
        int[][] invocations = [[49100, 49101, 49102, 49103], [49110, 49111, 49112, 49113], [49120, 49121, 49122, 49123]];
        var slabs = new List<NativeSlab>();
        var aloras = new List<ForwardAdapter>();
        var loras = new List<ForwardAdapter>();
        for (int i = 0; i < 3; i++)
        {
            var (a, sa) = AloraTtftBench.RandomAdapter(config, $"intrinsic{i}", invocations[i], 32);
            var (l, sl) = AloraTtftBench.RandomAdapter(config, $"intrinsic{i}", null, 32);
            aloras.Add(a);
            loras.Add(l);
            slabs.Add(sa);
            slabs.Add(sl);
        }
        Console.WriteLine($"{conversations} conversations × {turns} turns of {turnTokens} user tokens + 16 generated; after each turn 3 intrinsics per conversation (r 32 on q/k/v), all submitted at once, 4 tokens each; KV pool {kvCacheTokens} tokens; 2 threads");
        Console.WriteLine("| mode | turn | conversation tokens | intrinsic TTFT mean ms | p95 ms | turn TTFT mean ms | prefix-cache hit rate (cumulative) |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        var summary = new Dictionary<string, (double Mean, double P95)>();
        foreach (var mode in new[] { new Mode("aLoRA, prefix cache", true, true), new Mode("LoRA, prefix cache", false, true), new Mode("aLoRA, prefix cache off", true, false), new Mode("LoRA, prefix cache off", false, false) })
        {
            using var engine = new Engine(model, [], null, new EngineOptions
            {
                MaxRunningRequests = 64, MaxTokensPerStep = 512, KvCacheTokens = kvCacheTokens, PrefixCaching = mode.PrefixCaching,
            });
            for (int i = 0; i < 3; i++) engine.LoadAdapter($"intrinsic{i}", mode.Activated ? aloras[i] : loras[i]);
            var random = new Random(7);
            var history = Enumerable.Range(0, conversations).Select(_ => new List<int> { 1 }).ToArray();
            for (int turn = 1; turn <= turns; turn++)
            {
                // A base-model turn on every conversation: the user's message, then 16 generated tokens.
                foreach (var h in history) h.AddRange(Enumerable.Range(0, turnTokens).Select(_ => random.Next(3, 49000)));
                var turnResults = await Task.WhenAll(history.Select(h => Run(engine, new GenerationRequest { PromptIds = [.. h], MaxTokens = 16, IgnoreEos = true })));
                for (int c = 0; c < conversations; c++) history[c].AddRange(turnResults[c].Tokens);
                // Three intrinsics on every conversation at once.
                var calls = new List<Task<(double Ttft, List<int> Tokens)>>();
                foreach (var h in history)
                    for (int i = 0; i < 3; i++)
                        calls.Add(Run(engine, new GenerationRequest { PromptIds = [.. h, .. invocations[i]], MaxTokens = 4, IgnoreEos = true, AdapterName = $"intrinsic{i}" }));
                var results = await Task.WhenAll(calls);
                var ttfts = results.Select(r => r.Ttft * 1e3).Order().ToArray();
                double mean = ttfts.Average(), p95 = ttfts[(int)Math.Ceiling(0.95 * ttfts.Length) - 1];
                var metrics = engine.Metrics();
                Console.WriteLine($"| {mode.Name} | {turn} | {history[0].Count} | {F(mean)} | {F(p95)} | {F(turnResults.Average(r => r.Ttft) * 1e3)} | {F(metrics.PrefixCacheHitRate * 100)}% |");
                if (turn == turns) summary[mode.Name] = (mean, p95);
            }
        }
        var alora = summary["aLoRA, prefix cache"];
        Console.WriteLine();
        foreach (var (name, other) in summary)
            if (name != "aLoRA, prefix cache")
                Console.WriteLine($"last turn: aLoRA intrinsic TTFT (prefix cache) is {F(other.Mean / alora.Mean)}x better than '{name}' (p95 {F(other.P95 / alora.P95)}x)");
        foreach (var s in slabs) s.Dispose();
    }

    private static async Task<(double Ttft, List<int> Tokens)> Run(Engine engine, GenerationRequest request)
    {
        var tokens = new List<int>();
        double ttft = 0;
        await foreach (var update in engine.GenerateAsync(request))
        {
            if (update.TokenId >= 0) tokens.Add(update.TokenId);
            if (update.Stats is { } stats) ttft = stats.TimeToFirstTokenSeconds;
        }
        return (ttft, tokens);
    }
}

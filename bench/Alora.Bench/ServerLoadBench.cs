using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Models;
using Alora.Server;
using Alora.Serving;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// A load generator against a real `alora serve` (in-process Kestrel on a loopback port it picked): C clients, each
/// with its own conversation, alternate a base-model turn and an aLoRA intrinsic call on that conversation, through
/// streaming /v1/completions. Bounded in requests (rounds per client) and time. Random SmolLM2-135M shape (bf16),
/// three aLoRAs (r 32 on q/k/v). Reports requests/s, output tokens/s, p50/p95 TTFT per request kind and the
/// prefix-cache hit rate.
/// </summary>
internal static class ServerLoadBench
{
    private static string F(double v, string format = "F1") => v.ToString(format, CultureInfo.InvariantCulture);

    /// <param name="peer">Also run the same workload on llama.cpp (bench/peers/LlamaCppPeer, its own process) and compare.</param>
    /// <param name="longPrefillThreshold">The engine's cap on one request's prompt tokens per step (0: none).</param>
    /// <param name="shortPrefillTokens">The engine's short-prompt priority (0: off).</param>
    public static async Task Run(int[] clientCounts, bool peer, int longPrefillThreshold = 0, int shortPrefillTokens = 0, int rounds = 3, int timeLimitSeconds = 300)
    {
        // The random SmolLM2-135M-shape GGUF that the llama.cpp peer reads too, and three aLoRAs exported for it.
        string work = Path.Combine(Path.GetTempPath(), "alora-concurrency-peer");
        string gguf = ConcurrencyPeerBench.WriteModel(DType.BF16, seed: 1, work);
        using var model = LanguageModel.Load(gguf, maxBatchTokens: 512,
            engineOptions: new EngineOptions { KvCacheTokens = 32768, MaxRunningRequests = 64, MaxTokensPerStep = 512, LongPrefillThreshold = longPrefillThreshold, ShortPrefillTokens = shortPrefillTokens });
        int[][] invocations = [[49100, 49101, 49102, 49103], [49110, 49111, 49112, 49113], [49120, 49121, 49122, 49123]];
        var adapterFiles = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            var adapter = LoraAdapter.Create($"intrinsic{i}", new LoraConfig
            {
                R = 32, LoraAlpha = 32, TargetModules = ["q_proj", "k_proj", "v_proj"], AloraInvocationTokens = invocations[i], InitLoraWeights = "false",
            }, model.Config, seed: i + 1);
            string file = Path.Combine(work, $"intrinsic{i}.gguf");
            GgufLoraExport.Export(adapter, file);
            adapterFiles.Add(file);
            model.AddAdapter($"intrinsic{i}", adapter);
        }
        await using var server = AloraServer.Create(model, new ServerOptions { ServedModelName = "base" }, "127.0.0.1", 0);
        await server.StartAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(timeLimitSeconds) };
        Console.WriteLine($"server {server.BaseAddress}; each client: a 300-token conversation, then {rounds} rounds of (base turn: +64 user tokens, 32 generated; aLoRA intrinsic: +4 invocation tokens, 8 generated); streaming /v1/completions; long-prefill threshold {longPrefillThreshold}; short-prefill priority {shortPrefillTokens}; 2 threads");
        Console.WriteLine("| engine | clients | requests | wall s | requests/s | output tokens/s | base TTFT p50 / p95 ms | intrinsic TTFT p50 / p95 ms | prefix-cache hit rate |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (int clients in clientCounts)
        {
            var (queriesBefore, hitsBefore) = await CacheCounters(http);
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(timeLimitSeconds));
            var clock = Stopwatch.StartNew();
            var results = await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Client(http, c + 1000 * clients, rounds, invocations, deadline.Token)));
            double wall = clock.Elapsed.TotalSeconds;
            var all = results.SelectMany(r => r).ToArray();
            var (queriesAfter, hitsAfter) = await CacheCounters(http);
            double Percentile(IEnumerable<double> values, double p) { var sorted = values.Order().ToArray(); return sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)]; }
            var baseTtft = all.Where(r => !r.Intrinsic).Select(r => r.Ttft * 1e3).ToArray();
            var intrinsicTtft = all.Where(r => r.Intrinsic).Select(r => r.Ttft * 1e3).ToArray();
            double hitRate = queriesAfter > queriesBefore ? (hitsAfter - hitsBefore) / (queriesAfter - queriesBefore) : 0;
            Console.WriteLine($"| Alora | {clients} | {all.Length} | {F(wall)} | {F(all.Length / wall, "F2")} | {F(all.Sum(r => r.Tokens) / wall)} | {F(Percentile(baseTtft, 0.5))} / {F(Percentile(baseTtft, 0.95))} | {F(Percentile(intrinsicTtft, 0.5))} / {F(Percentile(intrinsicTtft, 0.95))} | {F(hitRate * 100)}% |");
            if (!peer) continue;
            // The same workload on llama.cpp, in its own process while Alora's engine idles.
            string dll = ConcurrencyPeerBench.BuildPeer();
            foreach (var line in ConcurrencyPeerBench.RunPeer(dll, "load", "--model", gguf, "--adapters", string.Join(',', adapterFiles),
                "--invocations", string.Join(';', invocations.Select(i => string.Join(',', i))), "--clients", clients.ToString(CultureInfo.InvariantCulture),
                "--rounds", rounds.ToString(CultureInfo.InvariantCulture)))
            {
                var r = line.RootElement;
                if (!r.TryGetProperty("clients", out _)) continue;
                double Get(string name) => r.GetProperty(name).GetDouble();
                Console.WriteLine($"| llama.cpp | {clients} | {Get("requests")} | {F(Get("wall_s"))} | {F(Get("requests_per_s"), "F2")} | {F(Get("output_tokens_per_s"))} | {F(Get("base_ttft_p50_ms"))} / {F(Get("base_ttft_p95_ms"))} | {F(Get("intrinsic_ttft_p50_ms"))} / {F(Get("intrinsic_ttft_p95_ms"))} | per-sequence cache |");
            }
        }
    }

    private readonly record struct Result(bool Intrinsic, double Ttft, int Tokens);

    private static async Task<List<Result>> Client(HttpClient http, int seed, int rounds, int[][] invocations, CancellationToken cancel)
    {
        var random = new Random(seed);
        var conversation = Enumerable.Range(0, 300).Select(_ => random.Next(3, 49000)).ToList();
        var results = new List<Result>();
        for (int round = 0; round < rounds && !cancel.IsCancellationRequested; round++)
        {
            conversation.AddRange(Enumerable.Range(0, 64).Select(_ => random.Next(3, 49000)));
            var (ttft, reply) = await Stream(http, "base", conversation, 32, cancel);
            results.Add(new Result(false, ttft, reply.Count));
            conversation.AddRange(reply);
            int which = random.Next(3);
            var (intrinsicTtft, answer) = await Stream(http, $"intrinsic{which}", [.. conversation, .. invocations[which]], 8, cancel);
            results.Add(new Result(true, intrinsicTtft, answer.Count));
        }
        return results;
    }

    /// <summary>One streaming completion: seconds to the first token, and the generated ids.</summary>
    private static async Task<(double Ttft, List<int> Ids)> Stream(HttpClient http, string model, List<int> prompt, int maxTokens, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model, prompt, max_tokens = maxTokens, temperature = 0, ignore_eos = true, stream = true, return_token_ids = true }),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        double ttft = 0;
        var ids = new List<int>();
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]") continue;
            var tokenIds = JsonNode.Parse(line[6..])!["choices"]![0]!["token_ids"]!.AsArray();
            if (tokenIds.Count > 0 && ttft == 0) ttft = clock.Elapsed.TotalSeconds;
            ids.AddRange(tokenIds.Select(t => t!.GetValue<int>()));
        }
        return (ttft, ids);
    }

    private static async Task<(double Queries, double Hits)> CacheCounters(HttpClient http)
    {
        string text = await http.GetStringAsync("/metrics");
        double Value(string name) => text.Split('\n').Where(l => l.StartsWith(name + " ", StringComparison.Ordinal))
            .Select(l => double.Parse(l[(name.Length + 1)..], CultureInfo.InvariantCulture)).FirstOrDefault();
        return (Value("alora_prefix_cache_queries_tokens_total"), Value("alora_prefix_cache_hits_tokens_total"));
    }
}

using System.Diagnostics;
using System.Globalization;
using LLama;
using LLama.Common;
using LLama.Native;

/// <summary>
/// The llama.cpp side of Alora's serve-load benchmark: the same workload, run the way llama.cpp's server runs it.
/// C clients, each with its own conversation (one sequence, its KV kept between turns: llama.cpp's per-slot prompt
/// cache), alternate a base turn (new user tokens, then greedy replies) and an aLoRA intrinsic call (the
/// conversation's KV copied to a scratch sequence, the invocation and the reply computed with the adapter on, so
/// nothing before the invocation is recomputed — aLoRA's point). llama.cpp applies adapters to the whole context,
/// so each step runs one llama_decode per adapter group (base rows, then each intrinsic's rows), each capped at
/// 512 tokens as Alora's steps are. Token ids come from the same seeded generator as Alora's clients. Prints one
/// JSON line per client count.
/// </summary>
internal static class LoadPeer
{
    private sealed class Client(int id, int seed)
    {
        public int Id { get; } = id;
        public Random Random { get; } = new(seed);
        public List<int> Conversation { get; } = [];
        public int Computed;               // conversation positions in the KV of sequence Id
        public int Round, Phase;           // phase 0: base turn, 1: intrinsic, 2: done
        public List<int> Pending = [];     // tokens to feed (prompt tail, then each sampled token)
        public int Generated, Wanted, Adapter;
        public int ScratchComputed;        // positions of the scratch sequence (intrinsic)
        public long Started;
        public bool SawFirst;
    }

    public static int Run(string[] args, Options options)
    {
        string? Value(string name) { int at = Array.IndexOf(args, name); return at >= 0 && at + 1 < args.Length ? args[at + 1] : null; }
        int Int(string name, int fallback) => Value(name) is string v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        string[] adapterPaths = (Value("--adapters") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries);
        int[][] invocations = (Value("--invocations") ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries)
            .Select(x => x.Split(',').Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        int[] clientCounts = (Value("--clients") ?? "1,8,32").Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        int rounds = Int("--rounds", 3), conversation = Int("--conversation", 300), turn = Int("--turn", 64), reply = Int("--reply", 32), intrinsicReply = Int("--intrinsic-reply", 8);
        if (adapterPaths.Length == 0 || adapterPaths.Length != invocations.Length) throw new ArgumentException("--adapters and --invocations must name the same number of adapters");

        foreach (int clients in clientCounts)
        {
            int perClient = conversation + rounds * (turn + reply) + 64;
            var parameters = new ModelParams(options.Model)
            {
                GpuLayerCount = 0, Threads = options.Threads, BatchThreads = options.Threads,
                SeqMax = (uint)(2 * clients), ContextSize = (uint)(2 * clients * perClient), BatchSize = 512, UBatchSize = 512,
                KVUnified = true,   // a copied conversation shares its cells with the scratch sequence
            };
            using var weights = LLamaWeights.LoadFromFile(parameters);
            using var context = weights.CreateContext(parameters);
            var handle = context.NativeHandle;
            var adapters = adapterPaths.Select(p => weights.NativeHandle.LoadLoraFromFile(p)).ToArray();
            var all = Enumerable.Range(0, clients).Select(c => new Client(c, c + 1000 * clients)).ToList();
            foreach (var c in all)
            {
                c.Conversation.AddRange(Enumerable.Range(0, conversation).Select(_ => c.Random.Next(3, 49000)));
                StartBase(c, turn, reply);
            }
            var baseTtft = new List<double>();
            var intrinsicTtft = new List<double>();
            long outputTokens = 0, requests = 0;
            var clock = Stopwatch.StartNew();
            var batch = new LLamaBatch();
            while (all.Any(c => c.Phase < 2))
            {
                for (int group = 0; group <= adapters.Length; group++)   // 0: base rows; g: intrinsic g - 1
                {
                    var members = all.Where(c => c.Phase < 2 && (group == 0 ? c.Phase == 0 : c.Phase == 1 && c.Adapter == group - 1)).ToList();
                    if (members.Count == 0) continue;
                    if (group == 0) handle.SetLoraAdapters([]);
                    else handle.SetLoraAdapters([(adapters[group - 1], 1f)]);
                    batch.Clear();
                    int budget = 512;
                    var rows = new List<(Client Client, int Count, int LogitRow)>();
                    foreach (var c in members.OrderBy(c => c.Pending.Count))   // decode rows first, then prompt chunks
                    {
                        if (budget == 0) break;
                        int n = Math.Min(c.Pending.Count, budget);
                        int sequence = c.Phase == 0 ? c.Id : clients + c.Id;
                        int start = c.Phase == 0 ? c.Computed : c.ScratchComputed;
                        int logitRow = -1;
                        for (int i = 0; i < n; i++)
                        {
                            bool last = i == n - 1 && n == c.Pending.Count;
                            int at = batch.Add(c.Pending[i], start + i, (LLamaSeqId)sequence, last);
                            if (last) logitRow = at;
                        }
                        rows.Add((c, n, logitRow));
                        budget -= n;
                    }
                    if (handle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed");
                    foreach (var (c, n, logitRow) in rows)
                    {
                        if (c.Phase == 0) c.Computed += n; else c.ScratchComputed += n;
                        c.Pending.RemoveRange(0, n);
                        if (logitRow < 0) continue;   // a prompt chunk that is not the last
                        int token = ArgMax(handle.GetLogitsIth(logitRow));
                        if (!c.SawFirst)
                        {
                            c.SawFirst = true;
                            (c.Phase == 0 ? baseTtft : intrinsicTtft).Add(Stopwatch.GetElapsedTime(c.Started).TotalMilliseconds);
                        }
                        c.Generated++;
                        outputTokens++;
                        if (c.Phase == 0) c.Conversation.Add(token);
                        if (c.Generated < c.Wanted) { c.Pending.Add(token); continue; }
                        requests++;
                        if (c.Phase == 0)
                        {
                            // The intrinsic: the conversation's KV (all but the last reply token, which joins the
                            // scratch sequence's prompt as a base-computed position in aLoRA terms) copied, then the invocation.
                            c.Phase = 1;
                            c.Adapter = c.Random.Next(adapters.Length);
                            handle.MemorySequenceRemove((LLamaSeqId)(clients + c.Id), 0, -1);
                            handle.MemorySequenceCopy((LLamaSeqId)c.Id, (LLamaSeqId)(clients + c.Id), 0, c.Computed);
                            c.ScratchComputed = c.Computed;
                            c.Pending = [.. c.Conversation.Skip(c.Computed), .. invocations[c.Adapter]];
                            c.Generated = 0; c.Wanted = intrinsicReply; c.SawFirst = false; c.Started = Stopwatch.GetTimestamp();
                        }
                        else
                        {
                            handle.MemorySequenceRemove((LLamaSeqId)(clients + c.Id), 0, -1);
                            if (++c.Round == rounds) c.Phase = 2;
                            else StartBase(c, turn, reply);
                        }
                    }
                }
            }
            double wall = clock.Elapsed.TotalSeconds;
            static double P(List<double> v, double p) { var s = v.Order().ToArray(); return s.Length == 0 ? 0 : s[Math.Min(s.Length - 1, (int)Math.Ceiling(p * s.Length) - 1)]; }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{{\"clients\":{clients},\"requests\":{requests},\"wall_s\":{wall:F2},\"requests_per_s\":{requests / wall:F3},\"output_tokens_per_s\":{outputTokens / wall:F1},\"base_ttft_p50_ms\":{P(baseTtft, 0.5):F1},\"base_ttft_p95_ms\":{P(baseTtft, 0.95):F1},\"intrinsic_ttft_p50_ms\":{P(intrinsicTtft, 0.5):F1},\"intrinsic_ttft_p95_ms\":{P(intrinsicTtft, 0.95):F1}}}"));
            foreach (var a in adapters) a.Unload();
        }
        return 0;
    }

    /// <summary>A base turn: the user's new tokens after what the conversation's sequence holds, then greedy replies.</summary>
    private static void StartBase(Client c, int turn, int reply)
    {
        c.Phase = 0;
        c.Conversation.AddRange(Enumerable.Range(0, turn).Select(_ => c.Random.Next(3, 49000)));
        c.Pending = [.. c.Conversation.Skip(c.Computed)];
        c.Generated = 0; c.Wanted = reply; c.SawFirst = false; c.Started = Stopwatch.GetTimestamp();
    }

    private static int ArgMax(Span<float> logits)
    {
        int best = 0;
        for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
        return best;
    }
}

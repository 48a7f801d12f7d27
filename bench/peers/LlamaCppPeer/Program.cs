using System.Diagnostics;
using System.Globalization;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

// llama.cpp (LLamaSharp 0.30.0's CPU backend) as the concurrency peer of Alora's bench: aggregate decode tokens/s of
// N sequences decoded together, one llama_decode per step over a batch of N tokens. Prints JSON lines on stdout;
// llama.cpp's own log goes to stderr. Run in a process of its own, so its thread pool never shares the cores with
// Alora's. See bench/README.md ("decode-concurrency-peer").
//
//   LlamaCppPeer decode --model F.gguf [--streams 1,4,16,64] [--prompt-length 8] [--steps 16] [--rounds 3] [--threads 2]
//   LlamaCppPeer logits --model F.gguf --prompt-ids 1,2,3 [--threads 2] [--kv-f32]
//   LlamaCppPeer quantize --model IN.gguf --out OUT.gguf --type Q8_0|Q4_K_M [--threads 2]
//   LlamaCppPeer load --model F.gguf --adapters a.gguf,b.gguf,c.gguf --invocations 1,2,3,4;5,6,7,8;… [--clients 1,8,32] [--rounds 3]

var options = Options.Parse(args);
if (options.Mode == "load") return LoadPeer.Run(args, options);
if (options.Mode == "quantize")
{
    // llama.cpp's own quantizer (llama_model_quantize, as llama-quantize runs it without an importance matrix).
    int outAt = Array.IndexOf(args, "--out"), typeAt = Array.IndexOf(args, "--type");
    if (outAt < 0 || typeAt < 0) { Console.Error.WriteLine("usage: LlamaCppPeer quantize --model IN.gguf --out OUT.gguf --type Q8_0|Q4_K_M|… [--threads T]"); return 2; }
    // A NativeApi call first: its static constructor loads the native libraries (the quantizer's own P/Invoke does not).
    NativeApi.llama_empty_call();
    NativeLogConfig.llama_log_set((level, message) => { if (level >= LLamaLogLevel.Warning) Console.Error.Write(message); });
    var ftype = Enum.Parse<LLamaFtype>("MOSTLY_" + args[typeAt + 1].ToUpperInvariant());
    bool ok = LLamaQuantizer.Quantize(options.Model, args[outAt + 1], ftype, options.Threads);
    Console.WriteLine($"{{\"quantized\":{(ok ? "true" : "false")},\"type\":\"{ftype}\"}}");
    return ok ? 0 : 1;
}
if (options.Mode is not ("decode" or "logits"))
{
    Console.Error.WriteLine("usage: LlamaCppPeer decode|logits --model FILE.gguf [--streams 1,4,16,64] [--prompt-length P] [--steps S] [--rounds R] [--threads T] [--prompt-ids 1,2,3] [--kv-f32]");
    return 2;
}
NativeLogConfig.llama_log_set((level, message) =>
{
    if (level >= LLamaLogLevel.Warning || options.Verbose) Console.Error.Write(message);
});

int maxStreams = options.Streams.Max();
int promptLength = options.Mode == "logits" ? options.PromptIds.Length : options.PromptLength;
int contextPerSequence = promptLength + options.Steps + 1;
int sequenceCount = options.Mode == "logits" ? 1 : maxStreams;
int prefillTokens = sequenceCount * promptLength;
var parameters = new ModelParams(options.Model)
{
    GpuLayerCount = 0,
    Threads = options.Threads,
    BatchThreads = options.Threads,
    SeqMax = (uint)Math.Max(sequenceCount, 1),
    // Each sequence gets n_ctx / n_seq_max cells when the KV cache is not unified.
    ContextSize = (uint)(sequenceCount * contextPerSequence),
    BatchSize = (uint)Math.Max(prefillTokens, 1),
    UBatchSize = (uint)Math.Min(Math.Max(prefillTokens, 1), 512),
    // Independent sequences (no shared prefix): llama.cpp advises a per-sequence KV stream then.
    KVUnified = false,
};
if (options.KvF32)
{
    // f32 K/V (llama.cpp's default is f16): with an f32 GGUF, the logits cross-check then compares f32 with f32.
    parameters.TypeK = GGMLType.GGML_TYPE_F32;
    parameters.TypeV = GGMLType.GGML_TYPE_F32;
}
using var weights = LLamaWeights.LoadFromFile(parameters);
using var context = weights.CreateContext(parameters);
var handle = context.NativeHandle;
int vocab = weights.Vocab.Count;
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"{{\"info\":\"llama.cpp via LLamaSharp 0.30.0\",\"n_ctx\":{handle.ContextSize},\"n_seq_max\":{parameters.SeqMax},\"n_batch\":{handle.BatchSize},\"n_ubatch\":{handle.UBatchSize},\"threads\":{handle.GenerationThreads},\"batch_threads\":{handle.BatchThreads},\"n_vocab\":{vocab},\"kv_type\":\"{(options.KvF32 ? "f32" : "f16")}\",\"system\":\"{Escape(System.Runtime.InteropServices.Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info()) ?? "")}\"}}"));

if (options.Mode == "logits")
{
    var batch = new LLamaBatch();
    for (int i = 0; i < options.PromptIds.Length; i++)
        batch.Add(options.PromptIds[i], i, LLamaSeqId.Zero, i == options.PromptIds.Length - 1);
    Check(handle.Decode(batch), "prompt");
    var logits = handle.GetLogitsIth(batch.TokenCount - 1);
    var json = new StringBuilder("{\"prompt_ids\":[").AppendJoin(',', options.PromptIds).Append("],\"logits\":[");
    for (int v = 0; v < logits.Length; v++) json.Append(v == 0 ? "" : ",").Append(logits[v].ToString("R", CultureInfo.InvariantCulture));
    Console.WriteLine(json.Append("]}").ToString());
    return 0;
}

foreach (int streams in options.Streams)
{
    double best = double.MaxValue;
    for (int round = 0; round < options.Rounds; round++)
    {
        handle.MemoryClear(true);
        best = Math.Min(best, DecodeRound(handle, streams, options.PromptLength, options.Steps, vocab));
    }
    double msPerStep = best * 1000 / options.Steps;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{{\"streams\":{streams},\"ms_per_step\":{msPerStep:F3},\"tokens_per_second\":{streams * options.Steps / best:F1},\"steps\":{options.Steps},\"prompt_length\":{options.PromptLength},\"rounds\":{options.Rounds}}}"));
}
return 0;

// Prefills `streams` sequences (distinct prompts, PromptToken), then times `steps` decode steps: each step is one
// llama_decode over N tokens, one per sequence, each the greedy argmax of that sequence's previous logits.
// Returns the seconds the decode steps took (prefill excluded).
static double DecodeRound(SafeLLamaContextHandle handle, int streams, int promptLength, int steps, int vocab)
{
    var batch = new LLamaBatch();
    var logitIndex = new int[streams];   // [N] row of each sequence's logits in the last batch
    var next = new int[streams];         // [N] the token each sequence decodes next
    for (int s = 0; s < streams; s++)
        for (int i = 0; i < promptLength; i++)
        {
            int at = batch.Add(PromptToken(s, i, vocab), i, (LLamaSeqId)s, i == promptLength - 1);
            if (i == promptLength - 1) logitIndex[s] = at;
        }
    Check(handle.Decode(batch), "prefill");
    for (int s = 0; s < streams; s++) next[s] = ArgMax(handle.GetLogitsIth(logitIndex[s]));

    long start = Stopwatch.GetTimestamp();
    for (int step = 0; step < steps; step++)
    {
        batch.Clear();
        for (int s = 0; s < streams; s++) logitIndex[s] = batch.Add(next[s], promptLength + step, (LLamaSeqId)s, true);
        Check(handle.Decode(batch), "decode step");
        for (int s = 0; s < streams; s++) next[s] = ArgMax(handle.GetLogitsIth(logitIndex[s]));
    }
    return Stopwatch.GetElapsedTime(start).TotalSeconds;
}

// The same formula as Alora.Bench's ConcurrencyPeerBench.PromptToken: distinct prompts per sequence, ids ≥ 100
// (clear of the tokenizer's special ids 0..18).
static int PromptToken(int sequence, int index, int vocab) => 100 + (sequence * 7919 + index * 131) % (vocab - 100);

static int ArgMax(Span<float> logits)
{
    int best = 0;
    for (int v = 1; v < logits.Length; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

static void Check(DecodeResult result, string what)
{
    if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode ({what}) returned {result}");
}

static string Escape(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal);

internal sealed record Options(string Mode, string Model, int[] Streams, int PromptLength, int Steps, int Rounds, int Threads, int[] PromptIds, bool KvF32, bool Verbose)
{
    public static Options Parse(string[] args)
    {
        string? Value(string name)
        {
            int at = Array.IndexOf(args, name);
            return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
        }
        static int[] Ints(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        int Int(string name, int fallback) => Value(name) is string v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        return new Options(
            args.Length > 0 ? args[0] : "help",
            Value("--model") ?? "",
            Ints(Value("--streams") ?? "1,4,16,64"),
            Int("--prompt-length", 8),
            Int("--steps", 16),
            Int("--rounds", 3),
            Int("--threads", 2),
            Ints(Value("--prompt-ids") ?? ""),
            args.Contains("--kv-f32"),
            args.Contains("--verbose"));
    }
}

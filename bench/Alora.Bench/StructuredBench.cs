using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Models;
using Alora.Serving;
using Alora.Structured;
using Alora.Tensors;
using Alora.Tokenization;

namespace Alora.Bench;

/// <summary>
/// <c>structured</c>: the cost of structured outputs. For the 49k (granite3) and 128k (llama3) vocabularies, a
/// random-weight model of a matching shape (SmolLM2-135M with granite3's vocabulary; Llama-3.2-1B), bf16, 2 threads,
/// decodes under a JSON schema with nested objects, arrays and enums, and without it, in one run:
/// the token-mask cost per decode step (first request: masks computed by trie walks; later requests with the
/// same schema: masks from the cache), as µs and as % of the unconstrained step, and constrained against
/// unconstrained decode tokens/s.
/// </summary>
internal static class StructuredBench
{
    public const string Schema = """
        {"type":"object","properties":{
          "title":{"type":"string"},
          "status":{"enum":["draft","review","published","archived"]},
          "authors":{"type":"array","items":{"type":"object","properties":{
              "name":{"type":"string"},"role":{"enum":["writer","editor","reviewer"]},"age":{"type":"integer","minimum":0,"maximum":150}},
            "required":["name","role"],"additionalProperties":false},"maxItems":4},
          "metrics":{"type":"object","properties":{"score":{"type":"number","minimum":0,"maximum":1},"views":{"type":"integer"},"flags":{"type":"array","items":{"type":"boolean"}}},
            "required":["score"],"additionalProperties":false}},
         "required":["title","status","authors","metrics"],"additionalProperties":false}
        """;

    private static string F(double value, string format = "F1") => value.ToString(format, CultureInfo.InvariantCulture);

    public static void Run(string[] which, int tokens)
    {
        Console.WriteLine($"threads: {Alora.Kernels.WorkerPool.Shared.ThreadCount}; {tokens} decode tokens per request, sampling (temperature 1, seed fixed), random weights bf16");
        Console.WriteLine("| vocabulary | model | unconstrained ms/step | constrained ms/step | constrained/unconstrained tok/s | mask µs/step, first request | mask µs/step, cached | mask % of step (first / cached) | masks computed |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (string name in which) RunOne(name, tokens);
    }

    private static void RunOne(string tokenizerName, int tokens)
    {
        string shared = BenchPaths.SharedRoot();
        var tokenizer = Tokenizer.Load(Path.Combine(shared, "tokenizers", tokenizerName));
        string configName = tokenizerName == "llama3" ? "llama-3.2-1b" : "smollm2-135m";
        var config = ModelConfig.FromFile(Path.Combine(shared, "configs", configName, "config.json"));
        if (config.VocabSize < tokenizer.VocabSize) config = config with { VocabSize = tokenizer.VocabSize };
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        using var model = new DecoderModel(weights, maxBatchTokens: 256);
        var vocabulary = TokenVocabulary.For(tokenizer);
        int[] eos = tokenizer.EosTokenId is int e ? [e] : [];
        int[] prompt = tokenizer.Encode("Write the record as JSON:", addSpecialTokens: true);
        var sampling = new SamplingOptions { Temperature = 1, TopK = 0, TopP = 1, MinP = 0, Seed = 7 };
        var constraint = OutputConstraint.JsonSchema(JsonNode.Parse(Schema)!);

        using var engine = new Engine(model, eos, () => tokenizer.CreateStreamingDecoder(skipSpecialTokens: true),
            new EngineOptions { KvCacheTokens = 4096, PrefixCaching = false }, startLoop: false, vocabulary: vocabulary);
        double StepMs(GenerationRequest request, List<int> generated)
        {
            var stream = engine.Submit(request);
            var times = new List<double>();
            bool first = true;
            while (engine.HasWork)
            {
                long start = Stopwatch.GetTimestamp();
                engine.Step();
                double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (!first) times.Add(ms);
                first = false;
                while (stream.Updates.TryRead(out var u)) if (u.TokenId >= 0) generated.Add(u.TokenId);
            }
            times.Sort();
            return times.Count == 0 ? double.NaN : times[times.Count / 2];
        }

        // Warm the model, then time unconstrained and constrained decoding (constrained goes on past the end of
        // the JSON only if the schema allows it: it stops when the object is complete, so compare per step).
        StepMs(new GenerationRequest { PromptIds = prompt, MaxTokens = 8, IgnoreEos = true, Sampling = sampling }, []);
        double free = StepMs(new GenerationRequest { PromptIds = prompt, MaxTokens = tokens, IgnoreEos = true, Sampling = sampling }, []);
        var generated = new List<int>();
        double constrained = StepMs(new GenerationRequest { PromptIds = prompt, MaxTokens = tokens, Sampling = sampling, Constraint = constraint }, generated);

        // The mask cost alone, replaying the generated tokens: on a freshly compiled constraint (every new state walks
        // the trie), then again (every mask from the cache).
        var logits = new float[model.VocabSize];
        var compiled = new TokenConstraint(ConstraintGrammar.Build(constraint), vocabulary);
        double Replay()
        {
            var matcher = compiled.Start();
            long start = Stopwatch.GetTimestamp();
            foreach (int id in generated)
            {
                matcher.MaskLogits(logits, eos);
                matcher.Accept(id);
            }
            return Stopwatch.GetElapsedTime(start).TotalMicroseconds / Math.Max(1, generated.Count);
        }
        double cold = Replay();
        long walks = compiled.MasksComputed;
        double warm = Replay();
        Console.WriteLine($"| {tokenizerName} ({tokenizer.VocabSize:N0}) | {configName} | {F(free, "F2")} | {F(constrained, "F2")} | {F(free / constrained, "F2")} | {F(cold, "F0")} | {F(warm, "F0")} | {F(100 * cold / 1000 / free, "F1")}% / {F(100 * warm / 1000 / free, "F2")}% | {walks} for {generated.Count} tokens |");
        var text = tokenizer.Decode(generated.ToArray(), skipSpecialTokens: true);
        Console.WriteLine($"<!-- sample output ({generated.Count} tokens): {text.Replace("\n", " ", StringComparison.Ordinal)} -->");
    }
}

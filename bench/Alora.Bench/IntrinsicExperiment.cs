using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Alora.Inference;
using Alora.Models;
using Alora.Training;

namespace Alora.Bench;

/// <summary>
/// The efficacy experiment of the training issue: an intrinsic on stories260K that answers, after a story,
/// "Does a X appear?" with yes or no. The data comes from the base model's own stories; the labels from the
/// text. An aLoRA and a LoRA are trained with the same budget and compared on held-out stories (accuracy by
/// comparing the likelihoods of " yes" and " no"), and the aLoRA's time to first token, with the story already in
/// the base model's cache, is compared with the LoRA's.
/// </summary>
internal static partial class IntrinsicExperiment
{
    private static readonly string[] Openers = ["Once upon a time", "One day", "Lily was", "Tom had", "There was a", "The little", "Sam and", "In the park", "A big", "Mom said"];
    private static readonly string[] Nouns = ["dog", "cat", "ball", "tree", "bird", "park", "car", "fish", "cake", "boat", "sun", "toy"];

    public static async Task Run(string sharedRoot, string workFolder, int stories, int steps)
    {
        string modelPath = Path.Combine(sharedRoot, "models", "stories260K");
        Directory.CreateDirectory(workFolder);
        using var model = LanguageModel.Load(modelPath, cacheTokens: 4096);
        var generator = model.CreateGenerator();
        var random = new Random(7);

        // 1. Stories from the base model itself.
        var texts = new List<string>();
        for (int i = 0; i < stories; i++)
        {
            using var sequence = model.NewSequence();
            var request = new GenerationRequest
            {
                PromptIds = model.Encode(Openers[i % Openers.Length]),
                MaxTokens = 100,
                Sampling = new SamplingOptions { Temperature = 1.0f, TopK = 0, TopP = 0.95f, MinP = 0, Seed = (ulong)(1000 + i) },
            };
            var text = new System.Text.StringBuilder(Openers[i % Openers.Length]);
            await foreach (var update in generator.GenerateAsync(request, sequence)) text.Append(update.Text);
            // One line of story: the question must follow the story text.
            texts.Add(text.ToString().Replace('\n', ' ').Trim());
        }

        // 2. Questions with labels from the text, balanced: each story that mentions one of the nouns gives one
        // "yes" question (a noun it mentions) and one "no" question (a noun it does not).
        var examples = new List<(string Prompt, bool Yes)>();
        foreach (string story in texts)
        {
            var present = Nouns.Where(n => Regex.IsMatch(story, $@"\b{n}s?\b", RegexOptions.IgnoreCase)).ToList();
            var absent = Nouns.Except(present).ToList();
            if (present.Count == 0 || absent.Count == 0) continue;
            examples.Add(($"{story}\nQ: Does a {present[random.Next(present.Count)]} appear?\nA:", true));
            examples.Add(($"{story}\nQ: Does a {absent[random.Next(absent.Count)]} appear?\nA:", false));
        }
        int testCount = examples.Count / 5 / 2 * 2;   // whole stories (pairs) held out
        var test = examples.Take(testCount).ToList();
        var train = examples.Skip(testCount).ToList();
        string dataPath = Path.Combine(workFolder, "train.jsonl");
        await File.WriteAllLinesAsync(dataPath, train.Select(e => JsonSerializer.Serialize(new { prompt = e.Prompt, completion = e.Yes ? " yes" : " no" })));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"stories: {stories}, {examples.Count / 2} mention a noun; questions: {train.Count} train, {test.Count} held out (half yes, half no)"));

        // 3. The same budget for both.
        var results = new List<(string Name, double Accuracy, double Seconds)>();
        double baseAccuracy = Accuracy(model, null, test);
        results.Add(("base model (no adapter)", baseAccuracy, 0));
        foreach (string kind in new[] { "alora", "lora" })
        {
            string output = Path.Combine(workFolder, kind);
            var options = new TrainerOptions
            {
                BaseModel = modelPath, DataPath = dataPath, OutputDir = output, AdapterKind = kind,
                InvocationTokenIds = kind == "alora" ? [13, 473, 467] : null,
                LoraR = 8, LoraAlpha = 16, TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj"],
                BatchSize = 8, MaxSteps = steps, LearningRate = 5e-3, WarmupSteps = steps / 10, CutoffLength = 256,
                SaveStep = steps + 1, EvalStep = steps + 1, Seed = 11,
            };
            var clock = Stopwatch.StartNew();
            new Trainer(options).Run();
            double seconds = clock.Elapsed.TotalSeconds;
            model.LoadAdapter(kind, output);
            results.Add((kind == "alora" ? "aLoRA (invocation \\nQ:)" : "LoRA", Accuracy(model, model.Adapter(kind), test), seconds));
        }
        Console.WriteLine("| model | held-out accuracy | training time (s) |");
        Console.WriteLine("| --- | ---: | ---: |");
        foreach (var (name, accuracy, seconds) in results)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {accuracy:P1} | {(seconds > 0 ? seconds.ToString("F1", CultureInfo.InvariantCulture) : "—")} |"));

        // 4. Time to first answer token when the story is already in the base model's cache.
        double aloraTotal = 0, loraTotal = 0;
        int timed = Math.Min(20, test.Count);
        for (int i = 0; i < timed; i++)
        {
            int[] promptIds = model.Encode(test[i].Prompt);
            int invocation = AdapterActivation.LastOccurrence(promptIds, [13, 473, 467]);
            using var conversation = model.NewSequence();
            await FirstToken(generator, new GenerationRequest { PromptIds = promptIds[..invocation] }, conversation);   // the story, as the base model read it
            aloraTotal += await FirstToken(generator, new GenerationRequest { PromptIds = promptIds, Adapter = model.Adapter("alora") }, conversation);
            using var fresh = model.NewSequence();
            loraTotal += await FirstToken(generator, new GenerationRequest { PromptIds = promptIds, Adapter = model.Adapter("lora") }, fresh);
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"time to first answer token after the story (mean of {timed}): aLoRA with the story's base KV reused {aloraTotal / timed * 1e3:F2} ms, LoRA {loraTotal / timed * 1e3:F2} ms ({loraTotal / aloraTotal:F1}x)"));
    }

    private static async Task<double> FirstToken(Generator generator, GenerationRequest request, KvSequence sequence)
    {
        long start = Stopwatch.GetTimestamp();
        await foreach (var update in generator.GenerateAsync(request with { MaxTokens = 1 }, sequence))
            if (update.TokenId >= 0) break;
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>The share of examples where log p(" yes") vs log p(" no") after the prompt picks the labelled answer.</summary>
    private static double Accuracy(LanguageModel model, ForwardAdapter? adapter, List<(string Prompt, bool Yes)> examples)
    {
        int[] yes = model.Encode(" yes", addSpecialTokens: false), no = model.Encode(" no", addSpecialTokens: false);
        int correct = 0;
        foreach (var (prompt, isYes) in examples)
        {
            int[] promptIds = model.Encode(prompt);
            bool saysYes = LogLikelihood(model, adapter, promptIds, yes) > LogLikelihood(model, adapter, promptIds, no);
            if (saysYes == isYes) correct++;
        }
        return (double)correct / examples.Count;
    }

    private static double LogLikelihood(LanguageModel model, ForwardAdapter? adapter, int[] prompt, int[] completion)
    {
        int[] ids = [.. prompt, .. completion];
        int start = AdapterActivation.Resolve(ids, adapter, MissingInvocationPolicy.Base);
        using var cache = model.Model.CreateCache(ids.Length);
        using var sequence = new KvSequence(cache);
        int v = model.Config.VocabSize;
        var logits = new float[ids.Length * v];
        model.Model.Forward([new SequenceChunk(sequence, ids, LogitRows.All, start == int.MaxValue ? null : adapter, start)], logits);
        double total = 0;
        for (int t = prompt.Length - 1; t < ids.Length - 1; t++)
        {
            var row = logits.AsSpan(t * v, v);
            float max = float.NegativeInfinity;
            foreach (float x in row) max = MathF.Max(max, x);
            double sum = 0;
            foreach (float x in row) sum += Math.Exp(x - max);
            total += row[ids[t + 1]] - max - Math.Log(sum);
        }
        return total;
    }
}

using System.ClientModel;
using System.Globalization;
using Alora;
using Alora.Intrinsics;
using OpenAI;
using OpenAI.Chat;
using StoryIntrinsics;

// The stories260K intrinsics example (samples/StoryIntrinsics/README.md):
//   data MODEL OUT [STORIES]                       JSONL for `alora train` from the model's own stories
//   pipeline MODEL FOLDER [NOUN] [THRESHOLD]      answer → certainty → (below THRESHOLD) rewrite → answer again, on one cache
//   ask URL NOUN                                   the same calls through an `alora serve` with the OpenAI .NET SDK
string sampleDir = AppContext.BaseDirectory;
switch (args.FirstOrDefault())
{
    case "data" when args.Length >= 3:
    {
        using var model = LanguageModel.Load(args[1]);
        int count = await StoryData.WriteAsync(model, args[2], args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 200);
        Console.WriteLine($"wrote {count} questions to {Path.Combine(args[2], "answerability.jsonl")} and certainty.jsonl");
        return 0;
    }
    case "pipeline" when args.Length >= 3:
    {
        string noun = args.Length > 3 ? args[3] : "dog";
        double threshold = args.Length > 4 ? double.Parse(args[4], CultureInfo.InvariantCulture) : 0.5;
        using var model = LanguageModel.Load(args[1]);
        var intrinsics = new Dictionary<string, IntrinsicDefinition>();
        foreach (var name in new[] { "certainty", "answerability" })
        {
            string folder = Path.Combine(args[2], name);
            if (!File.Exists(Path.Combine(folder, "adapter_config.json"))) continue;
            model.LoadAdapter(name, folder);
            intrinsics[name] = IntrinsicDefinition.Load(Path.Combine(folder, "io.yaml"));
        }
        string check = intrinsics.ContainsKey("certainty") ? "certainty" : intrinsics.Keys.FirstOrDefault() ?? throw new InvalidOperationException($"no trained intrinsic (certainty/ or answerability/ with io.yaml) under {args[2]}");
        var pipeline = new IntrinsicPipeline(model, new ChatPrompter(model, Path.Combine(sampleDir, "template.jinja")), intrinsics, new PipelineOptions { MaxTokens = 60 });
        var arguments = new Dictionary<string, string> { ["noun"] = noun };
        var steps = new List<PipelineStep> { await pipeline.AskAsync("Once upon a time") };
        var score = await pipeline.CallAsync(check, arguments);
        steps.Add(score);
        if (Score(score) < threshold)
        {
            steps.Add(await pipeline.ReviseAsync($"Once upon a time, there was a {noun}"));
            steps.Add(await pipeline.CallAsync(check, arguments));
        }
        foreach (var step in steps) Console.WriteLine(step);
        return 0;
    }
    case "ask" when args.Length >= 3:
    {
        var options = new OpenAIClientOptions { Endpoint = new Uri(new Uri(args[1]), "v1") };
        var credential = new ApiKeyCredential("unused");
        var story = (await new ChatClient("stories", credential, options).CompleteChatAsync([new UserChatMessage("Once upon a time")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 60 })).Value;
        Console.WriteLine($"story: Once upon a time{story.Content[0].Text}");
        var intrinsicOptions = new ChatCompletionOptions();
#pragma warning disable SCME0001 // JsonPatch: the SDK's way to send fields it does not model (vLLM's extra_body)
        intrinsicOptions.Patch.Set("$.intrinsic_kwargs"u8, BinaryData.FromObjectAsJson(new { noun = args[2] }));
#pragma warning restore SCME0001
        foreach (var name in new[] { "answerability", "certainty" })
        {
            try
            {
                var result = (await new ChatClient(name, credential, options).CompleteChatAsync(
                    [new UserChatMessage("Once upon a time"), new AssistantChatMessage(story.Content[0].Text)], intrinsicOptions)).Value;
                Console.WriteLine($"{name}: {result.Content[0].Text} (prompt {result.Usage.InputTokenCount} tokens, {result.Usage.InputTokenDetails?.CachedTokenCount ?? 0} cached)");
            }
            catch (ClientResultException e) when (e.Status == 404) { Console.WriteLine($"{name}: not served"); }
        }
        return 0;
    }
    default:
        Console.Error.WriteLine("usage: StoryIntrinsics data MODEL OUT [STORIES] | pipeline MODEL FOLDER [NOUN] [THRESHOLD] | ask URL NOUN");
        return 2;
}

static double Score(PipelineStep step) => step.Result is System.Text.Json.Nodes.JsonObject o && o.Count == 1 ? PythonJson.ToDouble(o.First().Value) : double.NaN;

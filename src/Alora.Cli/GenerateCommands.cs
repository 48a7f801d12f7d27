using System.CommandLine;
using System.Text.Json;
using Alora.Adapters;
using Alora.Formats;
using Alora.Inference;
using Alora.Models;

namespace Alora.Cli;

/// <summary>`alora generate` and `alora logits`.</summary>
internal static class GenerateCommands
{
    /// <summary>Readable JSON: quotes and non-ASCII text stay as they are (still valid JSON).</summary>
    private static readonly JsonSerializerOptions JsonOutput = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly Option<string> ModelOption = new("--model", "-m") { Description = "Hugging Face model folder or .gguf file", Required = true };
    private static readonly Option<string?> PromptOption = new("--prompt", "-p") { Description = "Prompt text (the tokenizer adds BOS as the model's tokenizer does)" };
    private static readonly Option<string?> PromptIdsOption = new("--prompt-ids") { Description = "Prompt as comma-separated token ids, used as given" };
    private static readonly Option<string[]> AdapterOption = new("--adapter") { Description = "Load an adapter (PEFT folder or llama.cpp GGUF LoRA file) as name=path (or just path: named after it); repeatable" };
    private static readonly Option<string?> UseOption = new("--use") { Description = "The loaded adapter to apply (default: the only one loaded)" };
    private static readonly Option<string> MissingInvocationOption = new("--on-missing-invocation")
    {
        Description = "What an aLoRA does when its invocation is not in the prompt: error (default) or base (run the base model, as PEFT does)",
        DefaultValueFactory = _ => "error",
    };
    private static readonly Option[] AdapterOptions = [AdapterOption, UseOption, MissingInvocationOption];

    public static Command Generate()
    {
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens to generate", DefaultValueFactory = _ => 256 };
        var sampling = new SamplingFlags();
        var ignoreEos = new Option<bool>("--ignore-eos") { Description = "Do not stop at end-of-sequence tokens" };
        var stop = new Option<string[]>("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of streaming text" };
        var constraints = new ConstraintFlags();

        var command = new Command("generate", "Generate text from a prompt");
        foreach (var o in new Option[] { ModelOption, PromptOption, PromptIdsOption, maxTokens }.Concat(sampling.All).Concat([ignoreEos, stop, json]).Concat(constraints.All).Concat(AdapterOptions))
            command.Options.Add(o);
        command.SetAction(async (parse, cancellationToken) =>
        {
            string modelPath = parse.GetValue(ModelOption)!;
            int max = parse.GetValue(maxTokens);
            using var model = LanguageModel.Load(modelPath, cacheTokens: 4096 + max);
            int[] promptIds = ResolvePrompt(parse, model);
            var adapters = LoadedAdapters.From(parse, model);
            var request = new GenerationRequest
            {
                PromptIds = promptIds,
                MaxTokens = max,
                IgnoreEos = parse.GetValue(ignoreEos),
                StopStrings = parse.GetValue(stop) ?? [],
                AdapterName = adapters.Selected?.Name,
                OnMissingInvocation = adapters.Policy,
                Sampling = sampling.Read(parse),
                Constraint = constraints.Read(parse, model.Tokenizer),
            };
            bool asJson = parse.GetValue(json);
            var output = new List<int>();
            var text = new System.Text.StringBuilder();
            GenerationUpdate? last = null;
            await foreach (var update in model.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
            {
                if (update.TokenId >= 0) output.Add(update.TokenId);
                text.Append(update.Text);
                if (!asJson) Console.Out.Write(update.Text);
                last = update;
            }
            var stats = last!.Stats!;
            if (asJson)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    prompt_ids = promptIds,
                    output_ids = output,
                    adapter = adapters.Selected?.Name,
                    adapter_activation_start = adapters.Selected is null ? (int?)null : NullIfNever(AdapterActivation.Resolve(promptIds, adapters.Selected, adapters.Policy)),
                    text = text.ToString(),
                    finish_reason = last.Finish == FinishReason.Stop ? "stop" : "length",
                    prefill_tokens_per_second = stats.PrefillTokensPerSecond,
                    decode_tokens_per_second = stats.DecodeTokensPerSecond,
                }, JsonOutput));
            }
            else
            {
                Console.Out.WriteLine();
                Console.Out.WriteLine(
                    $"prefill: {stats.PromptTokens} tokens, {stats.PrefillTokensPerSecond:F1} tokens/s | decode: {stats.GeneratedTokens} tokens, {stats.DecodeTokensPerSecond:F1} tokens/s");
            }
            return 0;
        });
        return command;
    }

    public static Command Logits()
    {
        var output = new Option<string>("--out", "-o") { Description = "Output .safetensors file (F32 tensor 'logits' [tokens, vocab])", Required = true };
        var command = new Command("logits", "Write the logits of every prompt position to a safetensors file");
        foreach (var o in new Option[] { ModelOption, PromptOption, PromptIdsOption, output }.Concat(AdapterOptions)) command.Options.Add(o);
        command.SetAction(parse =>
        {
            using var model = LanguageModel.Load(parse.GetValue(ModelOption)!, cacheTokens: 16);
            int[] ids = ResolvePrompt(parse, model);
            var adapters = LoadedAdapters.From(parse, model);
            float[] logits = model.ComputeLogits(ids, adapters.Selected?.Name, adapters.Policy);
            string path = parse.GetValue(output)!;
            SafeTensorsWriter.Write(path, [SafeTensorToWrite.FromFloats("logits", [ids.Length, model.Config.VocabSize], logits)]);
            Console.Out.WriteLine($"wrote logits [{ids.Length}, {model.Config.VocabSize}] to {path}");
            return 0;
        });
        return command;
    }

    private static int? NullIfNever(int start) => start == int.MaxValue ? null : start;

    /// <summary>The adapters named by --adapter (loaded into the model), the one --use picks, and the --on-missing-invocation policy.</summary>
    private sealed class LoadedAdapters
    {
        public ForwardAdapter? Selected { get; private set; }
        public MissingInvocationPolicy Policy { get; private set; }

        public static LoadedAdapters From(ParseResult parse, LanguageModel model)
        {
            var loaded = new LoadedAdapters
            {
                Policy = parse.GetValue(MissingInvocationOption) switch
                {
                    "error" => MissingInvocationPolicy.Error,
                    "base" => MissingInvocationPolicy.Base,
                    var other => throw new CliException($"--on-missing-invocation: '{other}' is not a policy; expected error or base"),
                },
            };
            var names = AdapterFlags.LoadInto(model, parse.GetValue(AdapterOption), nameOptional: true);
            string? use = parse.GetValue(UseOption);
            if (use is not null)
            {
                if (!names.Contains(use))
                    throw new CliException($"--use {use}: no adapter of that name is loaded (loaded: {(names.Count == 0 ? "none" : string.Join(", ", names))})");
                loaded.Selected = model.Adapter(use);
            }
            else if (names.Count == 1)
            {
                loaded.Selected = model.Adapter(names[0]);
            }
            else if (names.Count > 1)
            {
                throw new CliException($"several adapters are loaded ({string.Join(", ", names)}); pick one with --use");
            }
            return loaded;
        }
    }

    private static int[] ResolvePrompt(ParseResult parse, LanguageModel model)
    {
        string? text = parse.GetValue(PromptOption);
        string? ids = parse.GetValue(PromptIdsOption);
        if ((text is null) == (ids is null)) throw new CliException("give exactly one of --prompt or --prompt-ids");
        if (ids is not null) return ParseIds(ids, model.Config.VocabSize);
        if (model.Tokenizer is null) throw new CliException($"{model.Path} has no tokenizer.json, so --prompt cannot be tokenized; use --prompt-ids");
        var encoded = model.Encode(text!);
        if (encoded.Length == 0) throw new CliException("the prompt is empty after tokenization; give some text or --prompt-ids");
        return encoded;
    }

    internal static int[] ParseIds(string text, int vocabSize)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new CliException("--prompt-ids is empty; expected comma-separated token ids such as 1,2,3");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], out ids[i]))
                throw new CliException($"--prompt-ids: '{parts[i]}' (item {i + 1}) is not an integer token id");
            if ((uint)ids[i] >= (uint)vocabSize)
                throw new CliException($"--prompt-ids: token id {ids[i]} (item {i + 1}) is outside the vocabulary [0, {vocabSize})");
        }
        return ids;
    }
}

/// <summary>A usage error: printed as "error: …" with exit code 2.</summary>
internal sealed class CliException(string message) : Exception(message);

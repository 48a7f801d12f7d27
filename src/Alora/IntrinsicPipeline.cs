using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Intrinsics;

namespace Alora;

/// <summary>What one step of an <see cref="IntrinsicPipeline"/> did: its output, and how much of its prompt the KV cache already held.</summary>
public sealed record PipelineStep(string Name, string Text, JsonNode? Result, int PromptTokens, int CachedTokens, int GeneratedTokens, double TimeToFirstTokenSeconds)
{
    /// <summary>How the generation ended: by an end-of-sequence token (every generated token's KV was computed) or by length (the last one's was not).</summary>
    public FinishReason Finish { get; init; }

    /// <summary>Prompt tokens computed for this step (not found in the cache).</summary>
    public int ComputedTokens => PromptTokens - CachedTokens;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Name}: prompt {PromptTokens} tokens, {CachedTokens} cached, {ComputedTokens} computed, {GeneratedTokens} generated, TTFT {TimeToFirstTokenSeconds * 1e3:F2} ms → {(Result is null ? JsonSerializer.Serialize(Text) : PythonJson.Dumps(Result))}");
}

/// <summary>How base turns generate.</summary>
public sealed record PipelineOptions
{
    public int MaxTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Extra chat template variables for every render.</summary>
    public JsonObject? TemplateVariables { get; init; }
}

/// <summary>
/// A conversation run through base turns and intrinsic calls on one model's engine, so that every call reuses
/// the conversation's KV: each prompt is the conversation rendered by the chat template (plus, for an
/// intrinsic, its io.yaml's instruction and the aLoRA's invocation), and the engine's prefix cache holds every
/// full block the base model computed for the conversation (its prompts and generated tokens). An aLoRA
/// intrinsic reuses all base blocks before its invocation; the next base turn reuses them too (not the
/// aLoRA's). Each step reports its prompt, cached and computed tokens and its time to first token.
/// </summary>
public sealed class IntrinsicPipeline
{
    private readonly LanguageModel _model;
    private readonly ChatPrompter _prompter;
    private readonly Dictionary<string, IntrinsicDefinition> _intrinsics;
    private readonly PipelineOptions _options;
    private readonly JsonArray _messages = [];
    private readonly List<PipelineStep> _steps = [];
    // The conversation as the model computed it (last prompt + generated ids) and its text; a snapshot before each user turn.
    private int[] _ids = [];
    private string _text = "";
    private readonly Stack<(int MessageCount, int[] Ids, string Text)> _turns = new();

    /// <param name="intrinsics">Definitions by name; each name must be an adapter loaded in <paramref name="model"/>.</param>
    public IntrinsicPipeline(LanguageModel model, ChatPrompter prompter, IReadOnlyDictionary<string, IntrinsicDefinition> intrinsics, PipelineOptions? options = null)
    {
        _model = model;
        _prompter = prompter;
        _options = options ?? new PipelineOptions();
        if (!prompter.HasTemplate) throw new ArgumentException($"{model.Path} has no chat template; give the prompter one", nameof(prompter));
        _intrinsics = new Dictionary<string, IntrinsicDefinition>(intrinsics, StringComparer.Ordinal);
        foreach (var name in _intrinsics.Keys)
            if (!model.Adapters.ContainsKey(name)) throw new ArgumentException($"intrinsic '{name}' has no adapter loaded under that name (loaded: {string.Join(", ", model.Adapters.Keys)})", nameof(intrinsics));
    }

    /// <summary>The conversation's messages so far (a copy).</summary>
    public JsonArray Messages => (JsonArray)_messages.DeepClone();
    /// <summary>Documents the intrinsics see (and the chat template, as its <c>documents</c> variable).</summary>
    public IReadOnlyList<IntrinsicDocument> Documents { get; set; } = [];
    public IReadOnlyList<PipelineStep> Steps => _steps;
    /// <summary>The conversation's token ids as the base model computed them (the last turn's prompt and answer).</summary>
    public IReadOnlyList<int> ConversationIds => _ids;

    /// <summary>Adds a user turn and lets the base model answer it; the answer joins the conversation.</summary>
    public async Task<PipelineStep> AskAsync(string userMessage, CancellationToken cancellationToken = default)
    {
        _turns.Push((_messages.Count, _ids, _text));
        _messages.Add(new JsonObject { ["role"] = "user", ["content"] = userMessage });
        var (ids, text) = Prompt(_messages, addGenerationPrompt: true, adapterName: null, TemplateVariables(Documents));
        var request = new GenerationRequest { PromptIds = ids, MaxTokens = _options.MaxTokens, Sampling = _options.Sampling };
        var run = await RunAsync(request, logprobs: false, cancellationToken).ConfigureAwait(false);
        _messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = run.Text });
        _ids = [.. ids, .. run.Tokens];
        _text = text + run.Text;
        return Record(new PipelineStep("answer", run.Text, null, ids.Length, run.Stats.ReusedPromptTokens, run.Stats.GeneratedTokens, run.Stats.TimeToFirstTokenSeconds) { Finish = run.Finish });
    }

    /// <summary>Replaces the last user turn (and the answer to it) with <paramref name="userMessage"/> and answers again.</summary>
    public Task<PipelineStep> ReviseAsync(string userMessage, CancellationToken cancellationToken = default)
    {
        if (_turns.Count == 0) throw new InvalidOperationException("there is no user turn to revise");
        var (count, ids, text) = _turns.Pop();
        while (_messages.Count > count) _messages.RemoveAt(_messages.Count - 1);
        (_ids, _text) = (ids, text);
        return AskAsync(userMessage, cancellationToken);
    }

    /// <summary>
    /// Runs an intrinsic on the conversation as it stands (which it leaves unchanged): its io.yaml processes the
    /// input (instruction with <paramref name="arguments"/>, documents, sentence markers) and the output
    /// (<see cref="PipelineStep.Result"/>).
    /// </summary>
    public async Task<PipelineStep> CallAsync(string intrinsic, IReadOnlyDictionary<string, string>? arguments = null, CancellationToken cancellationToken = default)
    {
        if (!_intrinsics.TryGetValue(intrinsic, out var definition))
            throw new KeyNotFoundException($"no intrinsic named '{intrinsic}' (have: {string.Join(", ", _intrinsics.Keys)})");
        var call = definition.Prepare(_messages, Documents, arguments);
        var variables = TemplateVariables(call.Documents);
        var (ids, _) = Prompt(call.Messages, addGenerationPrompt: true, intrinsic, variables);
        var adapter = _model.Adapters[intrinsic];
        if (adapter.IsActivated && AdapterActivation.LastOccurrence(ids, adapter.InvocationTokens) < 0)
        {
            // IBM's way of invoking an aLoRA intrinsic: the conversation without a generation prompt, then the invocation.
            (ids, _) = Prompt(call.Messages, addGenerationPrompt: false, intrinsic, variables);
            if (AdapterActivation.LastOccurrence(ids, adapter.InvocationTokens) < 0) ids = [.. ids, .. adapter.InvocationTokens!];
        }
        var p = call.Parameters;
        int maxTokens = (int)(Number(p, "max_completion_tokens") ?? Number(p, "max_tokens") ?? _options.MaxTokens);
        var sampling = Number(p, "temperature") is double t ? (t == 0 ? SamplingOptions.Greedy : _options.Sampling with { Temperature = (float)t }) : _options.Sampling;
        var request = new GenerationRequest
        {
            PromptIds = ids, MaxTokens = maxTokens, Sampling = sampling, AdapterName = intrinsic, Constraint = call.Constraint,
            Logprobs = definition.NeedsLogprobs ? IntrinsicDefinition.TopLogprobs : null,
        };
        var run = await RunAsync(request, definition.NeedsLogprobs, cancellationToken).ConfigureAwait(false);
        var tokens = definition.NeedsLogprobs ? OutputTokens.Build(_model.Tokenizer!, ids, run.Tokens, run.Logprobs) : null;
        var result = definition.ProcessOutput(run.Text, tokens, call);
        return Record(new PipelineStep(intrinsic, run.Text, result, ids.Length, run.Stats.ReusedPromptTokens, run.Stats.GeneratedTokens, run.Stats.TimeToFirstTokenSeconds) { Finish = run.Finish });
    }

    private PipelineStep Record(PipelineStep step)
    {
        _steps.Add(step);
        return step;
    }

    private static double? Number(JsonObject o, string name) => o[name] is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? PythonJson.ToDouble(v) : null;

    private JsonObject? TemplateVariables(IReadOnlyList<IntrinsicDocument> documents)
    {
        var variables = (JsonObject?)_options.TemplateVariables?.DeepClone() ?? [];
        if (documents.Count > 0) variables["documents"] = new JsonArray([.. documents.Select(d => (JsonNode)d.ToJson())]);
        return variables.Count == 0 ? null : variables;
    }

    /// <summary>
    /// The prompt ids for <paramref name="messages"/> as the chat template and tokenizer make them (as transformers'
    /// apply_chat_template does). The engine's prefix cache matches them against the conversation's ids block by
    /// block; with a template that renders a conversation as a growing text and a tokenizer that encodes the model's
    /// own tokens back to themselves, every full block of the conversation matches. (The conversation's suffix is
    /// not encoded on its own: tokenizers such as Llama's SentencePiece prepend "▁" to every text they encode.)
    /// </summary>
    private (int[] Ids, string Text) Prompt(JsonArray messages, bool addGenerationPrompt, string? adapterName, JsonObject? variables)
        => _prompter.Render(messages, addGenerationPrompt, variables, adapterName);

    private sealed record Run(string Text, List<int> Tokens, List<TokenLogprobs> Logprobs, GenerationStats Stats, FinishReason Finish);

    private async Task<Run> RunAsync(GenerationRequest request, bool logprobs, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        var tokens = new List<int>();
        var positions = new List<TokenLogprobs>();
        GenerationStats? stats = null;
        FinishReason finish = FinishReason.Stop;
        await foreach (var update in _model.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            if (update.TokenId >= 0)
            {
                tokens.Add(update.TokenId);
                if (update.Logprobs is { } lp) positions.Add(lp);
            }
            text.Append(update.Text);
            if (update.Stats is { } s) stats = s;
            if (update.Finish is { } f) finish = f;
        }
        if (logprobs && positions.Count != tokens.Count) throw new InvalidOperationException("the engine returned logprobs for only some tokens");
        return new Run(text.ToString(), tokens, positions, stats ?? throw new InvalidOperationException("the request ended without its final update"), finish);
    }
}

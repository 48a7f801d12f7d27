using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Inference;
using Microsoft.Extensions.AI;

namespace Alora.AI;

/// <summary>
/// An in-process <see cref="IChatClient"/> over a <see cref="LanguageModel"/>'s engine. <see cref="ChatOptions.ModelId"/>
/// picks a loaded adapter by name (null or the base name: the base model); temperature, top-p, top-k, max output
/// tokens, stop sequences, seed and the frequency/presence penalties map onto the engine's sampling; usage reports
/// the prompt tokens the prefix cache served as <see cref="UsageDetails.CachedInputTokenCount"/>. Additional
/// properties "add_generation_prompt" (bool) and "chat_template_kwargs" (an object) reach the chat template, as
/// in vLLM's API (an aLoRA intrinsic is invoked with add_generation_prompt = false: see <see cref="ChatPrompter"/>).
/// </summary>
public sealed class AloraChatClient : IChatClient
{
    private readonly LanguageModel _model;
    private readonly ChatPrompter _prompter;
    private readonly ChatClientMetadata _metadata;

    public AloraChatClient(LanguageModel model, string? chatTemplatePath = null, string? baseModelName = null)
    {
        _model = model;
        _prompter = new ChatPrompter(model, chatTemplatePath);
        BaseModelName = baseModelName ?? model.Path;
        _metadata = new ChatClientMetadata("alora", null, BaseModelName);
    }

    /// <summary>The ModelId that means the base model.</summary>
    public string BaseModelName { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (request, modelId) = Prepare(messages, options);
        var text = new StringBuilder();
        GenerationUpdate? last = null;
        await foreach (var update in _model.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            last = update;
        }
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
            ModelId = modelId,
            ResponseId = Guid.NewGuid().ToString("N"),
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(last),
            Usage = Usage(request, last?.Stats),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (request, modelId) = Prepare(messages, options);
        string id = Guid.NewGuid().ToString("N");
        await foreach (var update in _model.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            if (update.Text.Length > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, update.Text) { ModelId = modelId, ResponseId = id, MessageId = id };
            if (update.Finish is not null)
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(request, update.Stats))])
                {
                    ModelId = modelId, ResponseId = id, MessageId = id, FinishReason = Finish(update),
                };
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
        => serviceKey is not null ? null
            : serviceType == typeof(ChatClientMetadata) ? _metadata
            : serviceType == typeof(LanguageModel) ? _model
            : serviceType.IsInstanceOfType(this) ? this
            : null;

    public void Dispose() { }   // the model belongs to whoever made it

    private (GenerationRequest Request, string ModelId) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        string modelId = options?.ModelId ?? BaseModelName;
        string? adapter = modelId == BaseModelName ? null
            : _model.Adapters.ContainsKey(modelId) ? modelId
            : throw new ArgumentException($"ModelId '{modelId}' is neither the base model ('{BaseModelName}') nor a loaded adapter ({string.Join(", ", _model.Adapters.Keys)})", nameof(options));
        var conversation = new JsonArray();
        if (options?.Instructions is { Length: > 0 } instructions) conversation.Add(new JsonObject { ["role"] = "system", ["content"] = instructions });
        foreach (var message in messages) conversation.Add(new JsonObject { ["role"] = message.Role.Value, ["content"] = message.Text });
        var properties = options?.AdditionalProperties;
        bool? addGenerationPrompt = properties?.TryGetValue("add_generation_prompt", out bool add) == true ? add : null;
        JsonObject? variables = properties?.TryGetValue("chat_template_kwargs", out object? kwargs) == true && kwargs is not null
            ? JsonSerializer.SerializeToNode(kwargs) as JsonObject : null;
        var (ids, _) = _prompter.Render(conversation, addGenerationPrompt, variables, adapter);
        var sampling = new SamplingOptions
        {
            Temperature = options?.Temperature ?? 1f,
            TopP = options?.TopP ?? 1f,
            TopK = options?.TopK ?? 0,
            MinP = 0,
            RepetitionPenalty = 1,
            FrequencyPenalty = options?.FrequencyPenalty ?? 0,
            PresencePenalty = options?.PresencePenalty ?? 0,
            Seed = options?.Seed is long seed ? unchecked((ulong)seed) : null,
        };
        int limit = Math.Min(_model.Config.MaxPositionEmbeddings, _model.Engine.Options.KvCacheTokens) - ids.Length;
        var request = new GenerationRequest
        {
            PromptIds = ids,
            AdapterName = adapter,
            Sampling = sampling,
            MaxTokens = Math.Max(0, Math.Min(options?.MaxOutputTokens ?? limit, limit)),
            StopStrings = options?.StopSequences is { } stops ? [.. stops] : [],
            Constraint = Constraint(options?.ResponseFormat),
        };
        return (request, modelId);
    }

    /// <summary>
    /// <see cref="ChatOptions.ResponseFormat"/> as structured outputs: JSON with a schema constrains the output to
    /// the schema, JSON without one to any JSON object, text to nothing.
    /// </summary>
    private static Structured.OutputConstraint? Constraint(ChatResponseFormat? format) => format switch
    {
        ChatResponseFormatJson { Schema: { } schema } => Structured.OutputConstraint.JsonSchema(
            System.Text.Json.Nodes.JsonNode.Parse(schema.GetRawText()) ?? throw new ArgumentException("the response format's JSON schema is null", "options")),
        ChatResponseFormatJson => Structured.OutputConstraint.JsonObject(),
        _ => null,
    };

    private static ChatFinishReason? Finish(GenerationUpdate? last) => last?.Finish switch
    {
        FinishReason.Stop => ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        _ => null,
    };

    private static UsageDetails Usage(GenerationRequest request, GenerationStats? stats) => new()
    {
        InputTokenCount = request.PromptIds.Length,
        OutputTokenCount = stats?.GeneratedTokens ?? 0,
        TotalTokenCount = request.PromptIds.Length + (stats?.GeneratedTokens ?? 0),
        CachedInputTokenCount = stats?.ReusedPromptTokens ?? 0,
    };
}

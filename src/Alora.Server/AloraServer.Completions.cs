using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Inference;
using Microsoft.AspNetCore.Http;

namespace Alora.Server;

public sealed partial class AloraServer
{
    /// <summary>A validated completion request: the prompt ids, the engine request, and how to answer.</summary>
    private sealed record Prepared(string Model, int[] PromptIds, GenerationRequest Request, int Choices, bool Stream, bool IncludeUsage, bool ReturnTokenIds);

    private Task ChatCompletionsAsync(HttpContext context, RequestFields fields) => CompleteAsync(context, fields, chat: true);

    private Task CompletionsAsync(HttpContext context, RequestFields fields) => CompleteAsync(context, fields, chat: false);

    private Prepared Prepare(RequestFields f, bool chat)
    {
        string model = f.RequiredString("model");
        string? adapter = ResolveAdapter(f, model);
        int[] ids = chat ? RenderChat(f, adapter).Ids : CompletionPrompt(f);
        string promptField = chat ? "messages" : "prompt";
        if (ids.Length == 0) throw ApiError.BadField(promptField, "the prompt is empty (no tokens)");
        int maxLength = MaxModelLength;
        if (ids.Length >= maxLength)
            throw new ApiError(400, $"This model's maximum context length is {maxLength} tokens. However, your prompt has {ids.Length} tokens.", promptField, "context_length_exceeded");
        string maxField = f.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        int maxTokens = (int)(f.OptionalInteger(maxField, 0, int.MaxValue) ?? maxLength - ids.Length);
        if (ids.Length + maxTokens > maxLength)
            throw new ApiError(400,
                $"This model's maximum context length is {maxLength} tokens. However, you requested {ids.Length + maxTokens} tokens ({ids.Length} in the prompt, {maxTokens} in the completion). Please reduce the length of the prompt or the completion.",
                maxField, "context_length_exceeded");
        // Chat: logprobs (bool) and top_logprobs (0–20); completions: logprobs (the number of alternatives, 0–5).
        int? logprobs;
        if (chat)
        {
            bool want = f.OptionalBool("logprobs") ?? false;
            long? top = f.OptionalInteger("top_logprobs", 0, 20);
            if (top is not null && !want) throw ApiError.BadField("top_logprobs", "needs \"logprobs\": true");
            logprobs = want ? (int)(top ?? 0) : null;
        }
        else logprobs = (int?)f.OptionalInteger("logprobs", 0, 5);

        long? seed = f.OptionalInteger("seed", long.MinValue, long.MaxValue);
        var sampling = new SamplingOptions
        {
            Temperature = (float)(f.OptionalNumber("temperature", 0, 2) ?? 1),
            TopP = (float)(f.OptionalNumber("top_p", 1e-9, 1) ?? 1),
            TopK = (int)Math.Max(0, f.OptionalInteger("top_k", -1, int.MaxValue) ?? 0),
            MinP = (float)(f.OptionalNumber("min_p", 0, 1) ?? 0),
            RepetitionPenalty = (float)(f.OptionalNumber("repetition_penalty", 1e-6, 100) ?? 1),
            RepetitionWindow = -1,
            FrequencyPenalty = (float)(f.OptionalNumber("frequency_penalty", -2, 2) ?? 0),
            PresencePenalty = (float)(f.OptionalNumber("presence_penalty", -2, 2) ?? 0),
            Seed = seed is long s ? unchecked((ulong)s) : null,
        };
        var streamOptions = f.OptionalObject("stream_options");
        bool includeUsage = streamOptions?["include_usage"] is JsonValue v && v.GetValueKind() == JsonValueKind.True;
        var request = new GenerationRequest
        {
            PromptIds = ids,
            MaxTokens = maxTokens,
            MinTokens = (int)(f.OptionalInteger("min_tokens", 0, maxTokens) ?? 0),
            IgnoreEos = f.OptionalBool("ignore_eos") ?? false,
            StopStrings = f.StopStrings("stop"),
            Sampling = sampling,
            AdapterName = adapter,
            Logprobs = logprobs,
            Constraint = Constraint(f),
        };
        return new Prepared(model, ids, request, (int)(f.OptionalInteger("n", 1, 16) ?? 1), f.OptionalBool("stream") ?? false, includeUsage,
            f.OptionalBool("return_token_ids") ?? false);
    }

    /// <summary>The adapter a request names: <c>model</c> (the served name is the base model), or llama.cpp's <c>lora: [{id, scale}]</c>.</summary>
    private string? ResolveAdapter(RequestFields f, string model)
    {
        var names = _model.Engine.AdapterNames;
        string? adapter = model == _options.ServedModelName ? null
            : names.Contains(model) ? model
            : throw new ApiError(404, $"The model '{model}' does not exist; this server has {string.Join(", ", [_options.ServedModelName, .. names])}", "model", "model_not_found");
        if (f.Node("lora") is { } loraNode)
        {
            if (loraNode is not JsonArray lora) throw ApiError.BadField("lora", $"expected an array of {{\"id\", \"scale\"}}, found {RequestFields.Describe(loraNode)}");
            var ordered = _model.Adapters.Keys.Order(StringComparer.Ordinal).ToArray();
            foreach (var (entry, i) in lora.Select((e, i) => (e, i)))
            {
                if (entry is not JsonObject o) throw ApiError.BadField($"lora[{i}]", $"expected an object, found {RequestFields.Describe(entry)}");
                var item = new RequestFields(o);
                int id = (int)(item.OptionalInteger("id", 0, ordered.Length - 1) ?? throw ApiError.BadField($"lora[{i}].id", "is required"));
                double scale = item.OptionalNumber("scale", double.MinValue, double.MaxValue) ?? 1;
                if (scale == 0) continue;
                if (scale != 1) throw ApiError.BadField($"lora[{i}].scale", $"only 1 (on) or 0 (off) is supported, found {scale}");
                if (adapter is not null && adapter != ordered[id]) throw ApiError.BadField("lora", "one adapter per request: it is already chosen by model or an earlier entry");
                adapter = ordered[id];
            }
        }
        return adapter;
    }

    /// <summary>The 400 for an aLoRA request whose prompt lacks the invocation (the engine refuses it at submission).</summary>
    private ApiError InvocationMissing(string adapterName, string promptField) => new(400,
        $"adapter '{adapterName}' is an aLoRA: it applies from its invocation {_prompter.DescribeInvocation(adapterName)} on, and the prompt does not contain it. " +
        "End the prompt with the invocation (for chat: a chat template whose generation prompt is the invocation, or add_generation_prompt: false to append the adapter's invocation to the rendered conversation).",
        promptField, "invocation_not_found");

    private int[] CompletionPrompt(RequestFields f)
    {
        var node = f.Node("prompt");
        return node switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.String => Tokenizer.Encode(v.GetValue<string>(), addSpecialTokens: f.OptionalBool("add_special_tokens") ?? true),
            JsonArray { Count: > 0 } array when array[0] is JsonValue first && first.GetValueKind() == JsonValueKind.Number => RequestFields.TokenIds("prompt", array, _model.Config.VocabSize),
            JsonArray { Count: 1 } array when array[0] is JsonValue only && only.GetValueKind() == JsonValueKind.String => Tokenizer.Encode(only.GetValue<string>(), addSpecialTokens: f.OptionalBool("add_special_tokens") ?? true),
            null => throw ApiError.BadField("prompt", "is required"),
            _ => throw ApiError.BadField("prompt", $"expected a string or an array of token ids, found {RequestFields.Describe(node)}"),
        };
    }

    /// <summary>The request's messages through the chat template (<see cref="ChatPrompter"/>): text parts only.</summary>
    private (int[] Ids, string Text) RenderChat(RequestFields f, string? adapterName)
    {
        if (!_prompter.HasTemplate)
            throw new ApiError(400, $"{_model.Path} has no chat template; start the server with --chat-template FILE or use /v1/completions", "messages", "no_chat_template");
        if (f.Node("messages") is not JsonArray messages || messages.Count == 0)
            throw ApiError.BadField("messages", $"expected a non-empty array of messages, found {RequestFields.Describe(f.Node("messages"))}");
        var normalized = new JsonArray();
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i] is not JsonObject message) throw ApiError.BadField($"messages[{i}]", $"expected an object, found {RequestFields.Describe(messages[i])}");
            var m = new RequestFields(message);
            string role = m.OptionalString("role") ?? throw ApiError.BadField($"messages[{i}].role", "is required");
            var copy = (JsonObject)message.DeepClone();
            copy["content"] = message["content"] switch
            {
                null => "",
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                JsonArray parts => string.Concat(parts.Select((p, k) => p is JsonObject { } part && part["type"] is JsonValue type && type.GetValueKind() == JsonValueKind.String && type.GetValue<string>() == "text" && part["text"] is JsonValue t && t.GetValueKind() == JsonValueKind.String
                    ? t.GetValue<string>()
                    : throw ApiError.BadField($"messages[{i}].content[{k}]", $"only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported, found {RequestFields.Describe(p)}"))),
                var other => throw ApiError.BadField($"messages[{i}].content", $"expected a string or an array of text parts, found {RequestFields.Describe(other)}"),
            };
            copy["role"] = role;
            normalized.Add(copy);
        }
        try { return _prompter.Render(normalized, f.OptionalBool("add_generation_prompt"), f.OptionalObject("chat_template_kwargs"), adapterName); }
        catch (Tokenization.Templates.TemplateException e)
        {
            throw new ApiError(400, $"the chat template failed on these messages: {e.Message}", "messages", "template_error");
        }
    }
}

using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Intrinsics;
using Alora.Serving;
using Microsoft.AspNetCore.Http;

namespace Alora.Server;

/// <summary>
/// Intrinsics on the chat endpoint: a request whose <c>model</c> names an intrinsic (<c>--intrinsic NAME=FOLDER</c>)
/// goes through its io.yaml as granite-common's <c>IntrinsicsRewriter</c> and <c>IntrinsicsResultProcessor</c> would
/// put it around a vLLM server: the request body is rewritten (instruction turn, documents, io.yaml's parameters,
/// the schema as <c>response_format</c>, logprobs when a transformation needs them), then prepared and run as any
/// chat request, and the output is transformed before it is returned (logprobs dropped, as granite-common does).
/// </summary>
public sealed partial class AloraServer
{
    /// <summary>The intrinsic a chat request names by its model, or null.</summary>
    private IntrinsicDefinition? IntrinsicFor(RequestFields fields)
        => fields.Node("model") is JsonValue v && v.GetValueKind() == JsonValueKind.String && _options.Intrinsics.TryGetValue(v.GetValue<string>(), out var d) ? d : null;

    /// <summary>
    /// The request as the intrinsic asks for it: messages processed by io.yaml (documents from the body's
    /// <c>documents</c>, vLLM's extra_body field, and instruction fields from <c>intrinsic_kwargs</c>), io.yaml's
    /// parameters over the request's own, <c>response_format</c> set to the schema, and for an aLoRA without its
    /// invocation in the generation prompt, <c>add_generation_prompt: false</c> (the invocation is appended).
    /// </summary>
    private (RequestFields Fields, IntrinsicCall Call) RewriteForIntrinsic(RequestFields fields, string name, IntrinsicDefinition definition)
    {
        if (fields.Node("messages") is not JsonArray messages || messages.Count == 0)
            throw ApiError.BadField("messages", $"expected a non-empty array of messages, found {RequestFields.Describe(fields.Node("messages"))}");
        var plain = new JsonArray();
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i] is not JsonObject m) throw ApiError.BadField($"messages[{i}]", $"expected an object, found {RequestFields.Describe(messages[i])}");
            var copy = (JsonObject)m.DeepClone();
            copy["content"] = m["content"] switch
            {
                null => "",
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                JsonArray parts => string.Concat(parts.Select((p, k) => p is JsonObject { } part && part["text"] is JsonValue t && t.GetValueKind() == JsonValueKind.String ? t.GetValue<string>()
                    : throw ApiError.BadField($"messages[{i}].content[{k}]", $"only text parts are supported, found {RequestFields.Describe(p)}"))),
                var other => throw ApiError.BadField($"messages[{i}].content", $"expected a string or an array of text parts, found {RequestFields.Describe(other)}"),
            };
            plain.Add(copy);
        }
        var documents = Documents(fields);
        var arguments = new Dictionary<string, string>(StringComparer.Ordinal);
        if (fields.OptionalObject("intrinsic_kwargs") is { } kwargs)
            foreach (var (k, v) in kwargs)
                arguments[k] = v is JsonObject or JsonArray ? throw ApiError.BadField($"intrinsic_kwargs.{k}", $"expected a string or number, found {RequestFields.Describe(v)}") : PythonJson.Str(v);

        IntrinsicCall call;
        try { call = definition.Prepare(plain, documents, arguments); }
        catch (IntrinsicException e) { throw new ApiError(400, $"intrinsic '{name}': {e.Message}", "messages", "intrinsic_input"); }

        var body = (JsonObject)fields.Body.DeepClone();
        body.Remove("documents");
        body.Remove("intrinsic_kwargs");
        body["messages"] = call.Messages.DeepClone();
        var templateVariables = (JsonObject?)fields.OptionalObject("chat_template_kwargs")?.DeepClone() ?? [];
        if (call.Documents.Count > 0) templateVariables["documents"] = new JsonArray([.. call.Documents.Select(d => (JsonNode)d.ToJson())]);
        if (templateVariables.Count > 0) body["chat_template_kwargs"] = templateVariables;
        // io.yaml's parameters win over the request's (granite-common updates the request with them). The model
        // stays the intrinsic's name: here the intrinsic is the adapter loaded under it.
        foreach (var (k, v) in call.Parameters)
            if (k != "model") body[k] = v?.DeepClone();
        foreach (var (k, v) in call.ExtraBody) body[k] = v?.DeepClone();
        if (definition.ResponseFormat is { } schema)
            body["response_format"] = new JsonObject
            {
                ["type"] = "json_schema",
                ["json_schema"] = new JsonObject { ["name"] = name, ["schema"] = schema.DeepClone(), ["strict"] = true },
            };
        // An aLoRA whose invocation the generation prompt does not hold is invoked as IBM's intrinsics are: the
        // conversation rendered without a generation prompt, the invocation appended.
        if (!body.ContainsKey("add_generation_prompt") && _model.Adapters.TryGetValue(name, out var adapter) && adapter.IsActivated && _prompter.HasTemplate)
        {
            try
            {
                int[] ids = _prompter.Render(call.Messages, addGenerationPrompt: true, templateVariables.Count > 0 ? templateVariables : null, name).Ids;
                if (AdapterActivation.LastOccurrence(ids, adapter.InvocationTokens) < 0) body["add_generation_prompt"] = false;
            }
            catch (Tokenization.Templates.TemplateException e) { throw new ApiError(400, $"the chat template failed on these messages: {e.Message}", "messages", "template_error"); }
        }
        return (new RequestFields(body), call);
    }

    /// <summary>The body's <c>documents</c> (vLLM's extra_body.documents): objects with text, and optional doc_id and title.</summary>
    private static List<IntrinsicDocument> Documents(RequestFields fields)
    {
        var node = fields.Node("documents");
        if (node is null) return [];
        if (node is not JsonArray array) throw ApiError.BadField("documents", $"expected an array of {{\"text\", \"doc_id\"}} objects, found {RequestFields.Describe(node)}");
        var result = new List<IntrinsicDocument>();
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject o) throw ApiError.BadField($"documents[{i}]", $"expected an object, found {RequestFields.Describe(array[i])}");
            var d = new RequestFields(o);
            string text = d.OptionalString("text") ?? throw ApiError.BadField($"documents[{i}].text", "is required");
            string? id = o["doc_id"] switch
            {
                null => null,
                JsonValue v when v.GetValueKind() is JsonValueKind.String or JsonValueKind.Number => PythonJson.Str(v),
                var other => throw ApiError.BadField($"documents[{i}].doc_id", $"expected a string, found {RequestFields.Describe(other)}"),
            };
            result.Add(new IntrinsicDocument(text, id, d.OptionalString("title")));
        }
        return result;
    }

    private async Task IntrinsicChatAsync(HttpContext context, RequestFields original, IntrinsicDefinition definition)
    {
        string name = original.RequiredString("model");
        var (fields, call) = RewriteForIntrinsic(original, name, definition);
        var prepared = Prepare(fields, chat: true);
        // The schema is the request's constraint (structured outputs enforce it once the engine does).
        if (prepared.Request.Constraint is null && call.Constraint is not null)
            prepared = prepared with { Request = prepared.Request with { Constraint = call.Constraint } };
        if (definition.NeedsLogprobs && prepared.Request.Logprobs is not >= IntrinsicDefinition.TopLogprobs)
            prepared = prepared with { Request = prepared.Request with { Logprobs = IntrinsicDefinition.TopLogprobs } };
        var (streams, choices) = SubmitChoices(context, prepared, "messages");
        _metrics.RequestStarted();
        string status = "error";
        var results = new List<string>();
        try
        {
            await Task.WhenAll(streams.Select(async (stream, i) =>
            {
                await foreach (var update in stream.WithCancellation(context.RequestAborted).ConfigureAwait(false)) Accept(choices[i], update);
            })).ConfigureAwait(false);
            foreach (var c in choices)
            {
                IReadOnlyList<OutputToken>? tokens = null;
                if (c.Logprobs.Count == c.TokenIds.Count && c.Logprobs.Count > 0 && _model.Tokenizer is { } tokenizer)
                    tokens = OutputTokens.Build(tokenizer, prepared.PromptIds, c.TokenIds, c.Logprobs);
                try { results.Add(definition.ProcessOutputText(c.Text.ToString(), tokens, call)); }
                catch (IntrinsicException e)
                {
                    throw new ApiError(500, $"intrinsic '{name}': its output could not be processed by {definition.Source}: {e.Message} (raw output: {JsonSerializer.Serialize(c.Text.ToString())})", null, "intrinsic_output");
                }
            }
            status = "ok";
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            status = "cancelled";
            throw;
        }
        catch (KvCacheFullException e)
        {
            throw new ApiError(503, e.Message, null, "kv_cache_full");
        }
        finally
        {
            _metrics.RequestFinished(status, choices.Select(c => c.Stats));
            int completion = choices.Sum(c => c.Stats?.GeneratedTokens ?? 0);
            context.Items[LogDetailKey] = $"model={name} (intrinsic) prompt={prepared.PromptIds.Length} cached={choices.FirstOrDefault()?.Stats?.ReusedPromptTokens ?? 0} completion={completion} {status}";
        }

        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (prepared.Stream)
        {
            // The result exists only once the whole output is processed: one content chunk per choice, then [DONE].
            var response = context.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache";
            foreach (var c in choices)
            {
                var chunk = new JsonObject
                {
                    ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = name,
                    ["choices"] = new JsonArray(new JsonObject { ["index"] = c.Index, ["delta"] = new JsonObject { ["role"] = "assistant", ["content"] = results[c.Index] }, ["logprobs"] = null, ["finish_reason"] = c.FinishReason }),
                };
                await response.WriteAsync("data: " + chunk.ToJsonString(JsonDefaults.Options) + "\n\n", context.RequestAborted).ConfigureAwait(false);
            }
            if (prepared.IncludeUsage)
            {
                var usageChunk = new JsonObject { ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = name, ["choices"] = new JsonArray(), ["usage"] = Usage(prepared, choices) };
                await response.WriteAsync("data: " + usageChunk.ToJsonString(JsonDefaults.Options) + "\n\n", context.RequestAborted).ConfigureAwait(false);
            }
            await response.WriteAsync("data: [DONE]\n\n", context.RequestAborted).ConfigureAwait(false);
            return;
        }
        var array = new JsonArray();
        foreach (var c in choices)
            array.Add(new JsonObject { ["index"] = c.Index, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = results[c.Index] }, ["logprobs"] = null, ["finish_reason"] = c.FinishReason });
        var body = new JsonObject
        {
            ["id"] = id, ["object"] = "chat.completion", ["created"] = created, ["model"] = name, ["choices"] = array, ["usage"] = Usage(prepared, choices),
        };
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(JsonDefaults.Options), context.RequestAborted).ConfigureAwait(false);
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Serving;
using Microsoft.AspNetCore.Http;

namespace Alora.Server;

public sealed partial class AloraServer
{
    /// <summary>One choice's result as it accumulates.</summary>
    private sealed class Choice(int index)
    {
        public int Index { get; } = index;
        public StringBuilder Text { get; } = new();
        public List<int> TokenIds { get; } = [];
        public GenerationStats? Stats { get; set; }
        public List<TokenLogprobs> Logprobs { get; } = [];
        public string? FinishReason { get; set; }
    }

    /// <summary>
    /// Submits the request's n choices to the engine (choice i is seeded seed + i), after checking the waiting queue
    /// (a 503 when full). A refused submission cancels the choices already submitted and is a 400 naming the prompt field.
    /// </summary>
    private (List<RequestStream> Streams, List<Choice> Choices) SubmitChoices(HttpContext context, Prepared prepared, string promptField)
    {
        if (_model.Engine.Metrics().WaitingRequests >= _options.MaxWaitingRequests)
            throw new ApiError(503, $"the server is busy: {_options.MaxWaitingRequests} requests are already waiting; retry later", null, "queue_full");
        var streams = new List<RequestStream>();
        var choices = new List<Choice>();
        try
        {
            for (int i = 0; i < prepared.Choices; i++)
            {
                var request = prepared.Request;
                if (i > 0 && request.Sampling.Seed is ulong seed) request = request with { Sampling = request.Sampling with { Seed = seed + (ulong)i } };
                streams.Add(_model.Engine.Submit(request, context.RequestAborted));
                choices.Add(new Choice(i));
            }
        }
        catch (Exception e) when (e is ArgumentException or InvocationNotFoundException or KeyNotFoundException)
        {
            foreach (var s in streams) _model.Engine.Cancel(s.Id);
            throw e is InvocationNotFoundException ? InvocationMissing(prepared.Request.AdapterName!, promptField) : new ApiError(400, e.Message, promptField);
        }
        return (streams, choices);
    }

    private async Task CompleteAsync(HttpContext context, RequestFields fields, bool chat)
    {
        var prepared = Prepare(fields, chat);
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        var (streams, choices) = SubmitChoices(context, prepared, chat ? "messages" : "prompt");
        _metrics.RequestStarted();
        string status = "error";
        try
        {
            if (prepared.Stream) await StreamAsync(context, prepared, id, chat, streams, choices).ConfigureAwait(false);
            else await RespondAsync(context, prepared, id, chat, streams, choices).ConfigureAwait(false);
            status = "ok";
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            status = "cancelled";
            throw;
        }
        catch (KvCacheFullException e) when (!context.Response.HasStarted)
        {
            throw new ApiError(503, e.Message, null, "kv_cache_full");
        }
        finally
        {
            _metrics.RequestFinished(status, choices.Select(c => c.Stats));
            int completion = choices.Sum(c => c.Stats?.GeneratedTokens ?? 0);
            context.Items[LogDetailKey] = $"model={prepared.Model} prompt={prepared.PromptIds.Length} cached={choices.FirstOrDefault()?.Stats?.ReusedPromptTokens ?? 0} completion={completion} {status}";
        }
    }

    private static void Accept(Choice choice, GenerationUpdate update)
    {
        if (update.TokenId >= 0) choice.TokenIds.Add(update.TokenId);
        if (update.Logprobs is { } logprobs) choice.Logprobs.Add(logprobs);
        choice.Text.Append(update.Text);
        if (update.Finish is { } finish)
        {
            choice.FinishReason = finish == FinishReason.Stop ? "stop" : "length";
            choice.Stats = update.Stats;
        }
    }

    private JsonObject Usage(Prepared prepared, List<Choice> choices)
    {
        int completion = choices.Sum(c => c.Stats?.GeneratedTokens ?? c.TokenIds.Count);
        return new JsonObject
        {
            ["prompt_tokens"] = prepared.PromptIds.Length,
            ["completion_tokens"] = completion,
            ["total_tokens"] = prepared.PromptIds.Length + completion,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = choices.Count == 0 ? 0 : choices.Min(c => c.Stats?.ReusedPromptTokens ?? 0) },
        };
    }

    /// <summary>OpenAI's logprobs object: chat's {"content": [{token, logprob, bytes, top_logprobs}]}, or completions' parallel lists.</summary>
    private JsonObject? LogprobsJson(Prepared prepared, bool chat, List<TokenLogprobs> positions)
    {
        if (prepared.Request.Logprobs is null) return null;
        string Token(int id) => _model.Tokenizer?.Decode([id]) ?? id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        JsonArray Bytes(string token) => new([.. System.Text.Encoding.UTF8.GetBytes(token).Select(b => (JsonNode)(int)b)]);
        if (chat)
        {
            var content = new JsonArray();
            foreach (var p in positions)
            {
                string token = Token(p.Chosen.TokenId);
                var top = new JsonArray();
                foreach (var alternative in p.Top)
                {
                    string t = Token(alternative.TokenId);
                    top.Add(new JsonObject { ["token"] = t, ["logprob"] = alternative.Logprob, ["bytes"] = Bytes(t) });
                }
                content.Add(new JsonObject { ["token"] = token, ["logprob"] = p.Chosen.Logprob, ["bytes"] = Bytes(token), ["top_logprobs"] = top });
            }
            return new JsonObject { ["content"] = content };
        }
        var tokens = new JsonArray();
        var tokenLogprobs = new JsonArray();
        var topLogprobs = new JsonArray();
        var offsets = new JsonArray();
        int offset = 0;
        foreach (var p in positions)
        {
            string token = Token(p.Chosen.TokenId);
            tokens.Add(token);
            tokenLogprobs.Add(p.Chosen.Logprob);
            var top = new JsonObject();
            foreach (var alternative in p.Top) top[Token(alternative.TokenId)] = alternative.Logprob;
            topLogprobs.Add(top);
            offsets.Add(offset);
            offset += token.Length;
        }
        return new JsonObject { ["tokens"] = tokens, ["token_logprobs"] = tokenLogprobs, ["top_logprobs"] = topLogprobs, ["text_offset"] = offsets };
    }

    private static JsonArray Ids(IEnumerable<int> ids)
    {
        var array = new JsonArray();
        foreach (int i in ids) array.Add(i);
        return array;
    }

    private async Task RespondAsync(HttpContext context, Prepared prepared, string id, bool chat, List<RequestStream> streams, List<Choice> choices)
    {
        await Task.WhenAll(streams.Select(async (stream, i) =>
        {
            await foreach (var update in stream.WithCancellation(context.RequestAborted).ConfigureAwait(false)) Accept(choices[i], update);
        })).ConfigureAwait(false);
        var array = new JsonArray();
        foreach (var c in choices)
        {
            var choice = chat
                ? new JsonObject { ["index"] = c.Index, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = c.Text.ToString() }, ["logprobs"] = LogprobsJson(prepared, chat, c.Logprobs), ["finish_reason"] = c.FinishReason }
                : new JsonObject { ["index"] = c.Index, ["text"] = c.Text.ToString(), ["logprobs"] = LogprobsJson(prepared, chat, c.Logprobs), ["finish_reason"] = c.FinishReason };
            if (prepared.ReturnTokenIds) choice["token_ids"] = Ids(c.TokenIds);
            array.Add(choice);
        }
        var body = new JsonObject
        {
            ["id"] = id, ["object"] = chat ? "chat.completion" : "text_completion", ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["model"] = prepared.Model, ["choices"] = array, ["usage"] = Usage(prepared, choices),
        };
        if (prepared.ReturnTokenIds) body["prompt_token_ids"] = Ids(prepared.PromptIds);
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(JsonDefaults.Options), context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Server-sent events: one chunk per update of each choice, the finish reasons, the usage if asked, then [DONE].</summary>
    private async Task StreamAsync(HttpContext context, Prepared prepared, string id, bool chat, List<RequestStream> streams, List<Choice> choices)
    {
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var gate = new SemaphoreSlim(1, 1);
        var cancel = context.RequestAborted;

        async Task Send(JsonObject chunk)
        {
            await gate.WaitAsync(cancel).ConfigureAwait(false);
            try
            {
                await response.WriteAsync("data: " + chunk.ToJsonString(JsonDefaults.Options) + "\n\n", cancel).ConfigureAwait(false);
                await response.Body.FlushAsync(cancel).ConfigureAwait(false);
            }
            finally { gate.Release(); }
        }

        JsonObject Chunk(JsonObject choice, JsonObject? usage = null)
        {
            var chunk = new JsonObject
            {
                ["id"] = id, ["object"] = chat ? "chat.completion.chunk" : "text_completion", ["created"] = created, ["model"] = prepared.Model,
                ["choices"] = choice.Count == 0 ? new JsonArray() : new JsonArray(choice),
            };
            if (usage is not null) chunk["usage"] = usage;
            return chunk;
        }

        JsonObject Delta(Choice c, string text, string? finish, IEnumerable<int> tokenIds, bool first, TokenLogprobs? logprobs = null)
        {
            var positions = logprobs is null ? [] : new List<TokenLogprobs> { logprobs };
            var choice = chat
                ? new JsonObject { ["index"] = c.Index, ["delta"] = first ? new JsonObject { ["role"] = "assistant", ["content"] = text } : new JsonObject { ["content"] = text }, ["logprobs"] = LogprobsJson(prepared, chat, positions), ["finish_reason"] = finish }
                : new JsonObject { ["index"] = c.Index, ["text"] = text, ["logprobs"] = LogprobsJson(prepared, chat, positions), ["finish_reason"] = finish };
            if (prepared.ReturnTokenIds) choice["token_ids"] = Ids(tokenIds);
            return choice;
        }

        await response.StartAsync(cancel).ConfigureAwait(false);
        await Task.WhenAll(streams.Select(async (stream, i) =>
        {
            var c = choices[i];
            bool first = true;
            if (chat)
            {
                await Send(Chunk(Delta(c, "", null, [], first: true))).ConfigureAwait(false);
                first = false;
            }
            await foreach (var update in stream.WithCancellation(cancel).ConfigureAwait(false))
            {
                Accept(c, update);
                if (update.Text.Length == 0 && update.Finish is null && !prepared.ReturnTokenIds) continue;
                await Send(Chunk(Delta(c, update.Text, c.FinishReason, update.TokenId >= 0 ? [update.TokenId] : [], first, update.Logprobs))).ConfigureAwait(false);
                first = false;
            }
        })).ConfigureAwait(false);
        if (prepared.IncludeUsage) await Send(Chunk([], Usage(prepared, choices))).ConfigureAwait(false);
        await response.WriteAsync("data: [DONE]\n\n", cancel).ConfigureAwait(false);
        await response.Body.FlushAsync(cancel).ConfigureAwait(false);
    }
}

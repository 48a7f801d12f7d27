using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Alora.Inference;
using OpenAI.Chat;

namespace Alora.Tests.Server;

/// <summary>The OpenAI-compatible API through the official OpenAI .NET SDK and plain HTTP, on a real server.</summary>
public sealed class OpenAiServerTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private static readonly ChatMessage[] Story = [new UserChatMessage("Lily had a red ball. She liked to play with it.")];

    [Fact]
    public async Task ModelsListTheBaseAndEachAdapterWithTheBaseAsParent()
    {
        var body = JsonNode.Parse(await server.Http.GetStringAsync("/v1/models"))!;
        var data = body["data"]!.AsArray().Select(m => (Id: m!["id"]!.GetValue<string>(), Parent: m["parent"]?.GetValue<string>())).ToArray();
        Assert.Contains((ServerFixture.BaseName, (string?)null), data);
        Assert.Contains(("qa", (string?)ServerFixture.BaseName), data);
        Assert.Contains(("story", (string?)ServerFixture.BaseName), data);
        Assert.Equal(HttpStatusCode.OK, (await server.Http.GetAsync("/health")).StatusCode);
        Assert.NotNull(JsonNode.Parse(await server.Http.GetStringAsync("/version"))!["version"]);
    }

    [Theory]
    [InlineData(ServerFixture.BaseName)]
    [InlineData("story")]
    public async Task ChatStreamingAndNotGiveTheSameGreedyText(string model)
    {
        var client = server.Chat(model);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        var completion = (await client.CompleteChatAsync(Story, options)).Value;
        string text = completion.Content[0].Text;
        Assert.False(string.IsNullOrEmpty(text));
        Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);

        var streamed = new StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in client.CompleteChatStreamingAsync(Story, options))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            usage ??= update.Usage;
        }
        Assert.Equal(text, streamed.ToString());
        Assert.NotNull(usage);
        Assert.Equal(completion.Usage.InputTokenCount, usage!.InputTokenCount);
    }

    [Fact]
    public async Task CompletionsTakeTextOrTokenIdsAndMatchTheLibrary()
    {
        int[] ids = server.Model.Encode("Once upon a time");
        var (status, byText) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "Once upon a time", max_tokens = 16, temperature = 0, return_token_ids = true });
        Assert.Equal(200, status);
        var (_, byIds) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = ids, max_tokens = 16, temperature = 0 });
        Assert.Equal(byText["choices"]![0]!["text"]!.GetValue<string>(), byIds["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal(ids, byText["prompt_token_ids"]!.AsArray().Select(n => n!.GetValue<int>()));

        var expected = new List<int>();
        await foreach (var u in server.Model.GenerateAsync(new GenerationRequest { PromptIds = ids, MaxTokens = 16 })) if (u.TokenId >= 0) expected.Add(u.TokenId);
        Assert.Equal(expected, byText["choices"]![0]!["token_ids"]!.AsArray().Select(n => n!.GetValue<int>()));
    }

    [Fact]
    public async Task AnAloraAfterABaseConversationGetsEveryBlockBeforeItsInvocationFromTheCache()
    {
        // A conversation long enough for several 16-token blocks; the invocation is the generation prompt.
        var messages = new[] { new { role = "user", content = "Lily had a red ball. She liked to play with it every day in the big green park near her house." } };
        var (s1, first) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages, max_tokens = 1, temperature = 0, add_generation_prompt = false, return_token_ids = true });
        Assert.True(s1 == 200, first.ToJsonString());
        int conversation = first["prompt_token_ids"]!.AsArray().Count;

        var (s2, asked) = await server.PostAsync("/v1/chat/completions", new { model = "qa", messages, max_tokens = 4, temperature = 0, chat_template_kwargs = new { ask = true }, return_token_ids = true });
        Assert.True(s2 == 200, asked.ToJsonString());
        int[] prompt = [.. asked["prompt_token_ids"]!.AsArray().Select(n => n!.GetValue<int>())];
        int invocationStart = AdapterActivation.FindStart(prompt, server.Model.Adapter("qa"))!.Value;
        Assert.Equal(conversation, invocationStart);   // the rendered conversation, then "\nQ:"
        int cached = asked["usage"]!["prompt_tokens_details"]!["cached_tokens"]!.GetValue<int>();
        Assert.Equal(Math.Min(conversation, invocationStart) / 16 * 16, cached);
        Assert.True(cached >= 16);

        // The other way to reach the invocation: no generation prompt, the adapter's invocation appended.
        var (s3, appended) = await server.PostAsync("/v1/chat/completions", new { model = "qa", messages, max_tokens = 4, temperature = 0, add_generation_prompt = false, return_token_ids = true });
        Assert.Equal(200, s3);
        Assert.Equal([.. prompt[..conversation], 13, 473, 467], appended["prompt_token_ids"]!.AsArray().Select(n => n!.GetValue<int>()));

        // The reverse: the base model on the aLoRA's prompt reuses none of the aLoRA's blocks (only base blocks before the invocation).
        var (_, back) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = prompt, max_tokens = 1 });
        Assert.Equal(invocationStart / 16 * 16, back["usage"]!["prompt_tokens_details"]!["cached_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task ErrorsHaveTheirStatusAndOpenAisShape()
    {
        async Task<JsonObject> Expect(HttpStatusCode status, HttpResponseMessage response)
        {
            Assert.Equal(status, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!.AsObject();
            Assert.NotNull(error["message"]);
            Assert.NotNull(error["type"]);
            Assert.True(error.ContainsKey("param") && error.ContainsKey("code"));
            return error;
        }
        var malformed = await Expect(HttpStatusCode.BadRequest, await server.Http.PostAsync("/v1/chat/completions", new StringContent("{\"model\": ", Encoding.UTF8, "application/json")));
        Assert.Contains("not valid JSON", malformed["message"]!.GetValue<string>());

        var badField = await Expect(HttpStatusCode.BadRequest, await server.Http.PostAsJsonAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "x", temperature = "hot" }));
        Assert.Equal("temperature", badField["param"]!.GetValue<string>());

        var unknown = await Expect(HttpStatusCode.NotFound, await server.Http.PostAsJsonAsync("/v1/completions", new { model = "gpt-9", prompt = "x" }));
        Assert.Equal("model_not_found", unknown["code"]!.GetValue<string>());

        var tooLong = await Expect(HttpStatusCode.BadRequest, await server.Http.PostAsJsonAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = Enumerable.Repeat(5, 500).ToArray(), max_tokens = 100 }));
        Assert.Contains("512", tooLong["message"]!.GetValue<string>());
        Assert.Contains("600", tooLong["message"]!.GetValue<string>());

        var noInvocation = await Expect(HttpStatusCode.BadRequest, await server.Http.PostAsJsonAsync("/v1/completions", new { model = "qa", prompt = "Lily had a ball." }));
        Assert.Contains("'qa'", noInvocation["message"]!.GetValue<string>());
        Assert.Contains("\\nQ:", noInvocation["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task AClientThatHangsUpMidStreamCancelsItsRequestAndItsBlocksReturn()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model = "story", prompt = "Once upon a time", max_tokens = 400, ignore_eos = true, stream = true }),
        };
        using (var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            for (int events = 0; events < 3;)
            {
                string line = await reader.ReadLineAsync() ?? throw new InvalidOperationException("the stream ended early");
                if (line.Length == 0) continue;
                Assert.StartsWith("data: ", line);
                events++;
            }
        }
        await server.WaitForIdleAsync();
        Assert.True(await server.MetricAsync("alora_kv_blocks{state=\"cached\"}") >= 0);
    }

    [Fact]
    public async Task ConcurrentStreamsOverSeveralAdaptersEqualTheirSoloOutputsAndCancellationLeavesNoBlockInUse()
    {
        string[] models = [ServerFixture.BaseName, "story", "qa"];
        var random = new Random(4);
        var prompts = Enumerable.Range(0, 32).Select(i => (Model: models[i % 3], Prompt: $"Tim saw a {random.Next(100)} dog and a cat.{(i % 3 == 2 ? "\nQ:" : "")}")).ToArray();
        async Task<string> Run((string Model, string Prompt) p, CancellationToken cancel = default)
        {
            var (status, body) = await server.PostAsync("/v1/completions", new { model = p.Model, prompt = p.Prompt, max_tokens = 12, temperature = 0 });
            Assert.Equal(200, status);
            return body["choices"]![0]!["text"]!.GetValue<string>();
        }
        var solo = new List<string>();
        foreach (var p in prompts.Take(6)) solo.Add(await Run(p));

        async Task<string?> Stream((string Model, string Prompt) p, bool hangUp)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = JsonContent.Create(new { model = p.Model, prompt = p.Prompt, max_tokens = hangUp ? 300 : 12, temperature = 0, ignore_eos = hangUp, stream = true }),
            };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var text = new StringBuilder();
            int chunks = 0;
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                if (line == "data: [DONE]") return text.ToString();
                text.Append(JsonNode.Parse(line[6..])!["choices"]![0]!["text"]!.GetValue<string>());
                if (hangUp && ++chunks == 2) return null;   // disposing the response closes the connection
            }
            return text.ToString();
        }
        var results = await Task.WhenAll(prompts.Select((p, i) => Stream(p, hangUp: i % 3 == 1 && i > 6)));
        for (int i = 0; i < 6; i++) Assert.Equal(solo[i], results[i]);
        for (int i = 6; i < prompts.Length; i++) if (!(i % 3 == 1)) Assert.NotNull(results[i]);
        await server.WaitForIdleAsync();
    }

    [Fact]
    public async Task AdaptersLoadAndUnloadAtRuntime()
    {
        var (status, _) = await server.PostAsync("/v1/load_lora_adapter", new { lora_name = "story2", lora_path = SharedPaths.Path("fixtures", "stories260K", "lora-all") });
        Assert.Equal(200, status);
        var (ok, body) = await server.PostAsync("/v1/completions", new { model = "story2", prompt = "Once upon a time", max_tokens = 4, temperature = 0 });
        Assert.Equal(200, ok);
        var (_, story) = await server.PostAsync("/v1/completions", new { model = "story", prompt = "Once upon a time", max_tokens = 4, temperature = 0 });
        Assert.Equal(story["choices"]![0]!["text"]!.GetValue<string>(), body["choices"]![0]!["text"]!.GetValue<string>());
        var (unloaded, _) = await server.PostAsync("/v1/unload_lora_adapter", new { lora_name = "story2" });
        Assert.Equal(200, unloaded);
        var (gone, _) = await server.PostAsync("/v1/completions", new { model = "story2", prompt = "x" });
        Assert.Equal(404, gone);
        var (bad, error) = await server.PostAsync("/v1/load_lora_adapter", new { lora_name = "broken", lora_path = "/nonexistent" });
        Assert.Equal(400, bad);
        Assert.Equal("lora_path", error["error"]!["param"]!.GetValue<string>());
    }

    [Fact]
    public async Task AGgufAdapterLoadsAtRuntimeAndAnswersAsItsPeftFolder()
    {
        using var temp = new TempFolder();
        string file = temp.File("story.gguf");
        using (var peft = Alora.Adapters.LoraAdapter.Load(SharedPaths.Path("fixtures", "stories260K", "lora-all"), Alora.Models.ModelConfig.FromFile(Path.Combine(SharedPaths.Stories260K, "config.json"))))
            Alora.Adapters.GgufLoraExport.Export(peft, file);
        var (status, _) = await server.PostAsync("/v1/load_lora_adapter", new { lora_name = "story-gguf", lora_path = file });
        Assert.Equal(200, status);
        var (ok, body) = await server.PostAsync("/v1/completions", new { model = "story-gguf", prompt = "Once upon a time", max_tokens = 8, temperature = 0 });
        Assert.Equal(200, ok);
        var (_, story) = await server.PostAsync("/v1/completions", new { model = "story", prompt = "Once upon a time", max_tokens = 8, temperature = 0 });
        Assert.Equal(story["choices"]![0]!["text"]!.GetValue<string>(), body["choices"]![0]!["text"]!.GetValue<string>());
        var (unloaded, _) = await server.PostAsync("/v1/unload_lora_adapter", new { lora_name = "story-gguf" });
        Assert.Equal(200, unloaded);
    }

    [Fact]
    public async Task LlamaCppsLoraFieldPicksAnAdapterAsModelDoes()
    {
        // Adapters are numbered in name order (qa = 0, story = 1), as llama.cpp numbers its --lora list.
        var (_, byModel) = await server.PostAsync("/v1/completions", new { model = "story", prompt = "Once upon a time", max_tokens = 6, temperature = 0 });
        var (status, byLora) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "Once upon a time", max_tokens = 6, temperature = 0, lora = new[] { new { id = 1, scale = 1.0 } } });
        Assert.Equal(200, status);
        Assert.Equal(byModel["choices"]![0]!["text"]!.GetValue<string>(), byLora["choices"]![0]!["text"]!.GetValue<string>());
        var (bad, error) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "x", lora = new[] { new { id = 1, scale = 0.5 } } });
        Assert.Equal(400, bad);
        Assert.Equal("lora[0].scale", error["error"]!["param"]!.GetValue<string>());
    }

    [Fact]
    public async Task LogprobsComeInOpenAisShapesAndGreedyPicksTheTopOne()
    {
        var completion = (await server.Chat("story").CompleteChatAsync(Story, new ChatCompletionOptions
        {
            Temperature = 0, MaxOutputTokenCount = 6, IncludeLogProbabilities = true, TopLogProbabilityCount = 3,
        })).Value;
        Assert.Equal(6, completion.ContentTokenLogProbabilities.Count);
        foreach (var position in completion.ContentTokenLogProbabilities)
        {
            Assert.Equal(3, position.TopLogProbabilities.Count);
            Assert.True(position.LogProbability <= 0);
            Assert.Equal(position.TopLogProbabilities[0].LogProbability, position.LogProbability);   // greedy takes the most likely
            Assert.Equal(position.TopLogProbabilities[0].Token, position.Token);
            Assert.True(position.TopLogProbabilities[0].LogProbability >= position.TopLogProbabilities[1].LogProbability);
        }

        var (status, body) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "Once upon a time", max_tokens = 4, temperature = 0, logprobs = 2 });
        Assert.Equal(200, status);
        var logprobs = body["choices"]![0]!["logprobs"]!;
        Assert.Equal(4, logprobs["tokens"]!.AsArray().Count);
        Assert.Equal(4, logprobs["token_logprobs"]!.AsArray().Count);
        Assert.All(logprobs["top_logprobs"]!.AsArray(), top => Assert.Equal(2, top!.AsObject().Count));

        // The library's own log-softmax of the logits agrees with the server's figure for the first token.
        int[] ids = server.Model.Encode("Once upon a time");
        float first = 0;
        await foreach (var u in server.Model.GenerateAsync(new GenerationRequest { PromptIds = ids, MaxTokens = 1, Logprobs = 0 }))
            if (u.Logprobs is { } l) first = l.Chosen.Logprob;
        Assert.Equal(first, logprobs["token_logprobs"]![0]!.GetValue<float>(), 5);

        var (bad, _) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages = new[] { new { role = "user", content = "x" } }, top_logprobs = 2 });
        Assert.Equal(400, bad);
    }

    /// <summary>The SDK's model client (its legacy completions client is internal in 2.15, so completions are tested over plain HTTP).</summary>
    [Fact]
    public async Task TheSdksModelClientListsTheBaseAndTheAdapters()
    {
        var options = new OpenAI.OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") };
        var models = (await new OpenAI.Models.OpenAIModelClient(new System.ClientModel.ApiKeyCredential("unused"), options).GetModelsAsync()).Value;
        Assert.Equal(new[] { ServerFixture.BaseName, "qa", "story" }.Order(StringComparer.Ordinal), models.Select(m => m.Id).Order(StringComparer.Ordinal));
    }

    /// <summary>An aLoRA through the SDK: vLLM's extra field add_generation_prompt = false goes in the SDK's JSON patch.</summary>
    [Fact]
    public async Task AnAloraThroughTheSdkStreamsAndNotWithTheSameText()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 };
#pragma warning disable SCME0001 // JsonPatch: the SDK's way to send a field it does not model
        options.Patch.Set("$.add_generation_prompt"u8, false);
#pragma warning restore SCME0001
        var client = server.Chat("qa");
        var completion = (await client.CompleteChatAsync(Story, options)).Value;
        Assert.Equal(8, completion.Usage.OutputTokenCount);
        var streamed = new StringBuilder();
        await foreach (var update in client.CompleteChatStreamingAsync(Story, options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(completion.Content[0].Text, streamed.ToString());
        // The same request over plain HTTP gives the same text (and its prompt ends with the invocation).
        var (_, body) = await server.PostAsync("/v1/chat/completions", new
        {
            model = "qa", messages = new[] { new { role = "user", content = "Lily had a red ball. She liked to play with it." } },
            temperature = 0, max_tokens = 8, add_generation_prompt = false, return_token_ids = true,
        });
        Assert.Equal(completion.Content[0].Text, body["choices"]![0]!["message"]!["content"]!.GetValue<string>());
        Assert.Equal([13, 473, 467], body["prompt_token_ids"]!.AsArray().Select(n => n!.GetValue<int>()).TakeLast(3));
    }
}

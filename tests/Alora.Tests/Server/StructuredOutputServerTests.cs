#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental in the SDK
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Formats;
using Alora.Tests.Cli;
using Json.Schema;
using OpenAI.Chat;
using Xunit;

namespace Alora.Tests.Server;

/// <summary>Structured outputs and logprobs through the HTTP API (OpenAI SDK and plain HTTP), on a real server.</summary>
[Collection("Console")]   // runs `alora logits` in-process with stdout captured
public sealed class StructuredOutputServerTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private const string Schema = """
        {"type":"object","properties":{"hero":{"type":"string","maxLength":12},"mood":{"enum":["happy","sad","brave"]},"friends":{"type":"array","items":{"type":"string","maxLength":8},"maxItems":3},"age":{"type":"integer","minimum":1,"maximum":12}},
         "required":["hero","mood","age"],"additionalProperties":false}
        """;

    private static readonly ChatMessage[] Story = [new UserChatMessage("Lily had a red ball. She liked to play with it.")];

    [Theory]
    [InlineData(ServerFixture.BaseName, 0f)]
    [InlineData("story", 0.9f)]
    public async Task JsonSchemaResponseFormatGivesValidJsonThroughTheSdkStreamedOrNot(string model, float temperature)
    {
        var client = server.Chat(model);
        var options = new ChatCompletionOptions
        {
            Temperature = temperature, MaxOutputTokenCount = 400, Seed = 3,
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("character", BinaryData.FromString(Schema), jsonSchemaIsStrict: true),
        };
        var completion = (await client.CompleteChatAsync(Story, options)).Value;
        string text = completion.Content[0].Text;
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
        Assert.True(JsonSchema.FromText(Schema).Evaluate(JsonDocument.Parse(text).RootElement).IsValid, text);

        var streamed = new StringBuilder();
        await foreach (var update in client.CompleteChatStreamingAsync(Story, options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(text, streamed.ToString());
    }

    [Fact]
    public async Task EachPeersFieldIsHonoured()
    {
        var messages = new[] { new { role = "user", content = "Tom went to the park." } };
        var (status, body) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages, max_tokens = 20, temperature = 0, guided_choice = new[] { "yes", "no", "maybe so" } });
        Assert.Equal(200, status);
        Assert.Contains(Text(body), new[] { "yes", "no", "maybe so" });

        (status, body) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages, max_tokens = 30, temperature = 0.8, seed = 1, structured_outputs = new { regex = "[A-Z][a-z]{2,6} (ran|sat)\\." } });
        Assert.Equal(200, status);
        Assert.Matches("^[A-Z][a-z]{2,6} (ran|sat)\\.$", Text(body));

        (status, body) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "Once upon a time", max_tokens = 40, temperature = 0, grammar = "root ::= \"[\" num (\",\" num){1,2} \"]\"\nnum ::= [1-9] [0-9]?" });
        Assert.Equal(200, status);
        Assert.Matches(@"^\[[1-9][0-9]?(,[1-9][0-9]?){1,2}\]$", Text(body));

        (status, body) = await server.PostAsync("/v1/completions", new { model = ServerFixture.BaseName, prompt = "Once upon a time", max_tokens = 300, temperature = 0, json_schema = JsonNode.Parse("""{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"],"additionalProperties":false}""") });
        Assert.Equal(200, status);
        Assert.Matches("""^\s*\{\s*"n"\s*:\s*-?\d+\s*\}$""", Text(body));

        (status, body) = await server.PostAsync("/v1/chat/completions", new { model = "qa", messages, max_tokens = 400, temperature = 0, chat_template_kwargs = new { ask = true }, response_format = new { type = "json_object" } });
        Assert.Equal(200, status);
        Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(Text(body)).RootElement.ValueKind);

        (status, body) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages, max_tokens = 300, temperature = 0, guided_json = """{"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":2}""" });
        Assert.Equal(200, status);
        Assert.Matches(@"^\s*\[\s*(true|false)\s*,\s*(true|false)\s*\]$", Text(body));
    }

    [Fact]
    public async Task UnsupportedKeywordsAndTwoConstraintsAre400sThatNameThem()
    {
        var messages = new[] { new { role = "user", content = "x" } };
        var (status, body) = await server.PostAsync("/v1/chat/completions", new
        {
            model = ServerFixture.BaseName, messages,
            response_format = new { type = "json_schema", json_schema = new { name = "x", schema = JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"string","contentMediaType":"text/html"}}}""") } },
        });
        Assert.Equal(400, status);
        string message = body["error"]!["message"]!.GetValue<string>();
        Assert.Contains("'contentMediaType'", message);
        Assert.Contains("#/properties/a", message);
        Assert.Equal("response_format", body["error"]!["param"]!.GetValue<string>());

        (status, body) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages, guided_regex = "a+", grammar = "root ::= \"a\"" });
        Assert.Equal(400, status);
        Assert.Contains("guided_regex and grammar", body["error"]!["message"]!.GetValue<string>());

        (status, body) = await server.PostAsync("/v1/chat/completions", new { model = ServerFixture.BaseName, messages, guided_regex = "(?=x)x" });
        Assert.Equal(400, status);
        Assert.Contains("lookaround", body["error"]!["message"]!.GetValue<string>());
    }

    /// <summary>Requests with different grammars, adapters and sampling in one batch each get output valid under their own constraint.</summary>
    [Fact]
    public async Task ConcurrentRequestsEachKeepTheirOwnGrammar()
    {
        var messages = new[] { new { role = "user", content = "Lily had a red ball." } };
        var tasks = new List<Task<(int, JsonObject)>>();
        for (int i = 0; i < 6; i++)
        {
            string model = (i % 3) switch { 0 => ServerFixture.BaseName, 1 => "story", _ => "qa" };
            object request = (i % 3) switch
            {
                0 => new { model, messages, max_tokens = 420, temperature = 0.7, seed = i, response_format = new { type = "json_schema", json_schema = new { name = "c", schema = JsonNode.Parse(Schema) } } },
                1 => new { model, messages, max_tokens = 30, temperature = 0.7, seed = i, guided_choice = new[] { "alpha", "beta" } },
                _ => (object)new { model, messages, max_tokens = 30, temperature = 0.7, seed = i, chat_template_kwargs = new { ask = true }, guided_regex = "[0-9]{3}" },
            };
            tasks.Add(server.PostAsync("/v1/chat/completions", request));
        }
        var results = await Task.WhenAll(tasks);
        for (int i = 0; i < results.Length; i++)
        {
            var (status, body) = results[i];
            Assert.True(status == 200, body.ToJsonString());
            string text = Text(body);
            switch (i % 3)
            {
                case 0: Assert.True(JsonSchema.FromText(Schema).Evaluate(JsonDocument.Parse(text).RootElement).IsValid, text); break;
                case 1: Assert.Contains(text, new[] { "alpha", "beta" }); break;
                default: Assert.Matches("^[0-9]{3}$", text); break;
            }
        }
    }

    /// <summary>Logprobs are the log-softmax of what `alora logits` writes at those positions (prompt + generated tokens), for the base and a LoRA.</summary>
    [Theory]
    [InlineData(null)]
    [InlineData("story")]
    public async Task LogprobsEqualTheLogSoftmaxOfAloraLogits(string? adapter)
    {
        int[] prompt = server.Model.Encode("Once upon a time, Lily");
        var (status, body) = await server.PostAsync("/v1/completions", new
        {
            model = adapter ?? ServerFixture.BaseName, prompt, max_tokens = 6, temperature = 0.9, seed = 11, logprobs = 3, return_token_ids = true,
        });
        Assert.Equal(200, status);
        var choice = body["choices"]![0]!;
        int[] generated = [.. choice["token_ids"]!.AsArray().Select(n => n!.GetValue<int>())];
        float[] served = [.. choice["logprobs"]!["token_logprobs"]!.AsArray().Select(n => n!.GetValue<float>())];
        Assert.Equal(6, generated.Length);

        using var folder = new TempFolder();
        string output = folder.File("logits.safetensors");
        int[] all = [.. prompt, .. generated];
        string[] args = ["--model", SharedPaths.Stories260K, "--prompt-ids", string.Join(",", all), "--out", output];
        if (adapter is not null) args = [.. args, "--adapter", $"story={SharedPaths.Path("fixtures", "stories260K", "lora-all")}", "--use", "story"];
        var (exit, text) = CliRunner.Run("GenerateCommands", "Logits", args);
        Assert.True(exit == 0, text);
        using var file = SafeTensorsFile.Open(output);
        float[] logits = file.ReadFloats("logits");
        int vocab = server.Model.Config.VocabSize;
        for (int i = 0; i < generated.Length; i++)
        {
            // The token at prompt.Length + i was drawn from the logits of the position before it.
            var row = logits.AsSpan((prompt.Length + i - 1) * vocab, vocab);
            double max = double.NegativeInfinity, sum = 0;
            foreach (float x in row) max = Math.Max(max, x);
            foreach (float x in row) sum += Math.Exp(x - max);
            double expected = row[generated[i]] - max - Math.Log(sum);
            Assert.True(Math.Abs(expected - served[i]) <= 1e-5, $"position {i}: served {served[i]}, log-softmax of alora logits {expected}");
            var top = choice["logprobs"]!["top_logprobs"]![i]!.AsObject();
            Assert.Equal(3, top.Count);
        }
    }

    private static string Text(JsonObject body)
    {
        var choice = body["choices"]![0]!;
        return (choice["message"]?["content"] ?? choice["text"])!.GetValue<string>();
    }
}

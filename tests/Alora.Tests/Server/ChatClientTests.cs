using Alora.AI;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Alora.Tests.Server;

/// <summary>Microsoft.Extensions.AI: the in-process client, the OpenAI SDK's IChatClient over the server, and DI.</summary>
public sealed class ChatClientTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private static readonly ChatMessage[] Conversation = [new(ChatRole.User, "Tom found a big shiny stone near the river.")];

    private string TemplatePath()
    {
        string path = Path.Combine(Path.GetTempPath(), $"alora-template-{Guid.NewGuid():N}.jinja");
        File.WriteAllText(path, ServerFixture.Template);
        return path;
    }

    [Theory]
    [InlineData(ServerFixture.BaseName)]
    [InlineData("story")]
    public async Task TheInProcessClientAndTheServerGiveTheSameText(string model)
    {
        string template = TemplatePath();
        try
        {
            var local = new AloraChatClient(server.Model, template, ServerFixture.BaseName);
            var options = new ChatOptions { ModelId = model, Temperature = 0, MaxOutputTokens = 12 };
            var inProcess = await local.GetResponseAsync(Conversation, options);

            IChatClient remote = server.Chat(model).AsIChatClient();
            var overHttp = await remote.GetResponseAsync(Conversation, options);
            Assert.Equal(overHttp.Text, inProcess.Text);
            Assert.Equal(12, inProcess.Usage!.OutputTokenCount);
            Assert.Equal(overHttp.Usage!.InputTokenCount, inProcess.Usage.InputTokenCount);
            Assert.Equal(ChatFinishReason.Length, inProcess.FinishReason);

            var streamed = new System.Text.StringBuilder();
            UsageDetails? usage = null;
            await foreach (var update in local.GetStreamingResponseAsync(Conversation, options))
            {
                streamed.Append(update.Text);
                usage ??= update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
            }
            Assert.Equal(inProcess.Text, streamed.ToString());
            // The same conversation again: its prompt blocks come from the prefix cache.
            Assert.True(usage!.CachedInputTokenCount > 0);
        }
        finally { File.Delete(template); }
    }

    [Fact]
    public async Task AnAloraIntrinsicThroughTheClientReusesTheConversation()
    {
        string template = TemplatePath();
        try
        {
            var client = new AloraChatClient(server.Model, template, ServerFixture.BaseName);
            await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 1, AdditionalProperties = new() { ["add_generation_prompt"] = false } });
            var intrinsic = await client.GetResponseAsync(Conversation, new ChatOptions
            {
                ModelId = "qa", Temperature = 0, MaxOutputTokens = 4, AdditionalProperties = new() { ["add_generation_prompt"] = false },
            });
            Assert.True(intrinsic.Usage!.CachedInputTokenCount >= 16);
            await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Conversation, new ChatOptions { ModelId = "nope" }));
        }
        finally { File.Delete(template); }
    }

    /// <summary>ChatOptions.ResponseFormat maps to structured outputs, in process and through the OpenAI SDK's client over the server, with the same text (a schema within what that client passes on: it drops keywords such as maxLength for OpenAI's strict mode).</summary>
    [Fact]
    public async Task ResponseFormatJsonWithASchemaGivesTheSameValidJsonInProcessAndOverHttp()
    {
        string template = TemplatePath();
        try
        {
            const string schema = """{"type":"object","properties":{"mood":{"type":"string","enum":["glad","sad"]},"happy":{"type":"boolean"}},"required":["mood","happy"],"additionalProperties":false}""";
            var options = new ChatOptions
            {
                Temperature = 0, MaxOutputTokens = 300,
                ResponseFormat = ChatResponseFormat.ForJsonSchema(System.Text.Json.JsonDocument.Parse(schema).RootElement, "person"),
            };
            var inProcess = await new AloraChatClient(server.Model, template, ServerFixture.BaseName).GetResponseAsync(Conversation, options);
            var overHttp = await server.Chat(ServerFixture.BaseName).AsIChatClient().GetResponseAsync(Conversation, options);
            Assert.Equal(overHttp.Text, inProcess.Text);
            Assert.Equal(ChatFinishReason.Stop, inProcess.FinishReason);
            Assert.True(Json.Schema.JsonSchema.FromText(schema).Evaluate(System.Text.Json.JsonDocument.Parse(inProcess.Text).RootElement).IsValid, inProcess.Text);

            var anyJson = await new AloraChatClient(server.Model, template, ServerFixture.BaseName).GetResponseAsync(Conversation,
                new ChatOptions { Temperature = 0, MaxOutputTokens = 300, ResponseFormat = ChatResponseFormat.Json });
            if (anyJson.FinishReason == ChatFinishReason.Stop)
                Assert.Equal(System.Text.Json.JsonValueKind.Object, System.Text.Json.JsonDocument.Parse(anyJson.Text).RootElement.ValueKind);
            else Assert.StartsWith("{", anyJson.Text.TrimStart());
        }
        finally { File.Delete(template); }
    }

    [Fact]
    public async Task AddAloraChatClientWorksInAGenericHost()
    {
        string template = TemplatePath();
        try
        {
            var builder = Host.CreateApplicationBuilder();
            builder.Services.AddAloraChatClient(o =>
            {
                o.ModelPath = SharedPaths.Stories260K;
                o.ChatTemplatePath = template;
                o.BaseModelName = "stories";
                o.Adapters["story"] = SharedPaths.Path("fixtures", "stories260K", "lora-all");
                o.Engine = new Alora.Serving.EngineOptions { KvCacheTokens = 1024 };
            });
            using var host = builder.Build();
            var client = host.Services.GetRequiredService<IChatClient>();
            var response = await client.GetResponseAsync(Conversation, new ChatOptions { ModelId = "story", Temperature = 0, MaxOutputTokens = 6 });
            Assert.Equal(6, response.Usage!.OutputTokenCount);
            Assert.Equal("stories", client.GetService<ChatClientMetadata>()!.DefaultModelId);
        }
        finally { File.Delete(template); }
    }
}

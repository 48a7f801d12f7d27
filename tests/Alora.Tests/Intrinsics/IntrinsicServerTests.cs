using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Alora.Intrinsics;
using Alora.Server;
using Alora.Serving;

namespace Alora.Tests.Intrinsics;

/// <summary>The server's intrinsic path: documents from the body marked and given to the chat template, the instruction appended, errors as 400s.</summary>
public sealed class IntrinsicServerTests
{
    // Documents come first (as the chat template's documents variable), then the messages one after the other.
    private const string Template = "{% if documents %}{% for d in documents %}[{{ d['doc_id'] }}] {{ d['text'] }}{{ '\\n' }}{% endfor %}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}";
    private const string IoYaml = """
        model: ~
        response_format: ~
        transformations: ~
        instruction: "\nQ: {question}"
        parameters:
          max_completion_tokens: 2
          temperature: 0.0
        sentence_boundaries:
          documents: "c"
        """;

    [Fact]
    public async Task DocumentsAreMarkedAndRenderedAndTheInstructionAppended()
    {
        using var folder = new TempFolder();
        string template = folder.File("template.jinja");
        await File.WriteAllTextAsync(template, Template);
        using var model = LanguageModel.Load(SharedPaths.Stories260K, engineOptions: new EngineOptions { KvCacheTokens = 1024 });
        model.LoadAdapter("qa", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"));
        var options = new ServerOptions
        {
            ServedModelName = "stories", ChatTemplatePath = template,
            Intrinsics = new Dictionary<string, IntrinsicDefinition> { ["qa"] = IntrinsicDefinition.Parse(IoYaml) },
        };
        await using var server = AloraServer.Create(model, options, "127.0.0.1", 0);
        await server.StartAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        var response = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "qa",
            messages = new[] { new { role = "user", content = "Which pet has fleas?" } },
            documents = new object[] { new { doc_id = "1", text = "My dog has fleas." }, new { doc_id = 2, text = "My cat is clean. It naps." } },
            intrinsic_kwargs = new { question = "Is it the dog?" },
        });
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.True(response.IsSuccessStatusCode, body.ToJsonString());
        // By hand: sentences numbered across the documents, each after its marker; the instruction after the message.
        const string expected = "[1] <c0> My dog has fleas.\n[2] <c1> My cat is clean. <c2> It naps.\nWhich pet has fleas?\nQ: Is it the dog?";
        Assert.Equal(model.Encode(expected, addSpecialTokens: false).Length, (int)body["usage"]!["prompt_tokens"]!);
        Assert.Equal(2, (int)body["usage"]!["completion_tokens"]!);
        // No schema and no transformations: the raw text comes back as a JSON string.
        Assert.StartsWith("\"", (string)body["choices"]![0]!["message"]!["content"]!);

        // Streamed: the processed result in one chunk, then [DONE]; the same text as without streaming (greedy).
        var streamed = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "qa", stream = true,
            messages = new[] { new { role = "user", content = "Which pet has fleas?" } },
            documents = new object[] { new { doc_id = "1", text = "My dog has fleas." }, new { doc_id = 2, text = "My cat is clean. It naps." } },
            intrinsic_kwargs = new { question = "Is it the dog?" },
        });
        var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, events.Length);
        Assert.Equal("data: [DONE]", events[1]);
        Assert.Equal((string)body["choices"]![0]!["message"]!["content"]!, (string)JsonNode.Parse(events[0]["data: ".Length..])!["choices"]![0]!["delta"]!["content"]!);

        var missing = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "qa", messages = new[] { new { role = "user", content = "Hi" } } });
        Assert.Equal(400, (int)missing.StatusCode);
        Assert.Contains("'question'", await missing.Content.ReadAsStringAsync());

        var badDocs = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "qa", messages = new[] { new { role = "user", content = "Hi" } }, documents = new[] { new { id = 1 } } });
        Assert.Equal(400, (int)badDocs.StatusCode);
        Assert.Contains("documents[0].text", await badDocs.Content.ReadAsStringAsync());
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Alora.Server;
using Alora.Serving;
using Alora.Tests.Cli;

namespace Alora.Tests.Server;

/// <summary>Servers started with other options: an API key, a queue that takes nothing; and the CLI's agreement with the API.</summary>
[Collection("Console")]
public sealed class ServerGateTests
{
    private static async Task<(AloraServer Server, LanguageModel Model)> StartAsync(ServerOptions options)
    {
        var model = LanguageModel.Load(SharedPaths.Stories260K, engineOptions: new EngineOptions { KvCacheTokens = 1024 });
        model.LoadAdapter("story", AdapterPath("story"));
        model.LoadAdapter("qa", AdapterPath("qa"));
        var server = AloraServer.Create(model, options, "127.0.0.1", 0);
        await server.StartAsync();
        return (server, model);
    }

    private static string AdapterPath(string name) => SharedPaths.Path("fixtures", "stories260K", name == "qa" ? "alora-q-k-v" : "lora-all");

    private static async Task<JsonObject> ErrorOf(HttpResponseMessage response) => JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!.AsObject();

    [Fact]
    public async Task AMissingOrWrongApiKeyIs401AndTheRightOneWorks()
    {
        var (server, model) = await StartAsync(new ServerOptions { ServedModelName = "base", ApiKey = "sesame" });
        await using var _ = server;
        using var __ = model;
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var body = new { model = "base", prompt = "Once", max_tokens = 2 };

        var missing = await http.PostAsJsonAsync("/v1/completions", body);
        Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
        Assert.Equal("missing_api_key", (await ErrorOf(missing))["code"]!.GetValue<string>());

        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "open");
        var wrong = await http.PostAsJsonAsync("/v1/completions", body);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal("authentication_error", (await ErrorOf(wrong))["type"]!.GetValue<string>());

        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "sesame");
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsJsonAsync("/v1/completions", body)).StatusCode);
        http.DefaultRequestHeaders.Authorization = null;
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);   // only /v1 is protected
    }

    [Fact]
    public async Task AFullQueueIs503()
    {
        var (server, model) = await StartAsync(new ServerOptions { ServedModelName = "base", MaxWaitingRequests = 0 });
        await using var _ = server;
        using var __ = model;
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var response = await http.PostAsJsonAsync("/v1/completions", new { model = "base", prompt = "Once", max_tokens = 2 });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("queue_full", (await ErrorOf(response))["code"]!.GetValue<string>());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("story")]
    [InlineData("qa")]
    public async Task GreedyOutputEqualsAloraGenerate(string? adapter)
    {
        var (server, model) = await StartAsync(new ServerOptions { ServedModelName = "base" });
        await using var _ = server;
        using var __ = model;
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        int[] ids = model.Encode(adapter == "qa" ? "Once upon a time, there was a dog.\nQ: What was there?\nA:" : "Once upon a time, there was a dog");
        var response = await http.PostAsJsonAsync("/v1/completions", new { model = adapter ?? "base", prompt = ids, max_tokens = 20, temperature = 0, return_token_ids = true });
        var served = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["token_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();

        string[] args = ["--model", SharedPaths.Stories260K, "--prompt-ids", string.Join(',', ids), "--temperature", "0", "-n", "20", "--json"];
        if (adapter is not null) args = [.. args, "--adapter", $"{adapter}={AdapterPath(adapter)}"];
        var (code, output) = CliRunner.Run("GenerateCommands", "Generate", args);
        Assert.Equal(0, code);
        var generated = JsonNode.Parse(output)!["output_ids"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        Assert.Equal(generated, served);
    }
}

using System.ClientModel;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Alora.Server;
using Alora.Serving;
using OpenAI;
using OpenAI.Chat;

namespace Alora.Tests.Server;

/// <summary>
/// A real server on a loopback port it picked (Kestrel in-process): stories260K with the fixture aLoRA "qa"
/// (invocation "\nQ:") and LoRA "story", and a small chat template whose generation prompt is "\nQ:" when
/// the variable "ask" is set and "\nA:" otherwise.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string BaseName = "stories";
    // Newlines as expressions: transformers renders with trim_blocks, which drops a newline right after a tag.
    public const string Template =
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ '\\nUser: ' }}{% elif m['role'] == 'assistant' %}{{ '\\nStory: ' }}{% endif %}{{ m['content'] }}{% endfor %}" +
        "{% if add_generation_prompt %}{% if ask is defined and ask %}{{ '\\nQ:' }}{% else %}{{ '\\nStory:' }}{% endif %}{% endif %}";

    private readonly TempFolder _folder = new();
    public LanguageModel Model { get; private set; } = null!;
    public AloraServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public Uri BaseAddress => Server.BaseAddress;

    public async Task InitializeAsync()
    {
        string template = _folder.File("template.jinja");
        await File.WriteAllTextAsync(template, Template);
        Model = LanguageModel.Load(SharedPaths.Stories260K, maxBatchTokens: 64,
            engineOptions: new EngineOptions { KvCacheTokens = 4096, BlockSize = 16, MaxTokensPerStep = 256 });
        Model.LoadAdapter("qa", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"));
        Model.LoadAdapter("story", SharedPaths.Path("fixtures", "stories260K", "lora-all"));
        Server = AloraServer.Create(Model, new ServerOptions { ServedModelName = BaseName, ChatTemplatePath = template, AllowRuntimeLoraUpdating = true }, "127.0.0.1", 0);
        await Server.StartAsync();
        Http = new HttpClient { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.StopAsync();
        await Server.DisposeAsync();
        Model.Dispose();
        _folder.Dispose();
    }

    public ChatClient Chat(string model) => new(model, new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(BaseAddress, "v1") });

    public async Task<(int Status, JsonObject Body)> PostAsync(string path, object body)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        JsonObject? json = null;
        try { json = JsonNode.Parse(text) as JsonObject; } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, json ?? new JsonObject { ["raw"] = text });
    }

    /// <summary>The value of a metric line in GET /metrics, e.g. alora_kv_blocks{state="used"}.</summary>
    public async Task<double> MetricAsync(string series)
    {
        string text = await Http.GetStringAsync("/metrics");
        foreach (var line in text.Split('\n'))
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
                return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        throw new KeyNotFoundException($"no metric {series} in /metrics");
    }

    /// <summary>Waits until no KV block is in use (the engine frees a cancelled request's blocks at its next step).</summary>
    public async Task WaitForIdleAsync()
    {
        for (int i = 0; i < 200; i++)
        {
            if (await MetricAsync("alora_kv_blocks{state=\"used\"}") == 0 && await MetricAsync("alora_engine_requests{state=\"running\"}") == 0) return;
            await Task.Delay(25);
        }
        Assert.Fail("KV blocks were still in use 5 s after the last request");
    }
}

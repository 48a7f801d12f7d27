using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Alora.Inference;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Alora.Server;

/// <summary>
/// `alora serve`: an OpenAI-compatible HTTP server over one <see cref="LanguageModel"/> and its engine, shaped
/// as vLLM's: the request's <c>model</c> names the base model (its served name) or a loaded adapter; every
/// request goes through the engine, so requests of any adapters share steps and the prefix cache.
/// </summary>
public sealed partial class AloraServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly LanguageModel _model;
    private readonly ServerOptions _options;
    private readonly ChatPrompter _prompter;
    private readonly ServerMetrics _metrics;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private AloraServer(WebApplication app, LanguageModel model, ServerOptions options)
    {
        _app = app;
        _model = model;
        _options = options;
        _prompter = new ChatPrompter(model, options.ChatTemplatePath);
        _metrics = new ServerMetrics(model.Engine);
        MapEndpoints();
    }

    /// <summary>The model's usable context: its position limit, or the KV cache if smaller.</summary>
    public int MaxModelLength => Math.Min(_model.Config.MaxPositionEmbeddings, _model.Engine.Options.KvCacheTokens);

    /// <summary>Builds the server on <paramref name="host"/>:<paramref name="port"/> (port 0: any free port, see <see cref="BaseAddress"/>).</summary>
    public static AloraServer Create(LanguageModel model, ServerOptions options, string host = "127.0.0.1", int port = 8000)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            if (host is "localhost") kestrel.ListenLocalhost(port);
            else kestrel.Listen(IPAddress.Parse(host), port);
        });
        builder.Services.Configure<Microsoft.Extensions.Hosting.HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        return new AloraServer(builder.Build(), model, options);
    }

    public Task StartAsync(CancellationToken cancellationToken = default) => _app.StartAsync(cancellationToken);

    /// <summary>Runs until Ctrl-C (or the token): in-flight requests finish within the shutdown timeout, then the rest are cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        await WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Completes when the host is asked to stop (SIGINT/Ctrl-C or SIGTERM, through the host's console lifetime) or the
    /// token is cancelled, after the host has stopped: Kestrel stops accepting, in-flight requests get the shutdown
    /// timeout to finish, then the rest are cancelled (their KV blocks go back to the pool).
    /// </summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default)
        => Microsoft.Extensions.Hosting.HostingAbstractionsHostExtensions.WaitForShutdownAsync(_app, cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    /// <summary>The address the server listens on (after <see cref="StartAsync"/>).</summary>
    public Uri BaseAddress => new(_app.Urls.First());

    public async ValueTask DisposeAsync() => await _app.DisposeAsync().ConfigureAwait(false);

    private void MapEndpoints()
    {
        _app.Use(LogAndAuthenticate);
        _app.MapGet("/", () => Results.Text(ChatPage.Value, "text/html; charset=utf-8"));
        _app.MapGet("/health", () => Results.Ok());
        _app.MapGet("/version", () => Results.Json(new JsonObject { ["version"] = Version }));
        _app.MapGet("/v1/models", (HttpContext _) => Results.Text(Models().ToJsonString(), "application/json"));
        _app.MapPost("/v1/chat/completions", context => Handle(context, ChatCompletionsAsync));
        _app.MapPost("/v1/completions", context => Handle(context, CompletionsAsync));
        _app.MapPost("/tokenize", context => Handle(context, TokenizeAsync));
        _app.MapPost("/detokenize", context => Handle(context, DetokenizeAsync));
        _app.MapGet("/metrics", context => _metrics.WriteAsync(context));
        if (_options.AllowRuntimeLoraUpdating)
        {
            _app.MapPost("/v1/load_lora_adapter", context => Handle(context, LoadAdapterAsync));
            _app.MapPost("/v1/unload_lora_adapter", context => Handle(context, UnloadAdapterAsync));
        }
    }

    private static readonly Lazy<string> ChatPage = new(() =>
    {
        using var stream = typeof(AloraServer).Assembly.GetManifestResourceStream("Alora.Server.index.html")
            ?? throw new InvalidOperationException("the chat page is missing from the assembly");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    public static string Version => typeof(AloraServer).Assembly.GetName().Version?.ToString() ?? "0.0.0";

    private async Task LogAndAuthenticate(HttpContext context, RequestDelegate next)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            if (_options.ApiKey is { } key && context.Request.Path.StartsWithSegments("/v1"))
            {
                string? header = context.Request.Headers.Authorization;
                if (header is null || !header.StartsWith("Bearer ", StringComparison.Ordinal))
                {
                    await new ApiError(401, "this server needs an API key: send the header \"Authorization: Bearer KEY\"", null, "missing_api_key").WriteAsync(context.Response).ConfigureAwait(false);
                    return;
                }
                if (!CryptographicEquals(header["Bearer ".Length..].Trim(), key))
                {
                    await new ApiError(401, "the API key is wrong", null, "invalid_api_key").WriteAsync(context.Response).ConfigureAwait(false);
                    return;
                }
            }
            await next(context).ConfigureAwait(false);
        }
        finally
        {
            if (_options.RequestLog is { } log)
            {
                string detail = context.Items.TryGetValue(LogDetailKey, out var d) ? $" {d}" : "";
                string line = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {context.Request.Method} {context.Request.Path} {context.Response.StatusCode} {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F1} ms{detail}");
                lock (log) log.WriteLine(line);
            }
        }
    }

    private const string LogDetailKey = "alora.log";

    private static bool CryptographicEquals(string a, string b)
        => System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(a), System.Text.Encoding.UTF8.GetBytes(b));

    /// <summary>Runs a JSON endpoint: an <see cref="ApiError"/> becomes its status and OpenAI's error shape.</summary>
    private static async Task Handle(HttpContext context, Func<HttpContext, RequestFields, Task> handler)
    {
        try
        {
            var fields = await RequestFields.ReadAsync(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
            await handler(context, fields).ConfigureAwait(false);
        }
        catch (ApiError e) when (!context.Response.HasStarted)
        {
            await e.WriteAsync(context.Response).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its request was cancelled and its KV blocks freed.
        }
    }

    private JsonObject Models()
    {
        var data = new JsonArray
        {
            new JsonObject
            {
                ["id"] = _options.ServedModelName, ["object"] = "model", ["created"] = _created, ["owned_by"] = "alora",
                ["root"] = _model.Path, ["parent"] = null, ["max_model_len"] = MaxModelLength,
            },
        };
        foreach (var name in _model.Engine.AdapterNames)
        {
            if (!_model.Adapters.TryGetValue(name, out var adapter)) continue;   // being unloaded
            var entry = new JsonObject
            {
                ["id"] = name, ["object"] = "model", ["created"] = _created, ["owned_by"] = "alora",
                ["root"] = adapter.SourcePath ?? name, ["parent"] = _options.ServedModelName, ["max_model_len"] = MaxModelLength,
            };
            // An extension field: an aLoRA's invocation ids (the chat page calls aLoRAs without a generation prompt).
            if (adapter.InvocationTokens is { } invocation)
                entry["invocation_tokens"] = new JsonArray([.. invocation.Select(i => (JsonNode)i)]);
            data.Add(entry);
        }
        return new JsonObject { ["object"] = "list", ["data"] = data };
    }

    // ───────────── runtime adapters ─────────────

    private async Task LoadAdapterAsync(HttpContext context, RequestFields fields)
    {
        string name = fields.RequiredString("lora_name"), path = fields.RequiredString("lora_path");
        if (name == _options.ServedModelName) throw ApiError.BadField("lora_name", $"'{name}' is the base model's served name");
        if (_model.Engine.AdapterNames.Contains(name)) throw new ApiError(400, $"an adapter named '{name}' is already loaded", "lora_name", "adapter_exists");
        try
        {
            var adapter = await Task.Run(() => _model.LoadAdapter(name, path)).ConfigureAwait(false);
            context.Items[LogDetailKey] = $"loaded {adapter}";
        }
        catch (Exception e) when (e is Formats.ModelFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or InvalidDataException)
        {
            throw new ApiError(400, $"adapter '{name}' could not be loaded from {path}: {e.Message}", "lora_path", "invalid_adapter");
        }
        await Results.Text($"Success: LoRA adapter '{name}' added successfully.").ExecuteAsync(context).ConfigureAwait(false);
    }

    private async Task UnloadAdapterAsync(HttpContext context, RequestFields fields)
    {
        string name = fields.RequiredString("lora_name");
        if (!_model.Engine.AdapterNames.Contains(name)) throw new ApiError(404, $"no adapter named '{name}' is loaded", "lora_name", "model_not_found");
        await _model.UnloadAdapterAsync(name).ConfigureAwait(false);
        await Results.Text($"Success: LoRA adapter '{name}' removed successfully.").ExecuteAsync(context).ConfigureAwait(false);
    }

    // ───────────── tokenizer endpoints ─────────────

    private Tokenization.Tokenizer Tokenizer => _model.Tokenizer ?? throw new ApiError(400, $"{_model.Path} has no tokenizer; send token ids", null, "no_tokenizer");

    private async Task TokenizeAsync(HttpContext context, RequestFields fields)
    {
        int[] ids = fields.Has("messages")
            ? RenderChat(fields, null).Ids
            : Tokenizer.Encode(fields.RequiredString("prompt"), fields.OptionalBool("add_special_tokens") ?? true);
        var tokens = new JsonArray();
        foreach (int id in ids) tokens.Add(id);
        await Results.Text(new JsonObject { ["tokens"] = tokens, ["count"] = ids.Length, ["max_model_len"] = MaxModelLength }.ToJsonString(), "application/json")
            .ExecuteAsync(context).ConfigureAwait(false);
    }

    private async Task DetokenizeAsync(HttpContext context, RequestFields fields)
    {
        if (fields.Node("tokens") is not JsonArray array) throw ApiError.BadField("tokens", $"expected an array of token ids, found {RequestFields.Describe(fields.Node("tokens"))}");
        int[] ids = RequestFields.TokenIds("tokens", array, _model.Config.VocabSize);
        await Results.Text(new JsonObject { ["prompt"] = Tokenizer.Decode(ids) }.ToJsonString(JsonDefaults.Options), "application/json")
            .ExecuteAsync(context).ConfigureAwait(false);
    }
}

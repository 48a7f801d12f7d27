namespace Alora.Server;

/// <summary>What `alora serve` was asked for, beyond the model and its adapters.</summary>
public sealed record ServerOptions
{
    /// <summary>The name the base model answers to in the API (vLLM's --served-model-name).</summary>
    public required string ServedModelName { get; init; }
    /// <summary>When set, every /v1 request must carry "Authorization: Bearer KEY".</summary>
    public string? ApiKey { get; init; }
    /// <summary>Enables POST /v1/load_lora_adapter and /v1/unload_lora_adapter (as vLLM gates them).</summary>
    public bool AllowRuntimeLoraUpdating { get; init; }
    /// <summary>A chat template file (.jinja, or JSON with chat_template) used instead of the model's own.</summary>
    public string? ChatTemplatePath { get; init; }
    /// <summary>Requests waiting for a slot beyond this are refused with 503.</summary>
    public int MaxWaitingRequests { get; init; } = 1024;
    /// <summary>Intrinsics by name (io.yaml definitions; each name is also a loaded adapter): a chat request for one is processed by its definition.</summary>
    public IReadOnlyDictionary<string, Alora.Intrinsics.IntrinsicDefinition> Intrinsics { get; init; } = new Dictionary<string, Alora.Intrinsics.IntrinsicDefinition>();
    /// <summary>Where each request's log line goes (null: nowhere).</summary>
    public TextWriter? RequestLog { get; init; }
}

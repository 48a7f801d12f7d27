namespace Alora.Serving;

/// <summary>Limits and switches of a serving <see cref="Engine"/> (vLLM's names in parentheses).</summary>
public sealed record EngineOptions
{
    /// <summary>Requests decoding or prefilling at once (max_num_seqs); others wait.</summary>
    public int MaxRunningRequests { get; init; } = 64;
    /// <summary>Token rows one step computes, decode rows and prompt chunks together (max_num_batched_tokens).</summary>
    public int MaxTokensPerStep { get; init; } = 512;
    /// <summary>Tokens the KV pool holds, all requests and cached blocks together.</summary>
    public int KvCacheTokens { get; init; } = 16384;
    /// <summary>Tokens per KV block: the unit of allocation and of prefix caching (block_size).</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>
    /// Most prompt tokens one request computes in a step (long_prefill_token_threshold; 0: no cap but the step
    /// budget). A cap lets several prompts advance in one step, so a short one (an intrinsic's invocation) is not
    /// queued behind a long one.
    /// </summary>
    public int LongPrefillThreshold { get; init; }
    /// <summary>
    /// Waiting requests whose uncached prompt is at most this many tokens (an aLoRA intrinsic after a cached
    /// conversation: its invocation) are admitted ahead of the queue, and a step that admits one holds its other
    /// prompt work to this many tokens, so the intrinsic's first token is not queued behind long prefills. 0: off.
    /// </summary>
    public int ShortPrefillTokens { get; init; }
    /// <summary>Reuse KV blocks across requests (enable_prefix_caching).</summary>
    public bool PrefixCaching { get; init; } = true;
    /// <summary>Called on the engine thread with every logits row a request samples from; for tests and debugging.</summary>
    public LogitsObserver? LogitsObserver { get; init; }

    internal void Validate()
    {
        if (MaxRunningRequests < 1) throw new ArgumentException($"the engine's running-request limit must be at least 1, got {MaxRunningRequests}");
        if (MaxTokensPerStep < 1) throw new ArgumentException($"the engine's tokens-per-step limit must be at least 1, got {MaxTokensPerStep}");
        if (ShortPrefillTokens < 0) throw new ArgumentException($"the short-prefill size must be >= 0, got {ShortPrefillTokens}");
        if (LongPrefillThreshold < 0) throw new ArgumentException($"the long-prefill threshold must be >= 0, got {LongPrefillThreshold}");
        if (BlockSize < 1) throw new ArgumentException($"the KV block size must be at least 1 token, got {BlockSize}");
        if (KvCacheTokens < BlockSize) throw new ArgumentException($"the KV cache must hold at least one block ({BlockSize} tokens), got {KvCacheTokens} tokens");
    }
}

/// <summary>Sees the logits [V] that request <paramref name="requestId"/>'s next token is sampled from.</summary>
public delegate void LogitsObserver(long requestId, ReadOnlySpan<float> logits);

/// <summary>One request's part in a step: how many tokens it computed, and whether they were prompt tokens.</summary>
public readonly record struct ScheduledWork(long RequestId, int Tokens, bool Prefill);

/// <summary>What one <see cref="Engine.Step"/> did; the engine reuses the object, so copy what you keep.</summary>
public sealed class StepReport
{
    public List<ScheduledWork> Scheduled { get; } = [];
    public List<long> Preempted { get; } = [];
    public List<long> Finished { get; } = [];
    public int TokenCount { get; internal set; }

    internal void Clear()
    {
        Scheduled.Clear();
        Preempted.Clear();
        Finished.Clear();
        TokenCount = 0;
    }
}

/// <summary>Engine-wide counters and gauges, as a server exports them.</summary>
public sealed record EngineMetrics
{
    public long PrefixCacheQueryTokens { get; init; }
    public long PrefixCacheHitTokens { get; init; }
    public int BlocksTotal { get; init; }
    public int BlocksUsed { get; init; }
    /// <summary>Free blocks still findable in the prefix cache.</summary>
    public int BlocksCached { get; init; }
    /// <summary>Free blocks holding nothing findable.</summary>
    public int BlocksFree { get; init; }
    public int RunningRequests { get; init; }
    public int WaitingRequests { get; init; }
    public long Preemptions { get; init; }
    public long Evictions { get; init; }
    public long Steps { get; init; }
    public long PromptTokensComputed { get; init; }
    public long GeneratedTokens { get; init; }
    public long RequestsFinished { get; init; }
    public double PrefixCacheHitRate => PrefixCacheQueryTokens == 0 ? 0 : (double)PrefixCacheHitTokens / PrefixCacheQueryTokens;
}

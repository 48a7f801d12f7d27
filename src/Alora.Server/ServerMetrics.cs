using Alora.Inference;
using Alora.Serving;
using Microsoft.AspNetCore.Http;
using Prometheus;

namespace Alora.Server;

/// <summary>
/// GET /metrics in Prometheus' text format (prometheus-net): the engine's counters and gauges (read at each
/// scrape), requests by status, and time-to-first-token and per-output-token latency histograms.
/// </summary>
internal sealed class ServerMetrics
{
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly Counter _requests;
    private readonly Gauge _inFlight;
    private readonly Histogram _timeToFirstToken, _timePerOutputToken;

    public ServerMetrics(Engine engine)
    {
        var factory = Metrics.WithCustomRegistry(_registry);
        _requests = factory.CreateCounter("alora_requests_total", "Completion requests by final status.", "status");
        _inFlight = factory.CreateGauge("alora_requests_in_flight", "Completion requests being answered.");
        _timeToFirstToken = factory.CreateHistogram("alora_time_to_first_token_seconds", "Submission to first generated token.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 16) });
        _timePerOutputToken = factory.CreateHistogram("alora_time_per_output_token_seconds", "Mean time per generated token after the first, per request.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 14) });
        var queryTokens = factory.CreateCounter("alora_prefix_cache_queries_tokens_total", "Prompt tokens looked up in the prefix cache.");
        var hitTokens = factory.CreateCounter("alora_prefix_cache_hits_tokens_total", "Prompt tokens served by the prefix cache.");
        var preemptions = factory.CreateCounter("alora_preemptions_total", "Running requests preempted for KV space.");
        var evictions = factory.CreateCounter("alora_prefix_cache_evictions_total", "Cached KV blocks reclaimed.");
        var promptTokens = factory.CreateCounter("alora_prompt_tokens_computed_total", "Prompt tokens computed (not served from the cache).");
        var generated = factory.CreateCounter("alora_generation_tokens_total", "Tokens generated.");
        var blocks = factory.CreateGauge("alora_kv_blocks", "KV blocks by state: used, cached (free but findable), free.", "state");
        var requests = factory.CreateGauge("alora_engine_requests", "Engine requests by state.", "state");
        _registry.AddBeforeCollectCallback(() =>
        {
            var m = engine.Metrics();
            queryTokens.IncTo(m.PrefixCacheQueryTokens);
            hitTokens.IncTo(m.PrefixCacheHitTokens);
            preemptions.IncTo(m.Preemptions);
            evictions.IncTo(m.Evictions);
            promptTokens.IncTo(m.PromptTokensComputed);
            generated.IncTo(m.GeneratedTokens);
            blocks.WithLabels("used").Set(m.BlocksUsed);
            blocks.WithLabels("cached").Set(m.BlocksCached);
            blocks.WithLabels("free").Set(m.BlocksFree);
            requests.WithLabels("running").Set(m.RunningRequests);
            requests.WithLabels("waiting").Set(m.WaitingRequests);
        });
    }

    public void RequestStarted() => _inFlight.Inc();

    public void RequestFinished(string status, IEnumerable<GenerationStats?> choices)
    {
        _inFlight.Dec();
        _requests.WithLabels(status).Inc();
        foreach (var stats in choices)
        {
            if (stats is null || stats.GeneratedTokens == 0) continue;
            _timeToFirstToken.Observe(stats.TimeToFirstTokenSeconds);
            if (stats.GeneratedTokens > 1) _timePerOutputToken.Observe(stats.DecodeSeconds / (stats.GeneratedTokens - 1));
        }
    }

    public async Task WriteAsync(HttpContext context)
    {
        context.Response.ContentType = PrometheusConstants.TextContentTypeWithVersionAndEncoding;
        await _registry.CollectAndExportAsTextAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
    }
}

using Alora.Inference;
using Alora.Models;
using Alora.Serving;

namespace Alora.Tests.Serving;

/// <summary>Random adapters on stories260K and helpers that drive an engine step by step.</summary>
internal sealed class EngineTestKit : IDisposable
{
    private readonly RandomAdapterKit _adapters;
    public ModelWeights Weights { get; }

    public EngineTestKit(ModelWeights weights)
    {
        Weights = weights;
        _adapters = new RandomAdapterKit(weights.Config);
    }

    /// <summary>An adapter on a random subset of projections with random ranks and weights large enough to change the output.</summary>
    public ForwardAdapter RandomAdapter(Random random, string name, int[]? invocation) => _adapters.Create(random, name, invocation);

    public static int[] RandomIds(Random random, int n) => [1, .. Enumerable.Range(0, n - 1).Select(_ => random.Next(3, 500))];

    public void Dispose() => _adapters.Dispose();
}

/// <summary>What a request produced: its updates, and the logits of every token it sampled.</summary>
internal sealed class Outcome
{
    public List<int> Tokens { get; } = [];
    public List<float[]> Logits { get; } = [];
    public GenerationUpdate? Final { get; set; }
    public Exception? Error { get; set; }
}

/// <summary>Drives a loop-less engine and collects every request's outcome.</summary>
internal sealed class EngineDriver
{
    private readonly Dictionary<long, Outcome> _outcomes = [];
    private readonly Dictionary<long, RequestStream> _streams = [];

    public EngineDriver(DecoderModel model, EngineOptions options, IReadOnlyCollection<int>? eos = null)
    {
        Engine = new Engine(model, eos ?? [2], null, options with { LogitsObserver = Observe }, startLoop: false);
    }

    public Engine Engine { get; }

    private void Observe(long id, ReadOnlySpan<float> logits) => Outcome(id).Logits.Add(logits.ToArray());

    private Outcome Outcome(long id) => _outcomes.TryGetValue(id, out var o) ? o : _outcomes[id] = new Outcome();

    public long Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        var stream = Engine.Submit(request, cancellationToken);
        _streams[stream.Id] = stream;
        Outcome(stream.Id);
        return stream.Id;
    }

    /// <summary>One step, then drains every stream's updates.</summary>
    public StepReport Step()
    {
        var report = Engine.Step();
        Drain();
        return report;
    }

    public void Drain()
    {
        foreach (var (id, stream) in _streams)
        {
            var outcome = _outcomes[id];
            while (stream.Updates.TryRead(out var update))
            {
                if (update.TokenId >= 0) outcome.Tokens.Add(update.TokenId);
                if (update.Finish is not null) outcome.Final = update;
            }
            if (stream.Updates.Completion.IsCompleted && stream.Updates.Completion.Exception is { } e) outcome.Error ??= e.InnerException ?? e;
            if (stream.Updates.Completion.IsCanceled) outcome.Error ??= new OperationCanceledException();
        }
    }

    public void RunToCompletion(int maxSteps = 10_000)
    {
        for (int i = 0; i < maxSteps && Engine.HasWork; i++) Step();
        Assert.False(Engine.HasWork, "the engine still had work after the step limit");
        Drain();
    }

    public Outcome this[long id] => _outcomes[id];
}

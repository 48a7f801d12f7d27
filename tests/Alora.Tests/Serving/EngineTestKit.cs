using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Serving;
using Alora.Tensors;

namespace Alora.Tests.Serving;

/// <summary>Random adapters on stories260K and helpers that drive an engine step by step.</summary>
internal sealed class EngineTestKit : IDisposable
{
    private readonly List<NativeSlab> _slabs = [];
    public ModelWeights Weights { get; }

    public EngineTestKit(ModelWeights weights) => Weights = weights;

    /// <summary>An adapter on a random subset of projections with random ranks and weights large enough to change the output.</summary>
    public unsafe ForwardAdapter RandomAdapter(Random random, string name, int[]? invocation)
    {
        var config = Weights.Config;
        var adapter = new ForwardAdapter(name, config.LayerCount, invocation);
        foreach (var module in ForwardAdapter.Modules)
        {
            if (random.NextDouble() < 0.3 && module != "v_proj") continue;
            int rank = random.Next(1, 9);
            var (outFeatures, inFeatures) = ParameterLayout.ProjectionShape(config, module);
            for (int layer = 0; layer < config.LayerCount; layer++)
            {
                var slab = new NativeSlab((long)rank * (inFeatures + outFeatures) * 4 + 128, "test adapter");
                _slabs.Add(slab);
                float* a = slab.TakeFloats((long)rank * inFeatures, "A"), b = slab.TakeFloats((long)outFeatures * rank, "B");
                for (long i = 0; i < (long)rank * inFeatures; i++) a[i] = (float)(random.NextDouble() - 0.5) * 0.4f;
                for (long i = 0; i < (long)outFeatures * rank; i++) b[i] = (float)(random.NextDouble() - 0.5) * 0.2f;
                adapter.Set(layer, module, new LowRankDelta(new WeightMatrix(a, DType.F32, rank, inFeatures), new WeightMatrix(b, DType.F32, outFeatures, rank), 1f + (float)random.NextDouble()));
            }
        }
        return adapter;
    }

    public static int[] RandomIds(Random random, int n) => [1, .. Enumerable.Range(0, n - 1).Select(_ => random.Next(3, 500))];

    public void Dispose() { foreach (var s in _slabs) s.Dispose(); }
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

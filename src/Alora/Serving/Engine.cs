using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Alora.Inference;
using Alora.Models;
using Alora.Structured;
using Alora.Tokenization;

namespace Alora.Serving;

/// <summary>
/// The serving engine: one owner of the forward pass, the KV pool and the prefix cache, serving many requests
/// at once by continuous batching. Requests are submitted from any thread (<see cref="Submit"/>) and stream
/// their updates back. Each <see cref="Step"/> schedules (running requests first, then waiting ones, under a
/// token budget, prompts in chunks), reserves every KV block the step needs, runs one forward pass over all
/// scheduled rows (base, LoRA and aLoRA rows together), samples, streams, and only then commits the blocks:
/// a step is all or nothing. With <c>startLoop</c> a dedicated thread runs steps while there is work; without
/// it the caller drives <see cref="Step"/> (tests).
/// </summary>
public sealed partial class Engine : IDisposable
{
    private static long s_nextAdapterId;   // process-wide: an adapter id is never reused, not even by another engine
    private readonly DecoderModel _model;
    private readonly KvPool _pool;
    private readonly KvBlockManager _blocks;
    private readonly IReadOnlyCollection<int> _eosTokenIds;
    private readonly Func<ITokenTextStream>? _textStreamFactory;
    private readonly TokenVocabulary? _vocabulary;
    private readonly ConcurrentQueue<EngineRequest> _incoming = new();
    private readonly ConcurrentQueue<long> _cancellations = new();
    private readonly ConcurrentQueue<AdapterEntry> _unloads = new();
    private readonly Dictionary<string, AdapterEntry> _adapters = new(StringComparer.Ordinal);   // guarded by itself
    private readonly List<EngineRequest> _waiting = [];    // [0] is admitted next
    private readonly List<EngineRequest> _running = [];    // admission order: the newest is preempted first
    private readonly Dictionary<long, EngineRequest> _live = [];
    private readonly List<AdapterEntry> _pendingUnloads = [];
    private readonly StepReport _report = new();
    // Step scratch, reused: the plan, the forward chunks, the logits of the rows that sample.
    private readonly List<(EngineRequest Request, int Tokens)> _plan = [];
    private readonly List<ForwardChunk> _chunks = [];
    private readonly List<int> _hitBlocks = [];
    private readonly List<ulong> _hitHashes = [];
    private float[] _logits = [];   // [R, V]
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread? _loop;
    private volatile bool _stopping;
    private long _nextRequestId;
    private bool _disposed;

    // Counters (written by the engine thread, read anywhere).
    private long _queryTokens, _hitTokens, _preemptions, _steps, _promptTokensComputed, _generatedTokens, _finished;

    /// <param name="vocabulary">The tokenizer's vocabulary as bytes, for requests with an output constraint (structured outputs); without it such requests are refused.</param>
    public Engine(DecoderModel model, IReadOnlyCollection<int> eosTokenIds, Func<ITokenTextStream>? textStreamFactory = null,
        EngineOptions? options = null, bool startLoop = true, TokenVocabulary? vocabulary = null)
    {
        _vocabulary = vocabulary;
        Options = options ?? new EngineOptions();
        Options.Validate();
        _model = model;
        _eosTokenIds = eosTokenIds;
        _textStreamFactory = textStreamFactory;
        _pool = KvPool.ForModel(model.Config, Options.KvCacheTokens, Options.BlockSize);
        _blocks = new KvBlockManager(_pool, Options.PrefixCaching);
        if (startLoop)
        {
            _loop = new Thread(RunLoop) { IsBackground = true, Name = "alora engine" };
            _loop.Start();
        }
    }

    public EngineOptions Options { get; }
    public DecoderModel Model => _model;
    /// <summary>The block manager; read it only from the engine thread (or between <see cref="Step"/> calls).</summary>
    public KvBlockManager Blocks => _blocks;
    /// <summary>What the last <see cref="Step"/> did.</summary>
    public StepReport LastStep => _report;
    /// <summary>True while requests are waiting or running (engine thread, or between steps).</summary>
    public bool HasWork => !_incoming.IsEmpty || !_cancellations.IsEmpty || !_unloads.IsEmpty || _running.Count > 0 || _waiting.Count > 0 || _pendingUnloads.Count > 0;

    // ───────────── adapters ─────────────

    /// <summary>
    /// Makes <paramref name="adapter"/> usable under <paramref name="name"/>. It gets a stable id that no other
    /// adapter ever gets: its id, not the object, is the KV lineage key of the blocks it computes.
    /// </summary>
    public long LoadAdapter(string name, ForwardAdapter adapter)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (adapter.LayerCount != _model.Config.LayerCount)
            throw new ArgumentException($"adapter '{name}' has {adapter.LayerCount} layers, the model {_model.Config.LayerCount} (wrong base model?)", nameof(adapter));
        lock (_adapters)
        {
            if (_adapters.ContainsKey(name)) throw new ArgumentException($"an adapter named '{name}' is already loaded", nameof(name));
            var entry = new AdapterEntry(name, adapter, Interlocked.Increment(ref s_nextAdapterId));
            _adapters[name] = entry;
            return entry.Id;
        }
    }

    /// <summary>Names of the loaded adapters (not those being unloaded).</summary>
    public IReadOnlyList<string> AdapterNames
    {
        get { lock (_adapters) return _adapters.Values.Where(a => !a.Unloading).Select(a => a.Name).Order(StringComparer.Ordinal).ToArray(); }
    }

    /// <summary>The stable id of a loaded adapter.</summary>
    public long AdapterId(string name) { lock (_adapters) return Find(name).Id; }

    /// <summary>
    /// Stops accepting requests for the adapter, waits until its submitted requests have finished, then forgets
    /// it and evicts every cached block it computed.
    /// </summary>
    public Task UnloadAdapterAsync(string name)
    {
        AdapterEntry entry;
        lock (_adapters)
        {
            entry = Find(name);
            if (entry.Unloading) return entry.Unloaded.Task;
            entry.Unloading = true;
        }
        _unloads.Enqueue(entry);
        _wake.Release();
        return entry.Unloaded.Task;
    }

    private AdapterEntry Find(string name)
        => _adapters.TryGetValue(name, out var entry) && !entry.Unloading ? entry
            : throw new KeyNotFoundException($"no adapter named '{name}' is loaded (loaded: {(_adapters.Count == 0 ? "none" : string.Join(", ", _adapters.Values.Where(a => !a.Unloading).Select(a => a.Name)))})");

    // ───────────── requests ─────────────

    /// <summary>
    /// Queues a request and returns its update stream. Invalid requests throw here: an empty prompt, ids outside
    /// the vocabulary, an unknown adapter name, an aLoRA whose invocation is missing (unless the request asks for
    /// the base model then), a prompt longer than the KV pool. Cancelling <paramref name="cancellationToken"/> or
    /// abandoning the stream frees the request's blocks at the next step.
    /// </summary>
    public RequestStream Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (request.PromptIds.Length == 0) throw new ArgumentException("the request's prompt has no tokens", nameof(request));
        if (request.MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(request), $"the request's maximum token count must be >= 0, got {request.MaxTokens}");
        request.Sampling.Validate();
        foreach (int id in request.PromptIds)
            if ((uint)id >= (uint)_model.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(request), $"prompt token id {id} is outside the vocabulary [0, {_model.VocabSize})");
        long capacity = (long)_pool.BlockCount * _pool.BlockSize;
        if (request.PromptIds.Length + 1 > capacity)
            throw new ArgumentException($"the prompt has {request.PromptIds.Length} tokens; the engine's KV cache holds {capacity} (raise the KV cache size)", nameof(request));
        if (request.Logprobs is < 0 or > 20)
            throw new ArgumentOutOfRangeException(nameof(request), $"the request's top log probabilities must be 0 to 20, got {request.Logprobs}");
        if (request.Adapter is not null)
            throw new ArgumentException("the engine takes an adapter by the name it was loaded under (GenerationRequest.AdapterName)", nameof(request));

        AdapterEntry? adapter = null;
        int adapterStart = int.MaxValue;
        if (request.AdapterName is { } name)
        {
            lock (_adapters)
            {
                adapter = Find(name);
                adapterStart = AdapterActivation.Resolve(request.PromptIds, adapter.Adapter, request.OnMissingInvocation);
                if (adapterStart == int.MaxValue) adapter = null;   // missing invocation, base model by request
                else Interlocked.Increment(ref adapter.ActiveRequests);
            }
        }

        var channel = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        // Compile the constraint here, on the caller's thread: a bad schema fails the call, and the engine thread
        // starts with the first token mask ready.
        var constraint = request.Constraint is { } c
            ? TokenConstraint.Compile(c, _vocabulary ?? throw new ArgumentException("the request has an output constraint, and this engine has no tokenizer vocabulary to apply it (pass one when creating the engine)", nameof(request))).Start()
            : null;
        constraint?.Prepare();
        var state = new GenerationState(request, _model.VocabSize, _eosTokenIds, _textStreamFactory?.Invoke(), constraint);
        var entry = new EngineRequest(Interlocked.Increment(ref _nextRequestId), request, adapter, adapterStart, state, channel.Writer);
        if (cancellationToken.CanBeCanceled)
        {
            long id = entry.Id;
            entry.Registration = cancellationToken.Register(() => Cancel(id));
            entry.CancellationToken = cancellationToken;
        }
        _incoming.Enqueue(entry);
        _wake.Release();
        return new RequestStream(this, entry.Id, channel.Reader);
    }

    /// <summary>Submits and streams: the updates of one request.</summary>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (var update in Submit(request, cancellationToken).WithCancellation(cancellationToken).ConfigureAwait(false))
            yield return update;
    }

    /// <summary>Cancels a request; its blocks are freed at the next step. Unknown or finished ids are ignored.</summary>
    public void Cancel(long requestId)
    {
        _cancellations.Enqueue(requestId);
        _wake.Release();
    }

    public EngineMetrics Metrics() => new()
    {
        PrefixCacheQueryTokens = Interlocked.Read(ref _queryTokens),
        PrefixCacheHitTokens = Interlocked.Read(ref _hitTokens),
        BlocksTotal = _blocks.BlockCount,
        BlocksUsed = _blocks.UsedBlockCount,
        BlocksCached = _blocks.CachedFreeBlockCount,
        BlocksFree = _blocks.FreeBlockCount - _blocks.CachedFreeBlockCount,
        RunningRequests = Volatile.Read(ref _runningCount),
        WaitingRequests = Volatile.Read(ref _waitingCount),
        Preemptions = Interlocked.Read(ref _preemptions),
        Evictions = _blocks.Evictions,
        Steps = Interlocked.Read(ref _steps),
        PromptTokensComputed = Interlocked.Read(ref _promptTokensComputed),
        GeneratedTokens = Interlocked.Read(ref _generatedTokens),
        RequestsFinished = Interlocked.Read(ref _finished),
    };

    private int _runningCount, _waitingCount;

    private void RunLoop()
    {
        while (!_stopping)
        {
            if (!HasWork)
            {
                _wake.Wait(100);
                continue;
            }
            try { StepCore(); }
            catch (Exception e) { FailAll(e); }
        }
    }

    /// <summary>One engine step: admit, schedule, forward, sample, stream, commit. Only without a loop thread.</summary>
    public StepReport Step()
    {
        if (_loop is not null) throw new InvalidOperationException("this engine runs its own loop thread; Step() is for engines created without one");
        ObjectDisposedException.ThrowIf(_disposed, this);
        StepCore();
        return _report;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _stopping = true;
        _wake.Release();
        _loop?.Join();
        _disposed = true;
        var disposed = new ObjectDisposedException(nameof(Engine), "the engine was disposed before the request finished");
        while (_incoming.TryDequeue(out var r)) { r.Output.TryComplete(disposed); r.Registration.Dispose(); }
        foreach (var r in _live.Values.ToArray()) Retire(r, disposed);
        while (_unloads.TryDequeue(out var u)) u.Unloaded.TrySetResult();
        foreach (var u in _pendingUnloads) u.Unloaded.TrySetResult();
        _pool.Dispose();
        _wake.Dispose();
    }

    private sealed class AdapterEntry(string name, ForwardAdapter adapter, long id)
    {
        public string Name { get; } = name;
        public ForwardAdapter Adapter { get; } = adapter;
        public long Id { get; } = id;
        public bool Unloading;
        public int ActiveRequests;
        public TaskCompletionSource Unloaded { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A request as the engine tracks it: its tokens, KV blocks, progress and generation state.</summary>
    private sealed class EngineRequest(long id, GenerationRequest request, AdapterEntry? adapter, int adapterStart, GenerationState state, ChannelWriter<GenerationUpdate> output)
    {
        public long Id { get; } = id;
        public GenerationRequest Request { get; } = request;
        public AdapterEntry? Adapter { get; } = adapter;
        public long AdapterId => Adapter?.Id ?? 0;
        /// <summary>First adapted position; int.MaxValue for the base model.</summary>
        public int AdapterStart { get; } = adapterStart;
        public GenerationState State { get; } = state;
        public ChannelWriter<GenerationUpdate> Output { get; } = output;
        public CancellationTokenRegistration Registration;
        public CancellationToken CancellationToken;
        /// <summary>Prompt then generated ids; positions [0, Computed) have keys and values in <see cref="Blocks"/>.</summary>
        public IdBuffer Tokens { get; } = new(request.PromptIds, request.MaxTokens);
        public int Computed;
        /// <summary>The block table: block ids for positions [0, 16), [16, 32), … (the forward pass reads it in place).</summary>
        public IdBuffer Blocks { get; } = new([], 8);
        /// <summary>Chained hashes of the leading full blocks.</summary>
        public List<ulong> BlockHashes { get; } = [];
        public bool Running;
        public long PlannedStep;   // the step number whose plan holds this request
        public int CachedPromptTokens = -1;
        public long Arrival = Stopwatch.GetTimestamp(), FirstScheduled, FirstToken;
    }
}

/// <summary>A growable list of ids (tokens, blocks) that the forward pass can read as memory without a copy.</summary>
internal sealed class IdBuffer
{
    private int[] _ids;

    public IdBuffer(int[] initial, int expectedMore)
    {
        _ids = new int[initial.Length + Math.Clamp(expectedMore, 1, 4096)];
        initial.CopyTo(_ids, 0);
        Count = initial.Length;
    }

    public int Count { get; private set; }
    public int this[int index] => index < Count ? _ids[index] : throw new ArgumentOutOfRangeException(nameof(index));
    public ReadOnlySpan<int> Span => _ids.AsSpan(0, Count);
    public ReadOnlyMemory<int> Memory() => _ids.AsMemory(0, Count);
    public ReadOnlyMemory<int> Memory(int start, int length) => _ids.AsMemory(start, length);

    public void Add(int id)
    {
        if (Count == _ids.Length) Array.Resize(ref _ids, _ids.Length * 2);
        _ids[Count++] = id;
    }

    public void AddRange(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids) Add(id);
    }

    public void Clear() => Count = 0;
}

/// <summary>A submitted request's updates, in order; the last carries the finish reason and the figures.</summary>
public sealed class RequestStream : IAsyncEnumerable<GenerationUpdate>
{
    private readonly Engine _engine;
    private readonly ChannelReader<GenerationUpdate> _reader;

    internal RequestStream(Engine engine, long id, ChannelReader<GenerationUpdate> reader)
    {
        _engine = engine;
        Id = id;
        _reader = reader;
    }

    public long Id { get; }

    /// <summary>The raw channel, for callers that poll (tests driving <see cref="Engine.Step"/>).</summary>
    public ChannelReader<GenerationUpdate> Updates => _reader;

    public async IAsyncEnumerator<GenerationUpdate> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        bool finished = false;
        try
        {
            while (await _reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (_reader.TryRead(out var update))
                {
                    if (update.Finish is not null) finished = true;
                    yield return update;
                }
            }
            finished = true;
        }
        finally
        {
            // A consumer that stops reading early (a closed HTTP stream) cancels the request.
            if (!finished) _engine.Cancel(Id);
        }
    }
}

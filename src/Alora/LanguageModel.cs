using Alora.Adapters;
using Alora.Inference;
using Alora.Models;
using Alora.Serving;
using Alora.Tokenization;

namespace Alora;

/// <summary>
/// A loaded model ready to generate: weights, the forward pass, the end-of-sequence ids from config.json and
/// generation_config.json (a model may list several), and a KV pool.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private LanguageModel(string path, ModelWeights weights, Tokenizer? tokenizer, int maxBatchTokens, int cacheTokens, EngineOptions? engineOptions)
    {
        Path = path;
        Weights = weights;
        Tokenizer = tokenizer;
        Model = new DecoderModel(weights, maxBatchTokens);
        var eos = new SortedSet<int>(weights.Config.EosTokenIds);
        if (Directory.Exists(path)) eos.UnionWith(GenerationConfig.ReadEosTokenIds(path));
        if (eos.Count == 0 && tokenizer?.EosTokenId is int tokenizerEos) eos.Add(tokenizerEos);
        EosTokenIds = eos.ToArray();
        _cacheTokens = cacheTokens;
        _engineOptions = engineOptions ?? new EngineOptions { KvCacheTokens = cacheTokens };
    }

    private readonly int _cacheTokens;
    private readonly EngineOptions _engineOptions;
    private PagedKvCache? _cache;
    private Engine? _engine;
    private readonly Lock _lazy = new();

    public string Path { get; }
    public ModelWeights Weights { get; }
    /// <summary>The model's tokenizer (tokenizer.json, or the GGUF vocabulary); null when the model ships none.</summary>
    public Tokenizer? Tokenizer { get; }
    public DecoderModel Model { get; }
    public ModelConfig Config => Weights.Config;
    public IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>The KV cache of caller-held sequences (<see cref="NewSequence"/>), made on first use.</summary>
    public PagedKvCache Cache
    {
        get { lock (_lazy) return _cache ??= Model.CreateCache(_cacheTokens); }
    }

    /// <summary>
    /// The serving engine (made on first use, with its own KV pool and prefix cache): many requests at once,
    /// KV reuse across requests by itself. Every adapter loaded here is loaded there under the same name.
    /// </summary>
    public Engine Engine
    {
        get
        {
            lock (_lazy)
            {
                if (_engine is not null) return _engine;
                var engine = new Engine(Model, EosTokenIds, Tokenizer is { } t ? () => t.CreateStreamingDecoder(skipSpecialTokens: true) : null, _engineOptions,
                    vocabulary: Tokenizer is { } v ? Structured.TokenVocabulary.For(v) : null);
                foreach (var (name, adapter) in _adapters) engine.LoadAdapter(name, adapter.AsForwardAdapter());
                return _engine = engine;
            }
        }
    }

    /// <summary>Generates through the engine; a request names its adapter by <see cref="GenerationRequest.AdapterName"/>.</summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default)
        => Engine.GenerateAsync(request, cancellationToken);

    /// <summary>
    /// A local path as is; a Hugging Face Hub id ("org/name" or "org/name@revision") downloaded into (or found
    /// in) the standard Hugging Face cache.
    /// </summary>
    public static string ResolveModelPath(string pathOrModelId) => Formats.HubDownloader.ResolveModelPath(pathOrModelId);

    /// <param name="path">A Hugging Face model folder, a .gguf file, or a Hub model id (see <see cref="ResolveModelPath"/>).</param>
    /// <param name="cacheTokens">Tokens the KV pool holds, all sequences together.</param>
    /// <param name="engineOptions">The serving engine's limits; by default its KV pool holds <paramref name="cacheTokens"/>.</param>
    /// <param name="quantize">Quantize the matrices in memory to this type after loading (<see cref="ModelWeights.QuantizeMatrices"/>).</param>
    public static LanguageModel Load(string path, int cacheTokens = 8192, int maxBatchTokens = 256, EngineOptions? engineOptions = null, Tensors.DType? quantize = null)
    {
        path = ResolveModelPath(path);
        var weights = ModelWeights.Load(path);
        try
        {
            if (quantize is Tensors.DType q) weights.QuantizeMatrices(q);
            bool hasTokenizer = Directory.Exists(path)
                ? File.Exists(System.IO.Path.Combine(path, "tokenizer.json")) || File.Exists(System.IO.Path.Combine(path, "tokenizer.json.gz"))
                : true;
            var tokenizer = hasTokenizer ? Tokenizer.Load(path) : null;
            if (tokenizer is not null && tokenizer.VocabSize > weights.Config.VocabSize)
                throw new Formats.ModelFormatException(
                    $"{path}: the tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary is {weights.Config.VocabSize} (mismatched tokenizer?)");
            return new LanguageModel(path, weights, tokenizer, maxBatchTokens, cacheTokens, engineOptions);
        }
        catch { weights.Dispose(); throw; }
    }

    /// <summary>
    /// A model over weights already in memory (random weights for benchmarks, weights built by code); it owns
    /// them from here on. <paramref name="name"/> stands where a path would (the served name, messages).
    /// </summary>
    public static LanguageModel FromWeights(ModelWeights weights, string name, Tokenizer? tokenizer = null, int cacheTokens = 8192, int maxBatchTokens = 256, EngineOptions? engineOptions = null)
        => new(name, weights, tokenizer, maxBatchTokens, cacheTokens, engineOptions);

    private readonly Dictionary<string, LoraAdapter> _adapters = new(StringComparer.Ordinal);

    /// <summary>Adapters loaded under names; any number at once, each usable per request (and mixed in one batch).</summary>
    public IReadOnlyDictionary<string, LoraAdapter> Adapters => _adapters;

    /// <summary>
    /// Loads an adapter (validated against this model) under <paramref name="name"/>: a PEFT adapter folder, or a
    /// llama.cpp GGUF LoRA/aLoRA file (general.type "adapter", adapter.type "lora"; what convert_lora_to_gguf.py and
    /// <c>alora adapter export-gguf</c> write).
    /// </summary>
    public LoraAdapter LoadAdapter(string name, string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        lock (_lazy)
        {
            ThrowIfLoaded(name);
            var adapter = File.Exists(folder) && folder.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
                ? GgufLoraExport.Read(folder, Config, name)
                : ArrowModel.IsArrowFolder(folder) ? ArrowModel.Load(folder, Config, name)
                : LoraAdapter.Load(folder, Config, name, Tokenizer);
            try { Register(name, adapter); }
            catch { adapter.Dispose(); throw; }
            return adapter;
        }
    }

    /// <summary>Adds an adapter built in memory (<see cref="LoraAdapter.Create"/>) under <paramref name="name"/>; the model owns it from here on.</summary>
    public void AddAdapter(string name, LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (adapter.BaseConfig.LayerCount != Config.LayerCount || adapter.BaseConfig.HiddenSize != Config.HiddenSize)
            throw new ArgumentException($"adapter '{name}' was made for another base model ({adapter.BaseConfig.LayerCount} layers of {adapter.BaseConfig.HiddenSize}, this one {Config.LayerCount} of {Config.HiddenSize})", nameof(adapter));
        lock (_lazy)
        {
            ThrowIfLoaded(name);
            Register(name, adapter);
        }
    }

    private void ThrowIfLoaded(string name)
    {
        if (_adapters.ContainsKey(name)) throw new ArgumentException($"an adapter named '{name}' is already loaded", nameof(name));
    }

    /// <summary>Makes an adapter usable here and, when the engine exists, there (under <see cref="_lazy"/>).</summary>
    private void Register(string name, LoraAdapter adapter)
    {
        _engine?.LoadAdapter(name, adapter.AsForwardAdapter());
        _adapters[name] = adapter;
    }

    /// <summary>Unloads an adapter: the engine first finishes its requests and evicts its cached KV, then its memory is freed.</summary>
    public async Task UnloadAdapterAsync(string name)
    {
        LoraAdapter adapter;
        Engine? engine;
        lock (_lazy)
        {
            if (!_adapters.TryGetValue(name, out adapter!)) throw new KeyNotFoundException($"no adapter named '{name}' is loaded");
            engine = _engine;
        }
        if (engine is not null) await engine.UnloadAdapterAsync(name).ConfigureAwait(false);
        lock (_lazy) _adapters.Remove(name);
        adapter.Dispose();
    }

    /// <summary>The forward-pass view of a loaded adapter, for <see cref="GenerationRequest.Adapter"/>.</summary>
    public ForwardAdapter Adapter(string name)
        => _adapters.TryGetValue(name, out var adapter) ? adapter.AsForwardAdapter()
            : throw new KeyNotFoundException($"no adapter named '{name}' is loaded (loaded: {(_adapters.Count == 0 ? "none" : string.Join(", ", _adapters.Keys))})");

    public KvSequence NewSequence() => new(Cache);

    /// <summary>
    /// The logits of every position of <paramref name="ids"/> [T, V], as one forward pass computes them (for
    /// comparisons with other implementations), with the base model or a loaded adapter (an aLoRA from its
    /// activation start, by <paramref name="onMissingInvocation"/> when the invocation is absent).
    /// </summary>
    public float[] ComputeLogits(int[] ids, string? adapterName = null, MissingInvocationPolicy onMissingInvocation = MissingInvocationPolicy.Error)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (ids.Length == 0) throw new ArgumentException("no token ids to compute logits for", nameof(ids));
        var adapter = adapterName is null ? null : Adapter(adapterName);
        int start = AdapterActivation.Resolve(ids, adapter, onMissingInvocation);
        using var cache = Model.CreateCache(ids.Length);
        using var sequence = new KvSequence(cache);
        var logits = new float[(long)ids.Length * Config.VocabSize];
        Model.Forward([new SequenceChunk(sequence, ids, LogitRows.All, start == int.MaxValue ? null : adapter, start)], logits);
        return logits;
    }

    /// <summary>A generator whose updates carry text (special tokens skipped) when the model has a tokenizer.</summary>
    public Generator CreateGenerator(bool skipSpecialTokens = true)
        => new(Model, EosTokenIds, Tokenizer is { } t ? () => t.CreateStreamingDecoder(skipSpecialTokens) : null);

    /// <summary>Token ids of a text prompt, with the special tokens (BOS) its tokenizer adds, as transformers does.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
        => (Tokenizer ?? throw new InvalidOperationException($"{Path} has no tokenizer (no tokenizer.json); pass token ids instead")).Encode(text, addSpecialTokens);

    public void Dispose()
    {
        _engine?.Dispose();
        foreach (var adapter in _adapters.Values) adapter.Dispose();
        _adapters.Clear();
        _cache?.Dispose();
        Model.Dispose();
        Weights.Dispose();
    }
}

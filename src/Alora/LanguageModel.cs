using Alora.Adapters;
using Alora.Inference;
using Alora.Models;
using Alora.Tokenization;

namespace Alora;

/// <summary>
/// A loaded model ready to generate: weights, the forward pass, the end-of-sequence ids from config.json and
/// generation_config.json (a model may list several), and a KV pool.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private LanguageModel(string path, ModelWeights weights, Tokenizer? tokenizer, int maxBatchTokens, int cacheTokens)
    {
        Path = path;
        Weights = weights;
        Tokenizer = tokenizer;
        Model = new DecoderModel(weights, maxBatchTokens);
        var eos = new SortedSet<int>(weights.Config.EosTokenIds);
        if (Directory.Exists(path)) eos.UnionWith(GenerationConfig.ReadEosTokenIds(path));
        if (eos.Count == 0 && tokenizer?.EosTokenId is int tokenizerEos) eos.Add(tokenizerEos);
        EosTokenIds = eos.ToArray();
        Cache = Model.CreateCache(cacheTokens);
    }

    public string Path { get; }
    public ModelWeights Weights { get; }
    /// <summary>The model's tokenizer (tokenizer.json, or the GGUF vocabulary); null when the model ships none.</summary>
    public Tokenizer? Tokenizer { get; }
    public DecoderModel Model { get; }
    public ModelConfig Config => Weights.Config;
    public IReadOnlyList<int> EosTokenIds { get; }
    public PagedKvCache Cache { get; }

    /// <summary>
    /// A local path as is; a Hugging Face Hub id ("org/name" or "org/name@revision") downloaded into (or found
    /// in) the standard Hugging Face cache.
    /// </summary>
    public static string ResolveModelPath(string pathOrModelId)
    {
        if (!Formats.HubDownloader.LooksLikeModelId(pathOrModelId)) return pathOrModelId;
        using var http = new HttpClient { Timeout = TimeSpan.FromHours(2) };
        return Formats.HubDownloader.FromEnvironment(http).ResolveAsync(pathOrModelId).GetAwaiter().GetResult();
    }

    /// <param name="path">A Hugging Face model folder, a .gguf file, or a Hub model id (see <see cref="ResolveModelPath"/>).</param>
    /// <param name="cacheTokens">Tokens the KV pool holds, all sequences together.</param>
    public static LanguageModel Load(string path, int cacheTokens = 8192, int maxBatchTokens = 256)
    {
        path = ResolveModelPath(path);
        var weights = ModelWeights.Load(path);
        try
        {
            bool hasTokenizer = Directory.Exists(path)
                ? File.Exists(System.IO.Path.Combine(path, "tokenizer.json")) || File.Exists(System.IO.Path.Combine(path, "tokenizer.json.gz"))
                : true;
            var tokenizer = hasTokenizer ? Tokenizer.Load(path) : null;
            if (tokenizer is not null && tokenizer.VocabSize > weights.Config.VocabSize)
                throw new Formats.ModelFormatException(
                    $"{path}: the tokenizer has {tokenizer.VocabSize} tokens but the model's vocabulary is {weights.Config.VocabSize} (mismatched tokenizer?)");
            return new LanguageModel(path, weights, tokenizer, maxBatchTokens, cacheTokens);
        }
        catch { weights.Dispose(); throw; }
    }

    private readonly Dictionary<string, LoraAdapter> _adapters = new(StringComparer.Ordinal);

    /// <summary>Adapters loaded under names; any number at once, each usable per request (and mixed in one batch).</summary>
    public IReadOnlyDictionary<string, LoraAdapter> Adapters => _adapters;

    /// <summary>Loads a PEFT adapter folder (validated against this model) under <paramref name="name"/>.</summary>
    public LoraAdapter LoadAdapter(string name, string folder)
    {
        if (_adapters.ContainsKey(name)) throw new ArgumentException($"an adapter named '{name}' is already loaded", nameof(name));
        var adapter = LoraAdapter.Load(folder, Config, name, Tokenizer);
        _adapters[name] = adapter;
        return adapter;
    }

    /// <summary>The forward-pass view of a loaded adapter, for <see cref="GenerationRequest.Adapter"/>.</summary>
    public ForwardAdapter Adapter(string name)
        => _adapters.TryGetValue(name, out var adapter) ? adapter.AsForwardAdapter()
            : throw new KeyNotFoundException($"no adapter named '{name}' is loaded (loaded: {(_adapters.Count == 0 ? "none" : string.Join(", ", _adapters.Keys))})");

    public KvSequence NewSequence() => new(Cache);

    /// <summary>A generator whose updates carry text (special tokens skipped) when the model has a tokenizer.</summary>
    public Generator CreateGenerator(bool skipSpecialTokens = true)
        => new(Model, EosTokenIds, Tokenizer is { } t ? () => t.CreateStreamingDecoder(skipSpecialTokens) : null);

    /// <summary>Token ids of a text prompt, with the special tokens (BOS) its tokenizer adds, as transformers does.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
        => (Tokenizer ?? throw new InvalidOperationException($"{Path} has no tokenizer (no tokenizer.json); pass token ids instead")).Encode(text, addSpecialTokens);

    public void Dispose()
    {
        foreach (var adapter in _adapters.Values) adapter.Dispose();
        _adapters.Clear();
        Cache.Dispose();
        Model.Dispose();
        Weights.Dispose();
    }
}

using Alora.Inference;
using Alora.Models;

namespace Alora;

/// <summary>
/// A loaded model ready to generate: weights, the forward pass, the end-of-sequence ids from config.json and
/// generation_config.json (a model may list several), and a KV pool.
/// </summary>
public sealed class LanguageModel : IDisposable
{
    private LanguageModel(string path, ModelWeights weights, int maxBatchTokens, int cacheTokens)
    {
        Path = path;
        Weights = weights;
        Model = new DecoderModel(weights, maxBatchTokens);
        var eos = new SortedSet<int>(weights.Config.EosTokenIds);
        if (Directory.Exists(path)) eos.UnionWith(GenerationConfig.ReadEosTokenIds(path));
        EosTokenIds = eos.ToArray();
        Cache = Model.CreateCache(cacheTokens);
    }

    public string Path { get; }
    public ModelWeights Weights { get; }
    public DecoderModel Model { get; }
    public ModelConfig Config => Weights.Config;
    public IReadOnlyList<int> EosTokenIds { get; }
    public PagedKvCache Cache { get; }

    /// <param name="path">A Hugging Face model folder or a .gguf file.</param>
    /// <param name="cacheTokens">Tokens the KV pool holds, all sequences together.</param>
    public static LanguageModel Load(string path, int cacheTokens = 8192, int maxBatchTokens = 256)
    {
        var weights = ModelWeights.Load(path);
        try { return new LanguageModel(path, weights, maxBatchTokens, cacheTokens); }
        catch { weights.Dispose(); throw; }
    }

    public KvSequence NewSequence() => new(Cache);

    public Generator CreateGenerator(Func<ITokenTextStream>? textStreamFactory = null) => new(Model, EosTokenIds, textStreamFactory);

    public void Dispose()
    {
        Cache.Dispose();
        Model.Dispose();
        Weights.Dispose();
    }
}

using LLama;
using LLama.Common;
using LLama.Extensions;
using LLama.Native;

namespace Alora.LlamaCppTests;

/// <summary>
/// One llama.cpp context (LLamaSharp 0.30.0, CPU) over a GGUF model, one sequence, every position's logits kept.
/// <see cref="Logits"/> decodes a token list in segments, each with its own set of LoRA adapters, the way llama.cpp's
/// server runs an aLoRA: the prompt before the invocation without the adapter, the rest with it.
/// </summary>
internal sealed class LlamaCppRunner : IDisposable
{
    private static int s_logSet;
    private readonly ModelParams _parameters;
    private readonly LLamaWeights _weights;
    private readonly LLamaContextParams _contextParameters;
    private readonly List<LoraAdapter> _adapters = [];

    /// <param name="f32Kv">f32 K/V cache and flash attention off: f32 arithmetic throughout. Otherwise llama.cpp's defaults
    /// (f16 K/V cache, flash attention auto), which round every cached key and value to f16.</param>
    public LlamaCppRunner(string ggufPath, int contextSize, bool f32Kv)
    {
        if (Interlocked.Exchange(ref s_logSet, 1) == 0)
            NativeLogConfig.llama_log_set((level, message) => { if (level >= LLamaLogLevel.Error || Environment.GetEnvironmentVariable("ALORA_LLAMACPP_LOG") is not null) Console.Error.Write(message); });
        _parameters = new ModelParams(ggufPath)
        {
            GpuLayerCount = 0,
            Threads = 2,
            BatchThreads = 2,
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            UBatchSize = (uint)contextSize,
            SeqMax = 1,
        };
        _weights = LLamaWeights.LoadFromFile(_parameters);
        // ModelParams.TypeK/TypeV do not reach llama.cpp in LLamaSharp 0.30.0 (its log still says K (f16)): set the
        // native context parameters directly.
        _parameters.ToLlamaContextParams(out _contextParameters);
        if (f32Kv)
        {
            _contextParameters.type_k = GGMLType.GGML_TYPE_F32;
            _contextParameters.type_v = GGMLType.GGML_TYPE_F32;
        }
        // Flash attention on the CPU rounds to f16 on its own (measured: 6e-3 on these logits even with an f32 cache);
        // the f32 mode turns it off so that both sides compute in f32 throughout.
        if (f32Kv) _contextParameters.llama_flash_attn_type = LLamaFlashAttentionType.LLAMA_FLASH_ATTENTION_TYPE_DISABLED;
    }

    public int VocabSize => _weights.Vocab.Count;

    public LoraAdapter LoadAdapter(string ggufPath)
    {
        var adapter = _weights.NativeHandle.LoadLoraFromFile(ggufPath);
        _adapters.Add(adapter);
        return adapter;
    }

    /// <summary>
    /// Logits [T, V] at every position of <paramref name="ids"/>; positions from <paramref name="adapterFrom"/> on are
    /// decoded with <paramref name="adapter"/> applied (scale 1), the ones before without it, in a fresh context.
    /// </summary>
    public float[] Logits(int[] ids, LoraAdapter? adapter = null, int adapterFrom = 0)
    {
        using var handle = _weights.NativeHandle.CreateContext(_contextParameters);
        int vocab = VocabSize;
        var result = new float[(long)ids.Length * vocab];
        void Decode(int from, int to, bool withAdapter)
        {
            if (from >= to) return;
            if (withAdapter && adapter is not null) handle.SetLoraAdapters([(adapter, 1f)]);
            else handle.SetLoraAdapters([]);
            var batch = new LLamaBatch();
            for (int i = from; i < to; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, true);
            var status = handle.Decode(batch);
            if (status != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {status}");
            for (int i = from; i < to; i++) handle.GetLogitsIth(i - from).CopyTo(result.AsSpan((int)((long)i * vocab), vocab));
        }
        int split = adapter is null ? ids.Length : Math.Clamp(adapterFrom, 0, ids.Length);
        Decode(0, split, withAdapter: false);
        Decode(split, ids.Length, withAdapter: true);
        return result;
    }

    public void Dispose()
    {
        _weights.Dispose();
    }
}

using Alora.Formats;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Tests.Formats;

// Legend: D = hidden, V = vocab, Hq/Hkv = query/key-value heads, Dh = head size.

/// <summary>
/// Test-only: writes a loaded model of any family Alora reads as the GGUF file llama.cpp's convert_hf_to_gguf.py
/// would write for it, so that Alora's GGUF loader and llama.cpp can both be checked on it:
/// <list type="bullet">
/// <item>architecture "llama" (Llama, and Mistral: llama.cpp converts MistralForCausalLM as llama), "qwen2" or
/// "granite"; the {arch}.* hyperparameter keys; granite's {arch}.embedding_scale, residual_scale, attention.scale,
/// logit_scale;</item>
/// <item>llama.cpp's tensor names (blk.N.attn_q.weight, blk.N.attn_q.bias, ...), q/k rows permuted to Meta's
/// interleaved-RoPE order for llama and granite (not for qwen2), norms and biases F32, no output.weight when the
/// embedding is tied;</item>
/// <item>a byte-level vocabulary of V single-byte tokens with no merges (llama.cpp refuses a file without
/// tokenizer.ggml.*; the tests feed token ids, never text).</item>
/// </list>
/// llama.cpp's converter writes no sliding window for Mistral; <paramref name="slidingWindowKey"/> adds
/// llama.attention.sliding_window (what Alora reads to run a Mistral-style file with its window).
/// </summary>
internal static unsafe class GgufModelWriter
{
    public static string ArchitectureOf(ModelConfig c) => c.Architecture switch
    {
        ModelArchitecture.Llama or ModelArchitecture.Mistral => "llama",
        ModelArchitecture.Qwen2 => "qwen2",
        ModelArchitecture.Granite => "granite",
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };

    public static void Write(string path, ModelWeights weights, bool slidingWindowKey = true)
    {
        var c = weights.Config;
        string arch = ArchitectureOf(c);
        var metadata = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", arch),
            new("general.name", "random-weight " + c.Architecture),
            new("general.file_type", 0u),
            new($"{arch}.context_length", (uint)c.MaxPositionEmbeddings),
            new($"{arch}.embedding_length", (uint)c.HiddenSize),
            new($"{arch}.block_count", (uint)c.LayerCount),
            new($"{arch}.feed_forward_length", (uint)c.IntermediateSize),
            new($"{arch}.attention.head_count", (uint)c.HeadCount),
            new($"{arch}.attention.head_count_kv", (uint)c.KeyValueHeadCount),
            new($"{arch}.attention.key_length", (uint)c.HeadDim),
            new($"{arch}.attention.value_length", (uint)c.HeadDim),
            new($"{arch}.rope.dimension_count", (uint)c.HeadDim),
            new($"{arch}.rope.freq_base", (float)c.RopeTheta),
            new($"{arch}.attention.layer_norm_rms_epsilon", c.RmsNormEps),
            new($"{arch}.vocab_size", (uint)c.VocabSize),
        };
        if (c.SlidingWindow is int window && slidingWindowKey) metadata.Add(new($"{arch}.attention.sliding_window", (uint)window));
        if (c.Architecture == ModelArchitecture.Granite)
        {
            metadata.Add(new($"{arch}.embedding_scale", c.EmbeddingMultiplier));
            metadata.Add(new($"{arch}.residual_scale", c.ResidualMultiplier));
            if (c.AttentionMultiplier is float attention) metadata.Add(new($"{arch}.attention.scale", attention));
            metadata.Add(new($"{arch}.logit_scale", c.LogitsScaling));
        }
        metadata.AddRange(ByteVocabulary(c.VocabSize));

        bool permute = ModelWeights.GgufPermutesQueryKey(arch);
        var tensors = new List<GgufTensorToWrite>();
        foreach (var spec in ParameterLayout.For(c))
        {
            var tensor = weights.Parameters[spec.Name];
            byte[] bytes = new byte[tensor.ElementCount * tensor.DType.ByteSize()];
            new ReadOnlySpan<byte>(tensor.Data, bytes.Length).CopyTo(bytes);
            if (permute && spec.Name.EndsWith("q_proj.weight", StringComparison.Ordinal)) bytes = PermuteRope(bytes, c.HeadCount, spec.Shape);
            else if (permute && spec.Name.EndsWith("k_proj.weight", StringComparison.Ordinal)) bytes = PermuteRope(bytes, c.KeyValueHeadCount, spec.Shape);
            tensors.Add(new GgufTensorToWrite(ModelWeights.GgufName(spec.Name), spec.Shape, GgmlTypeOf(tensor.DType), bytes));
        }
        GgufWriter.Write(path, metadata, tensors);
    }

    /// <summary>Hugging Face rotate-half q/k rows to GGUF's interleaved order: GGUF row h·Dh + 2i + j is HF row h·Dh + j·Dh/2 + i.</summary>
    private static byte[] PermuteRope(byte[] hf, int heads, long[] shape)
    {
        int rows = (int)shape[0], rowBytes = hf.Length / rows, headDim = rows / heads, half = headDim / 2;
        var gguf = new byte[hf.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                    Array.Copy(hf, (long)(h * headDim + j * half + i) * rowBytes, gguf, (long)(h * headDim + 2 * i + j) * rowBytes, rowBytes);
        return gguf;
    }

    private static GgmlType GgmlTypeOf(DType dtype) => dtype switch
    {
        DType.F32 => GgmlType.F32,
        DType.F16 => GgmlType.F16,
        DType.BF16 => GgmlType.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no GGML type"),
    };

    /// <summary>A GPT-2 byte-level vocabulary of the first <paramref name="vocabSize"/> bytes (GPT-2's byte-to-character map), no merges.</summary>
    private static IEnumerable<KeyValuePair<string, object>> ByteVocabulary(int vocabSize)
    {
        if (vocabSize > 256) throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "at most 256 single-byte tokens");
        var tokens = new string[vocabSize];
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            char ch = printable ? (char)b : (char)(256 + shifted++);
            if (b < vocabSize) tokens[b] = ch.ToString();
        }
        return
        [
            new("tokenizer.ggml.model", "gpt2"),
            new("tokenizer.ggml.pre", "default"),
            new("tokenizer.ggml.tokens", tokens),
            new("tokenizer.ggml.token_type", Enumerable.Repeat(1, vocabSize).ToArray()),
            new("tokenizer.ggml.merges", Array.Empty<string>()),
            new("tokenizer.ggml.bos_token_id", 1u),
            new("tokenizer.ggml.eos_token_id", 2u),
            new("tokenizer.ggml.add_bos_token", false),
        ];
    }
}

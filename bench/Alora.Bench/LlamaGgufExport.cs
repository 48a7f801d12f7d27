using System.Text.Json;
using Alora.Formats;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

// Legend: D = hidden, V = vocab, Hq/Hkv = query/key-value heads, Dh = head size.

/// <summary>
/// Writes a Llama-family <see cref="ModelWeights"/> (bias-free, as SmolLM2) as a llama-architecture GGUF that both
/// llama.cpp and Alora's GGUF loader read: llama.cpp's tensor names, q/k rows permuted to the Meta (interleaved
/// RoPE pair) order that convert_hf_to_gguf.py writes and <c>ModelWeights.LoadGguf</c> undoes, norms as F32,
/// matrices in the weights' dtype, no output.weight when the embedding is tied, and a GPT-2-style tokenizer
/// vocabulary taken from a tokenizer.json (llama.cpp refuses a file without tokenizer.ggml.*). Bench-only: the
/// library has no model exporter.
/// </summary>
internal static unsafe class LlamaGgufExport
{
    public static void Write(string path, ModelWeights weights, string tokenizerJsonPath)
    {
        var c = weights.Config;
        if (c.QkvBias || c.OutputBias || c.MlpBias || c.Architecture != ModelArchitecture.Llama)
            throw new NotSupportedException($"{weights.Source}: only bias-free llama-architecture models are exported (found {c.Architecture}, biases q/k/v {c.QkvBias}, o {c.OutputBias}, mlp {c.MlpBias})");
        var metadata = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", "llama"),
            new("general.name", "random-weight " + Path.GetFileNameWithoutExtension(path)),
            new("general.file_type", FileType(weights.Parameters[ParameterLayout.EmbedTokens].DType)),
            new("llama.context_length", (uint)c.MaxPositionEmbeddings),
            new("llama.embedding_length", (uint)c.HiddenSize),
            new("llama.block_count", (uint)c.LayerCount),
            new("llama.feed_forward_length", (uint)c.IntermediateSize),
            new("llama.attention.head_count", (uint)c.HeadCount),
            new("llama.attention.head_count_kv", (uint)c.KeyValueHeadCount),
            new("llama.attention.key_length", (uint)c.HeadDim),
            new("llama.attention.value_length", (uint)c.HeadDim),
            new("llama.rope.dimension_count", (uint)c.HeadDim),
            new("llama.rope.freq_base", (float)c.RopeTheta),
            new("llama.attention.layer_norm_rms_epsilon", c.RmsNormEps),
            new("llama.vocab_size", (uint)c.VocabSize),
        };
        metadata.AddRange(TokenizerMetadata(tokenizerJsonPath, c.VocabSize));

        var tensors = new List<GgufTensorToWrite>();
        foreach (var spec in ParameterLayout.For(c))
        {
            if (spec.Name == ParameterLayout.LmHead && c.TieWordEmbeddings) continue;
            var tensor = weights.Parameters[spec.Name];
            byte[] bytes = new byte[tensor.ElementCount * tensor.DType.ByteSize()];
            new ReadOnlySpan<byte>(tensor.Data, bytes.Length).CopyTo(bytes);
            if (spec.Name.EndsWith("q_proj.weight", StringComparison.Ordinal)) bytes = PermuteRope(bytes, c.HeadCount, spec.Shape);
            else if (spec.Name.EndsWith("k_proj.weight", StringComparison.Ordinal)) bytes = PermuteRope(bytes, c.KeyValueHeadCount, spec.Shape);
            tensors.Add(new GgufTensorToWrite(GgufName(spec.Name), spec.Shape, GgmlTypeOf(tensor.DType), bytes));
        }
        GgufWriter.Write(path, metadata, tensors);
    }

    /// <summary>
    /// Hugging Face's rotate-half q/k rows [H·Dh, D] to GGUF's interleaved order: row h·Dh + 2i + j of the GGUF
    /// tensor is row h·Dh + j·Dh/2 + i of the Hugging Face one (the inverse of ModelWeights.UnpermuteRope).
    /// </summary>
    private static byte[] PermuteRope(byte[] hf, int heads, long[] shape)
    {
        int rows = (int)shape[0], rowBytes = hf.Length / rows, headDim = rows / heads, half = headDim / 2;
        var gguf = new byte[hf.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                {
                    int to = h * headDim + 2 * i + j, from = h * headDim + j * half + i;
                    Array.Copy(hf, (long)from * rowBytes, gguf, (long)to * rowBytes, rowBytes);
                }
        return gguf;
    }

    private static string GgufName(string hfName) => ModelWeights.GgufName(hfName);   // the loader's own mapping: the two cannot drift

    private static GgmlType GgmlTypeOf(DType dtype) => dtype switch
    {
        DType.F32 => GgmlType.F32,
        DType.F16 => GgmlType.F16,
        DType.BF16 => GgmlType.BF16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no GGML type"),
    };

    /// <summary>llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32.</summary>
    private static uint FileType(DType dtype) => dtype switch { DType.F32 => 0u, DType.F16 => 1u, _ => 32u };

    /// <summary>
    /// tokenizer.ggml.* of a GPT-2-style byte-level BPE tokenizer.json whose base vocabulary has exactly
    /// <paramref name="vocabSize"/> ids: the pieces, their types (added special tokens are CONTROL), the merges and
    /// the pre-tokenizer. Added tokens beyond the model's vocabulary (granite3's 49152..49155) are left out.
    /// </summary>
    private static IEnumerable<KeyValuePair<string, object>> TokenizerMetadata(string tokenizerJsonPath, int vocabSize)
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(tokenizerJsonPath));
        var model = json.RootElement.GetProperty("model");
        if (model.GetProperty("type").GetString() != "BPE")
            throw new InvalidDataException($"{tokenizerJsonPath}: model.type should be BPE for a 'gpt2' GGUF vocabulary");
        var tokens = new string?[vocabSize];
        foreach (var entry in model.GetProperty("vocab").EnumerateObject())
        {
            int id = entry.Value.GetInt32();
            if (id < vocabSize) tokens[id] = entry.Name;
        }
        var types = Enumerable.Repeat(1, vocabSize).ToArray();   // NORMAL
        foreach (var added in json.RootElement.GetProperty("added_tokens").EnumerateArray())
        {
            int id = added.GetProperty("id").GetInt32();
            if (id >= vocabSize) continue;
            tokens[id] = added.GetProperty("content").GetString();
            if (added.GetProperty("special").GetBoolean()) types[id] = 3;   // CONTROL
        }
        int missing = Array.IndexOf(tokens, null);
        if (missing >= 0) throw new InvalidDataException($"{tokenizerJsonPath}: no token with id {missing}; the model's vocabulary has {vocabSize} ids");
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? m[0].GetString() + " " + m[1].GetString() : m.GetString()!)
            .ToArray();
        return
        [
            new("tokenizer.ggml.model", "gpt2"),
            // StarCoder-family regex (digits split one by one); both llama.cpp and Alora know it by this name.
            new("tokenizer.ggml.pre", "refact"),
            new("tokenizer.ggml.tokens", tokens!),
            new("tokenizer.ggml.token_type", types),
            new("tokenizer.ggml.merges", merges),
            new("tokenizer.ggml.bos_token_id", 0u),
            new("tokenizer.ggml.eos_token_id", 0u),
            new("tokenizer.ggml.add_bos_token", false),
        ];
    }
}

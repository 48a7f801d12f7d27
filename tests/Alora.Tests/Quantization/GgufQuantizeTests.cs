using Alora.Formats;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Tests.Quantization;

/// <summary>
/// `alora quantize` (<see cref="GgufQuantize"/>): every quantized tensor holds the bytes llama.cpp's quantizer writes
/// for the same values, the types follow llama.cpp's choices (mixes, fallbacks for rows that are not whole blocks),
/// the metadata is kept, and the file loads and runs.
/// </summary>
public sealed unsafe class GgufQuantizeTests
{
    [Theory]
    [InlineData("Q4_K_M")]
    [InlineData("Q5_K_S")]
    [InlineData("Q8_0")]
    [InlineData("Q4_0")]
    public void QuantizedWideModel_HoldsLlamaCppsBytes_AndRuns(string scheme)
    {
        using var temp = new TempFolder();
        string f32 = temp.File("f32.gguf"), output = temp.File("q.gguf");
        QuantizedGguf.WriteRandomLlama(f32, hidden: 256, ffn: 512, layers: 2, seed: 9);
        var report = GgufQuantize.Write(f32, output, scheme);

        using var source = GgufFile.Open(f32);
        using var written = GgufFile.Open(output);
        Assert.Equal(source.GetStringArray("tokenizer.ggml.tokens"), written.GetStringArray("tokenizer.ggml.tokens"));
        foreach (var info in written.TensorOrder)
        {
            var type = GgufFile.ToDType(info.Type)!.Value;
            if (info.Dimensions.Length == 1) { Assert.Equal(DType.F32, type); continue; }
            Assert.True(type.IsQuantized(), $"{scheme}: {info.Name} is {type}");
            byte[] theirs = GgmlReference.Quantize(type, source.ReadFloats(info.Name), (int)info.Dimensions[0]);
            var ours = new ReadOnlySpan<byte>(written.DataPointer(info), theirs.Length);
            Assert.True(ours.SequenceEqual(theirs), $"{scheme}: {info.Name} ({type}) differs from llama.cpp's quantization");
        }
        if (scheme == "Q4_K_M")
        {
            Assert.Equal(GgmlType.Q6_K, report.Types["output.weight"]);
            Assert.Equal(GgmlType.Q6_K, report.Types["blk.1.attn_v.weight"]);   // use_more_bits: the last layer
            Assert.Equal(GgmlType.Q4_K, report.Types["blk.0.attn_v.weight"]);
            Assert.Equal(GgmlType.Q4_K, report.Types["blk.0.ffn_up.weight"]);
            Assert.Equal(15u, (uint)written.GetInteger("general.file_type")!.Value);
        }

        using var weights = ModelWeights.Load(output);
        using var model = new DecoderModel(weights, maxBatchTokens: 16);
        float[] logits = Models.Reference.RunAllLogits(model, [1, 300, 301, 302]);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void RowsThatAreNotWholeBlocks_FallBackAsLlamaCppDoes()
    {
        using var temp = new TempFolder();
        // stories260K: rows of 64 (not whole 256-blocks: Q4_K → Q5_0, Q6_K → Q8_0) and ffn_down's rows of 172 (F16).
        var report = GgufQuantize.Write(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"), temp.File("q.gguf"), "Q4_K_M");
        Assert.Equal(GgmlType.Q8_0, report.Types["output.weight"]);
        Assert.Equal(GgmlType.Q5_0, report.Types["blk.0.attn_q.weight"]);
        Assert.Equal(GgmlType.F16, report.Types["blk.0.ffn_down.weight"]);
        Assert.Equal(GgmlType.F32, report.Types["blk.0.attn_norm.weight"]);
    }

    [Fact]
    public void TruncatedQuantizedFile_NamesTheTensor()
    {
        using var temp = new TempFolder();
        string whole = temp.File("q.gguf"), cut = temp.File("cut.gguf");
        GgufQuantize.Write(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"), whole, "Q8_0");
        var bytes = File.ReadAllBytes(whole);
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 100)]);
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Open(cut));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("tensor '", e.Message);
    }

    [Fact]
    public void BadTypeAndInputAreReported()
    {
        using var temp = new TempFolder();
        var e = Assert.Throws<ArgumentException>(() => GgufQuantize.Write(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"), temp.File("q.gguf"), "Q3_K"));
        Assert.Contains("Q3_K", e.Message);
        Assert.Contains("Q4_K_M", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => GgufQuantize.Write(SharedPaths.Stories260K, temp.File("q.gguf"), "Q8_0"));
        Assert.Contains(".gguf", e2.Message);
    }
}

/// <summary>`--quantize` on load: a Hugging Face model's matrices quantized in memory, as `alora quantize` would write them.</summary>
public sealed unsafe class QuantizeOnLoadTests
{
    [Theory]
    [InlineData(DType.Q8_0, DType.Q8_0)]
    [InlineData(DType.Q4_K, DType.Q5_0)]   // rows of 64: llama.cpp's fallback
    public void HuggingFaceModel_QuantizedOnLoad_HoldsTheQuantizersBytes(DType requested, DType expected)
    {
        using var f32 = ModelWeights.Load(SharedPaths.Stories260K);
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        var types = weights.QuantizeMatrices(requested);
        Assert.Equal(expected, weights.Layers[0].QProj.DType);
        Assert.Equal(expected, types["model.layers.0.self_attn.q_proj.weight"]);
        Assert.Equal(DType.F32, weights.Layers[0].DownProj.DType);   // rows of 172: no type fits
        var q = weights.Layers[0].QProj;
        var values = new float[q.Rows * q.Cols];
        fixed (float* v = values) Alora.Kernels.Convert.ToSingle(v, f32.Layers[0].QProj.Data, DType.F32, values.Length);
        byte[] expectedBytes = Quantizer.Quantize(values, expected);
        Assert.True(new ReadOnlySpan<byte>(q.Data, expectedBytes.Length).SequenceEqual(expectedBytes));

        using var model = new DecoderModel(weights, maxBatchTokens: 32);
        using var reference = new DecoderModel(f32, maxBatchTokens: 32);
        int[] prompt = [1, 403, 407, 261, 378, 432];
        Assert.Equal(Models.Reference.GreedyIds(reference, prompt, 8), Models.Reference.GreedyIds(model, prompt, 8));
        Assert.Throws<ArgumentException>(() => ModelWeights.ParseQuantization("q3_k"));
        Assert.Equal(DType.Q4_K, ModelWeights.ParseQuantization("q4_k"));
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Alora.Formats;
using Alora.Models;

namespace Alora.Tests.Formats;

/// <summary>Every kind of broken input gets an error that names what is wrong.</summary>
public sealed class BadFileTests
{
    private static byte[] SafeTensorsBytes(string header, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BitConverter.GetBytes((long)h.Length).CopyTo(bytes, 0);
        h.CopyTo(bytes, 8);
        return bytes;
    }

    [Fact]
    public void TruncatedSafeTensorsFileIsReported()
    {
        using var temp = new TempFolder();
        string path = temp.File("model.safetensors");
        var original = File.ReadAllBytes(SharedPaths.Path("models", "stories260K", "model.safetensors"));
        File.WriteAllBytes(path, original[..(original.Length - 1000)]);
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("truncated", e.Message);
        Assert.Contains(path, e.Message);

        File.WriteAllBytes(path, original[..100]);   // cut inside the header
        e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void AHeaderWithInvalidUtf8IsReportedNotCrashedOn()
    {
        // Found by mutating stories260K: a flipped byte inside a tensor name made System.Text.Json throw
        // InvalidOperationException ("Cannot transcode invalid UTF-8") out of the loader.
        using var temp = new TempFolder();
        string path = temp.File("bad-utf8.safetensors");
        var bytes = File.ReadAllBytes(SharedPaths.Path("models", "stories260K", "model.safetensors"));
        int name = Encoding.ASCII.GetString(bytes, 8, 400).IndexOf("model.", StringComparison.Ordinal) + 8;
        bytes[name + 2] = 0xFF;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("not valid UTF-8", e.Message);
        Assert.Contains($"file offset {name + 2}", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void HeaderWhoseOffsetsLieIsReported()
    {
        using var temp = new TempFolder();
        string path = temp.File("lie.safetensors");
        // 2x2 F32 needs 16 bytes, the offsets claim 12.
        File.WriteAllBytes(path, SafeTensorsBytes("""{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}""", 16));
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("needs 16", e.Message);

        // Overlapping ranges.
        File.WriteAllBytes(path, SafeTensorsBytes("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12));
        e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("'b'", e.Message);
        Assert.Contains("contiguous", e.Message);

        // Offsets beyond the end of the file.
        File.WriteAllBytes(path, SafeTensorsBytes("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8));
        e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void UnknownDTypeIsReported()
    {
        using var temp = new TempFolder();
        string path = temp.File("q.safetensors");
        File.WriteAllBytes(path, SafeTensorsBytes("""{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}""", 1));
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("unknown dtype 'Q4'", e.Message);
        Assert.Contains("'w'", e.Message);

        // A known dtype the engine cannot use as a weight.
        File.WriteAllBytes(path, SafeTensorsBytes("""{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}""", 8));
        using var file = SafeTensorsFile.Open(path);
        var e2 = Assert.Throws<ModelFormatException>(() => file.Tensors["w"].ToWeightDType(path));
        Assert.Contains("I64", e2.Message);
    }

    [Fact]
    public void MissingTensorIsReported()
    {
        using var temp = new TempFolder();
        string source = SharedPaths.Stories260K;
        File.Copy(Path.Combine(source, "config.json"), temp.File("config.json"));
        using (var full = SafeTensorsFile.Open(Path.Combine(source, "model.safetensors")))
        {
            var kept = full.Tensors.Values.Where(t => t.Name != "model.layers.3.mlp.up_proj.weight")
                .Select(t => new SafeTensorToWrite(t.Name, t.DType, t.Shape, full.Bytes(t).ToArray()));
            SafeTensorsWriter.Write(temp.File("model.safetensors"), kept);
        }
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Load(temp.Path));
        Assert.Contains("'model.layers.3.mlp.up_proj.weight' is missing", e.Message);
    }

    [Fact]
    public void WrongShapeIsReported()
    {
        using var temp = new TempFolder();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(SharedPaths.Stories260K, "config.json")))!.AsObject();
        config["intermediate_size"] = 128;
        File.WriteAllText(temp.File("config.json"), config.ToJsonString());
        File.Copy(Path.Combine(SharedPaths.Stories260K, "model.safetensors"), temp.File("model.safetensors"));
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Load(temp.Path));
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", e.Message);
        Assert.Contains("[172, 64]", e.Message);
        Assert.Contains("[128, 64]", e.Message);
    }

    [Fact]
    public void GgufWithUnknownTensorTypeIsReported()
    {
        using var temp = new TempFolder();
        using var source = GgufFile.Open(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"));
        string path = temp.File("bad.gguf");
        // Same metadata and tensors, but one tensor claims ggml type 99 (and, below, Q2_K: known but unsupported; Q4_K on rows
        // of 64: not whole 256-element blocks).
        var tensors = source.TensorOrder.Select(t =>
        {
            var data = source.ReadFloats(t.Name);
            var bytes = new byte[data.Length * 4];
            Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
            var type = t.Name == "blk.2.attn_v.weight" ? (GgmlType)99 : GgmlType.F32;
            return new GgufTensorToWrite(t.Name, t.Shape, type, bytes);
        });
        GgufWriter.Write(path, source.Metadata, tensors);
        var e = Assert.Throws<ModelFormatException>(() => ModelWeights.Load(path));
        Assert.Contains("'blk.2.attn_v.weight'", e.Message);
        Assert.Contains("unknown ggml type 99", e.Message);

        using (var g = GgufFile.Open(path))
        {
            var info = g.Tensors["blk.2.attn_v.weight"] with { Type = GgmlType.Q2_K };
            var e2 = Assert.Throws<ModelFormatException>(() => g.DirectDType(info));
            Assert.Contains("'blk.2.attn_v.weight' has type Q2_K", e2.Message);
            var e3 = Assert.Throws<ModelFormatException>(() => g.DirectDType(info with { Type = GgmlType.Q4_K }));
            Assert.Contains("'blk.2.attn_v.weight' has type Q4_K and rows of 64 elements", e3.Message);
        }
    }

    [Fact]
    public void TruncatedGgufIsReported()
    {
        using var temp = new TempFolder();
        var bytes = File.ReadAllBytes(Path.Combine(SharedPaths.Stories260K, "stories260K.gguf"));
        string path = temp.File("cut.gguf");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<ModelFormatException>(() => GgufFile.Open(path));
        Assert.Contains("truncated", e.Message);
    }

    [Theory]
    [InlineData("""{"architectures":["GPT2LMHeadModel"],"hidden_size":8}""", "GPT2LMHeadModel")]
    [InlineData("""{"architectures":["LlamaForCausalLM"],"hidden_act":"gelu","hidden_size":8}""", "hidden_act")]
    [InlineData("""{"architectures":["LlamaForCausalLM"],"hidden_size":"big"}""", "hidden_size")]
    [InlineData("""{"architectures":["LlamaForCausalLM"],"hidden_size":8,"num_attention_heads":2,"intermediate_size":8,"num_hidden_layers":1,"vocab_size":4,"rope_scaling":{"rope_type":"yarn","factor":4}}""", "yarn")]
    public void UnsupportedConfigIsReported(string json, string named)
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("config.json"), json);
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.FromFile(temp.File("config.json")));
        Assert.Contains(named, e.Message);
        Assert.Contains("config.json", e.Message);
    }
}

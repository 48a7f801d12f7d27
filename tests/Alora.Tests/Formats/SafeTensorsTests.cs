using System.Text.Json;
using Alora.Formats;

namespace Alora.Tests.Formats;

public sealed class SafeTensorsTests
{
    [Fact]
    public void WriteThenReadGivesTheSameTensorsAndMetadata()
    {
        using var temp = new TempFolder();
        string path = temp.File("t.safetensors");
        var a = Enumerable.Range(0, 6).Select(i => i * 0.5f).ToArray();
        var bf16 = new byte[] { 0x80, 0x3F, 0x00, 0x40 };  // 1.0, 2.0
        SafeTensorsWriter.Write(path,
            [SafeTensorToWrite.FromFloats("b.weight", [2, 3], a), new SafeTensorToWrite("a.bias", SafeTensorDType.BF16, [2], bf16)],
            new Dictionary<string, string> { ["format"] = "pt" });
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(a, file.ReadFloats("b.weight"));
        Assert.Equal([1f, 2f], file.ReadFloats("a.bias"));
        Assert.Equal([2L, 3L], file.Tensors["b.weight"].Shape);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Empty(Directory.GetFiles(temp.Path, "*.tmp"));
    }

    [Fact]
    public void ShardedCheckpointFollowsTheIndex()
    {
        using var temp = new TempFolder();
        SafeTensorsWriter.Write(temp.File("model-00001-of-00002.safetensors"), [SafeTensorToWrite.FromFloats("x", [1], [1f])]);
        SafeTensorsWriter.Write(temp.File("model-00002-of-00002.safetensors"), [SafeTensorToWrite.FromFloats("y", [1], [2f])]);
        File.WriteAllText(temp.File("model.safetensors.index.json"), JsonSerializer.Serialize(new
        {
            metadata = new { total_size = 8 },
            weight_map = new Dictionary<string, string> { ["x"] = "model-00001-of-00002.safetensors", ["y"] = "model-00002-of-00002.safetensors" },
        }));
        using var checkpoint = SafeTensorsCheckpoint.Open(temp.Path);
        Assert.Equal(2f, checkpoint.Get("y").File.ReadFloats("y")[0]);
        Assert.Equal(["x", "y"], checkpoint.TensorNames.Order());

        File.WriteAllText(temp.File("model.safetensors.index.json"), """{"weight_map":{"x":"model-00002-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}}""");
        var e = Assert.Throws<ModelFormatException>(() => SafeTensorsCheckpoint.Open(temp.Path));
        Assert.Contains("'x'", e.Message);
    }

    [Fact]
    public void GgufRoundTripsMetadataAndTensors()
    {
        using var temp = new TempFolder();
        string path = temp.File("t.gguf");
        var meta = new Dictionary<string, object>
        {
            ["general.architecture"] = "llama",
            ["adapter.lora.alpha"] = 16f,
            ["ids"] = new uint[] { 13, 473, 467 },
            ["names"] = new[] { "a", "bé" },
            ["flag"] = true,
        };
        float[] w = [1, 2, 3, 4, 5, 6];
        GgufWriter.Write(path, meta, [GgufTensorToWrite.FromFloats("blk.0.w", [2, 3], w)]);
        using var g = GgufFile.Open(path);
        Assert.Equal("llama", g.GetString("general.architecture"));
        Assert.Equal([13, 473, 467], g.GetInt32Array("ids")!);
        Assert.Equal(["a", "bé"], g.GetStringArray("names")!);
        Assert.True(g.GetBool("flag"));
        Assert.Equal(16.0, g.GetFloat("adapter.lora.alpha"));
        Assert.Equal([3L, 2L], g.Tensors["blk.0.w"].Dimensions);
        Assert.Equal(w, g.ReadFloats("blk.0.w"));
    }
}

using Alora.Formats;
using Alora.Models;

namespace Alora.Tests.Formats;

/// <summary>GGUF model metadata of the architectures Alora reads, and clear refusals of the others.</summary>
public sealed class GgufModelMetadataTests
{
    private static KeyValuePair<string, object>[] Hyperparameters(string arch) =>
    [
        new("general.architecture", arch),
        new($"{arch}.embedding_length", 32u),
        new($"{arch}.block_count", 2u),
        new($"{arch}.feed_forward_length", 48u),
        new($"{arch}.attention.head_count", 4u),
        new($"{arch}.attention.head_count_kv", 2u),
        new($"{arch}.vocab_size", 128u),
    ];

    private static ModelConfig Read(TempFolder temp, params KeyValuePair<string, object>[] metadata)
    {
        string path = temp.File("m.gguf");
        GgufWriter.Write(path, metadata, []);
        using var gguf = GgufFile.Open(path);
        return ModelConfig.FromGguf(gguf);
    }

    [Fact]
    public void UnknownArchitecturesAreRefusedByName()
    {
        using var temp = new TempFolder();
        var e = Assert.Throws<ModelFormatException>(() => Read(temp, Hyperparameters("phi3")));
        Assert.Contains("general.architecture is 'phi3'", e.Message, StringComparison.Ordinal);
        Assert.Contains("'llama', 'qwen2', 'granite'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AMissingKeyIsNamed()
    {
        using var temp = new TempFolder();
        var e = Assert.Throws<ModelFormatException>(() => Read(temp, [.. Hyperparameters("granite").Where(kv => kv.Key != "granite.block_count")]));
        Assert.Contains("'granite.block_count' is missing", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GraniteScalesDefaultToOneAndTheAttentionScaleToOneOverRootHeadDim()
    {
        using var temp = new TempFolder();
        var c = Read(temp, Hyperparameters("granite"));
        Assert.Equal(ModelArchitecture.Granite, c.Architecture);
        Assert.Equal((1f, 1f, 1f), (c.EmbeddingMultiplier, c.ResidualMultiplier, c.LogitsScaling));
        Assert.Equal(1 / MathF.Sqrt(8), c.AttentionScale);
        c = Read(temp, [.. Hyperparameters("granite"), new("granite.embedding_scale", 12f), new("granite.residual_scale", 0.22f),
            new("granite.attention.scale", 0.0078125f), new("granite.logit_scale", 8f)]);
        Assert.Equal((12f, 0.22f, 0.0078125f, 8f), (c.EmbeddingMultiplier, c.ResidualMultiplier, c.AttentionScale, c.LogitsScaling));
    }

    [Fact]
    public void ASlidingWindowMakesALlamaFileMistralStyleAndIsRefusedElsewhere()
    {
        using var temp = new TempFolder();
        var c = Read(temp, [.. Hyperparameters("llama"), new("llama.attention.sliding_window", 4096u)]);
        Assert.Equal((ModelArchitecture.Mistral, (int?)4096), (c.Architecture, c.SlidingWindow));
        Assert.Equal((ModelArchitecture.Llama, (int?)null), (Read(temp, Hyperparameters("llama")).Architecture, Read(temp, Hyperparameters("llama")).SlidingWindow));
        var e = Assert.Throws<ModelFormatException>(() => Read(temp, [.. Hyperparameters("qwen2"), new("qwen2.attention.sliding_window", 4096u)]));
        Assert.Contains("qwen2.attention.sliding_window", e.Message, StringComparison.Ordinal);
    }
}

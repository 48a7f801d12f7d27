using System.IO.Compression;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>Where tokenizers are loaded from: folders, tokenizer.json, tokenizer.json.gz, and the config files beside them.</summary>
public class LoadingTests
{
    [Fact]
    public void GzippedTokenizerJsonInAFolder()
    {
        using var folder = new TempFolder();
        string source = TokenizerFixtures.FolderOf("stories260K");
        using (var output = File.Create(folder.File("tokenizer.json.gz")))
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest))
        using (var input = File.OpenRead(Path.Combine(source, "tokenizer.json")))
            input.CopyTo(gzip);
        File.Copy(Path.Combine(source, "tokenizer_config.json"), folder.File("tokenizer_config.json"));
        var tokenizer = Tokenizer.Load(folder.Path);
        var row = TokenizerFixtures.Rows("stories260K")[3];
        Assert.Equal(row.Ids, tokenizer.Encode(row.Text));
    }

    [Fact]
    public void AGzipBombStopsAtTheCapWithAnErrorNamingTheFile()
    {
        using var folder = new TempFolder();
        string path = folder.File("tokenizer.json.gz");
        using (var output = File.Create(path))
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal))
            gzip.Write(new byte[4 << 20]);   // 4 MiB of zeros: a few KB on disk
        Assert.True(new FileInfo(path).Length < 64 << 10);
        var e = Assert.Throws<InvalidDataException>(() => TokenizerJson.Load(path, maxDecompressedBytes: 1 << 20));
        Assert.Contains(path, e.Message);
        Assert.Contains("expands past 1,048,576 bytes", e.Message);
    }

    [Fact]
    public void ConfigSuppliesSpecialTokensAndCleanUp()
    {
        var granite = TokenizerFixtures.Load("granite3");
        Assert.Equal(granite.TokenToId("<|end_of_text|>"), granite.BosTokenId);
        Assert.Equal(granite.TokenToId("<|end_of_text|>"), granite.EosTokenId);
        Assert.True(granite.IsSpecial(granite.TokenToId("<|start_of_role|>")!.Value));
        Assert.Equal(49156, granite.VocabSize); // 49152 + 4 added role tokens
        // Without tokenizer_config.json there is no clean-up: " ." stays.
        var bare = Tokenizer.FromTokenizerJson(Path.Combine(TokenizerFixtures.FolderOf("granite3"), "tokenizer.json"));
        int[] ids = bare.Encode("Hello .", addSpecialTokens: false);
        Assert.Equal("Hello .", bare.Decode(ids));
        Assert.Equal("Hello.", granite.Decode(ids));
        Assert.Null(bare.BosTokenId);
    }

    [Fact]
    public void TokenizerJsonPathLoadsItsConfigToo()
    {
        var tokenizer = Tokenizer.Load(Path.Combine(TokenizerFixtures.FolderOf("tinyllama-special-tokens"), "tokenizer.json"));
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
        Assert.True(tokenizer.IsSpecial(32000)); // <|user|>, from additional_special_tokens
        Assert.Equal(32004, tokenizer.VocabSize);
    }
}

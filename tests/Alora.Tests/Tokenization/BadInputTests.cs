using System.Text.Json.Nodes;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>Broken or unsupported tokenizer files get errors that name the file, the field and what was found.</summary>
public class BadInputTests
{
    private static Exception LoadError(string json)
    {
        using var folder = new TempFolder();
        string path = folder.File("tokenizer.json");
        File.WriteAllText(path, json);
        var error = Record.Exception(() => Tokenizer.FromTokenizerJson(path));
        Assert.NotNull(error);
        Assert.Contains(path, error.Message);
        return error;
    }

    private static Exception LoadError(JsonObject json) => LoadError(json.ToJsonString());

    [Fact]
    public void MalformedJson()
    {
        var error = LoadError("{\"model\": {\"type\": \"BPE\", ");
        Assert.IsType<InvalidDataException>(error);
        Assert.Contains("not valid JSON", error.Message);
    }

    [Fact]
    public void MissingModel()
    {
        var error = LoadError("{\"version\": \"1.0\"}");
        Assert.Contains("missing field 'model'", error.Message);
    }

    [Theory]
    [InlineData("normalizer", "FancyNormalizer")]
    [InlineData("pre_tokenizer", "Whitespacey")]
    [InlineData("post_processor", "MagicProcessing")]
    [InlineData("decoder", "Rot13")]
    public void UnknownComponentTypeIsNamed(string component, string type)
    {
        var json = SyntheticTokenizer.Json();
        json[component] = new JsonObject { ["type"] = type };
        var error = LoadError(json);
        Assert.IsType<NotSupportedException>(error);
        Assert.Contains($"'{type}'", error.Message);
        Assert.Contains(component, error.Message);
    }

    [Fact]
    public void UnknownNestedComponentIsNamedWithItsPath()
    {
        var json = SyntheticTokenizer.Json();
        json["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "NFC" }, new JsonObject { ["type"] = "Klingon" }) };
        var error = LoadError(json);
        Assert.Contains("normalizer.normalizers[1]", error.Message);
        Assert.Contains("'Klingon'", error.Message);
    }

    [Fact]
    public void UnsupportedModelTypeIsNamed()
    {
        var json = SyntheticTokenizer.Json();
        json["model"]!["type"] = "WordPiece";
        var error = LoadError(json);
        Assert.Contains("'WordPiece'", error.Message);
    }

    [Fact]
    public void MergeWithUnknownTokenNamesIt()
    {
        var error = LoadError(SyntheticTokenizer.Json(merges: ["a zz"]));
        Assert.Contains("merges", error.Message);
        Assert.Contains("'zz'", error.Message);
    }

    [Fact]
    public void MalformedMergeIsShown()
    {
        var error = LoadError(SyntheticTokenizer.Json(merges: ["abc"]));
        Assert.Contains("merges[0]", error.Message);
        Assert.Contains("\"abc\"", error.Message);
    }

    [Fact]
    public void AddedTokenWithoutIdIsNamed()
    {
        var error = LoadError(SyntheticTokenizer.Json(addedTokens: [new JsonObject { ["content"] = "<x>" }]));
        Assert.Contains("added_tokens[0]", error.Message);
        Assert.Contains("'id'", error.Message);
    }

    [Fact]
    public void WrongFieldTypeSaysWhatWasFound()
    {
        var json = SyntheticTokenizer.Json();
        json["model"]!["byte_fallback"] = "yes";
        var error = LoadError(json);
        Assert.Contains("byte_fallback", error.Message);
        Assert.Contains("the string \"yes\"", error.Message);
    }

    [Fact]
    public void TemplateWithUndeclaredSpecialToken()
    {
        var json = SyntheticTokenizer.Json();
        json["post_processor"] = JsonNode.Parse("""{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}""");
        var error = LoadError(json);
        Assert.Contains("'[CLS]'", error.Message);
    }

    [Fact]
    public void MissingFolderAndFile()
    {
        Assert.Throws<DirectoryNotFoundException>(() => Tokenizer.FromModelFolder("/nonexistent/model"));
        Assert.Throws<FileNotFoundException>(() => Tokenizer.Load("/nonexistent/model.gguf"));
        using var folder = new TempFolder();
        var error = Assert.Throws<FileNotFoundException>(() => Tokenizer.FromModelFolder(folder.Path));
        Assert.Contains("tokenizer.json", error.Message);
    }

    [Fact]
    public void UnknownIdInDecodeIsNamed()
    {
        var tokenizer = TokenizerFixtures.Load("stories260K");
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([5, 99999]));
        Assert.Contains("99999", error.Message);
    }
}

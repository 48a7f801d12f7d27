using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;

namespace Alora.Tests.Templates;

/// <summary>Every line of ../shared/fixtures/templates/*.jsonl renders exactly (Python Jinja2's
/// <c>jinja2_rendered</c> where it differs from the JS reference).</summary>
public class TemplateFixtureTests
{
    /// <summary>Which template source each fixture file was rendered with.</summary>
    internal static ChatTemplate LoadFixtureTemplate(string fixtureName)
    {
        string folder = SharedPaths.Path("tokenizers");
        return fixtureName switch
        {
            "granite3" => ChatTemplate.Parse(File.ReadAllText(Path.Combine(folder, "granite3", "chat_template.jinja")), "granite3/chat_template.jinja"),
            "granite3-vision" => ChatTemplate.Parse(ReadField(Path.Combine(folder, "granite3", "chat_template.json")), "granite3/chat_template.json"),
            "granite3-vision-tokcfg" => ChatTemplate.Parse(ReadField(Path.Combine(folder, "granite3", "tokenizer_config.json")), "granite3/tokenizer_config.json"),
            "llama3" => ChatTemplate.Parse(ReadField(Path.Combine(folder, "llama3", "tokenizer_config.json")), "llama3/tokenizer_config.json"),
            "qwen3" => ChatTemplate.Parse(ReadField(Path.Combine(folder, "qwen3", "tokenizer_config.json")), "qwen3/tokenizer_config.json"),
            _ => throw new ArgumentException($"no template known for fixture '{fixtureName}'"),
        };

        static string ReadField(string path) => JsonNode.Parse(File.ReadAllText(path))!["chat_template"]!.GetValue<string>();
    }

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (string file in Directory.GetFiles(SharedPaths.Path("fixtures", "templates"), "*.jsonl").Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileNameWithoutExtension(file);
            foreach (string line in File.ReadAllText(file).Split('\n'))
            {
                if (line.Length == 0) continue;
                data.Add(name, JsonNode.Parse(line)!["id"]!.GetValue<string>());
            }
        }
        return data;
    }

    internal static JsonObject ReadCase(string fixtureName, string id)
    {
        string file = SharedPaths.Path("fixtures", "templates", fixtureName + ".jsonl");
        foreach (string line in File.ReadAllText(file).Split('\n'))
        {
            if (line.Length == 0) continue;
            var record = JsonNode.Parse(line)!.AsObject();
            if (record["id"]!.GetValue<string>() == id) return record;
        }
        throw new InvalidOperationException($"{file}: no case '{id}'");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fixture_case_renders_exactly(string fixtureName, string id)
    {
        var record = ReadCase(fixtureName, id);
        var input = record["input"]!.AsObject().DeepClone().AsObject();
        string expected = (record["jinja2_rendered"] ?? record["rendered"])!.GetValue<string>();

        var now = DateTimeOffset.Parse(input["now"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
        input.Remove("now");
        // As apply_chat_template passes them: tools and documents are None when absent.
        input["tools"] ??= null;
        input["documents"] ??= null;
        if (!input.ContainsKey("tools")) input["tools"] = null;
        if (!input.ContainsKey("documents")) input["documents"] = null;

        string rendered = LoadFixtureTemplate(fixtureName).Render(input, now);

        Assert.Equal(expected, rendered);
    }
}

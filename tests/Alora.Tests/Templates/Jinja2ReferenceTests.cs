using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;

namespace Alora.Tests.Templates;

/// <summary>
/// Golden cases for Jinja features beyond the chat-template fixtures: whitespace control, expressions,
/// string methods, filters, tests, loops, macros, Python value printing. Expected output comes from
/// Python Jinja2 3.1.6 configured as transformers configures it (make_jinja2_reference.py over
/// jinja2_cases.py writes Jinja2Reference.jsonl); a case whose reference raised must raise here too.
/// </summary>
public class Jinja2ReferenceTests
{
    private static string ReferenceFile()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Alora.slnx")))
                return Path.Combine(dir.FullName, "tests", "Alora.Tests", "Templates", "Jinja2Reference.jsonl");
        }
        throw new DirectoryNotFoundException($"No folder holding Alora.slnx above {AppContext.BaseDirectory}");
    }

    private static IEnumerable<JsonObject> Records()
        => File.ReadAllText(ReferenceFile()).Split('\n').Where(line => line.Length > 0).Select(line => JsonNode.Parse(line)!.AsObject());

    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var record in Records()) data.Add(record["id"]!.GetValue<string>());
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Renders_like_python_jinja2(string id)
    {
        var record = Records().Single(r => r["id"]!.GetValue<string>() == id);
        string source = record["template"]!.GetValue<string>();
        var variables = record["variables"]!.AsObject();
        var now = new DateTimeOffset(2025, 4, 9, 0, 0, 0, TimeSpan.Zero);

        if (record["error"] is { } error)
        {
            var thrown = Assert.ThrowsAny<TemplateException>(() => ChatTemplate.Parse(source).Render(variables, now));
            Assert.False(string.IsNullOrWhiteSpace(thrown.Message), $"reference error was: {error}");
            return;
        }
        string expected = record["rendered"]!.GetValue<string>();
        string rendered = ChatTemplate.Parse(source, id).Render(variables, now);
        Assert.Equal(expected, rendered);
    }
}

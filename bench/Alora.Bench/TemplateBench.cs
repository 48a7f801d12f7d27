using System.Diagnostics;
using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;

namespace Alora.Bench;

/// <summary>
/// Chat-template scenario: parse time of each shared template, and render time per request over the
/// fixture conversations of ../shared/fixtures/templates (what a server pays per chat request).
/// Wire as `case "template": TemplateBench.Run(sharedRoot); break;` in Program.cs.
/// </summary>
internal static class TemplateBench
{
    public static void Run(string sharedRoot)
    {
        string tokenizers = Path.Combine(sharedRoot, "tokenizers");
        var sources = new (string Fixture, string Source)[]
        {
            ("granite3", File.ReadAllText(Path.Combine(tokenizers, "granite3", "chat_template.jinja"))),
            ("granite3-vision", Field(Path.Combine(tokenizers, "granite3", "chat_template.json"))),
            ("llama3", Field(Path.Combine(tokenizers, "llama3", "tokenizer_config.json"))),
            ("qwen3", Field(Path.Combine(tokenizers, "qwen3", "tokenizer_config.json"))),
        };
        Console.WriteLine("template                 chars   parse µs   render µs/request   requests");
        foreach (var (fixture, source) in sources)
        {
            double parseSeconds = Best(() => ChatTemplate.Parse(source), 200);
            var template = ChatTemplate.Parse(source);
            var requests = File.ReadAllText(Path.Combine(sharedRoot, "fixtures", "templates", fixture + ".jsonl"))
                .Split('\n').Where(line => line.Length > 0)
                .Select(line =>
                {
                    var input = JsonNode.Parse(line)!["input"]!.AsObject().DeepClone().AsObject();
                    var now = DateTimeOffset.Parse(input["now"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
                    input.Remove("now");
                    return (Input: input, Now: now);
                })
                .ToList();
            double renderSeconds = Best(() =>
            {
                foreach (var (input, now) in requests)
                {
                    try { template.Render(input, now); }
                    catch (TemplateException) { /* some fixture inputs are errors for other templates */ }
                }
            }, 20) / requests.Count;
            Console.WriteLine($"{fixture,-22} {source.Length,7} {parseSeconds * 1e6,10:F1} {renderSeconds * 1e6,19:F1} {requests.Count,10}");
        }
    }

    private static string Field(string path) => JsonNode.Parse(File.ReadAllText(path))!["chat_template"]!.GetValue<string>();

    private static double Best(Action action, int calls)
    {
        for (int i = 0; i < calls; i++) action();
        double best = double.MaxValue;
        for (int sample = 0; sample < 7; sample++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < calls; i++) action();
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds / calls);
        }
        return best;
    }
}

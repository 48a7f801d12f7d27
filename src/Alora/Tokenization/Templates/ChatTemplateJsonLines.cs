using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Tokenization.Templates;

/// <summary>
/// The line protocol of <c>alora template</c>: each input line is a JSON object
/// <c>{"messages": [...], "add_generation_prompt": bool, "now": "2025-04-09", ...}</c>; each output line is
/// <c>{"rendered": "..."}</c>, or <c>{"error": "...", "line": n}</c> when that line fails. Keys other than
/// messages, add_generation_prompt and now (tools, documents, controls, enable_thinking, even bos_token)
/// reach the template as variables, as apply_chat_template's kwargs do.
/// </summary>
public static class ChatTemplateJsonLines
{
    private static readonly JsonSerializerOptions OutputOptions = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Processes every line; returns how many lines failed (0 = all rendered).</summary>
    /// <param name="template">Renders with this template instead of the config's (e.g. a --template-file).</param>
    public static int Run(ChatTemplateConfig config, TextReader input, TextWriter output, string? templateName = null, ChatTemplate? template = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        int failures = 0, lineNumber = 0;
        string? line;
        while ((line = input.ReadLine()) is not null)
        {
            lineNumber++;
            if (lineNumber == 1 && line.StartsWith('\uFEFF')) line = line[1..];  // a UTF-8 byte order mark
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonObject result;
            try
            {
                result = new JsonObject { ["rendered"] = RenderLine(config, line, lineNumber, templateName, template) };
            }
            catch (Exception e) when (e is TemplateException or InvalidDataException or InvalidOperationException or KeyNotFoundException)
            {
                failures++;
                result = new JsonObject { ["error"] = e.Message, ["line"] = lineNumber };
            }
            output.WriteLine(result.ToJsonString(OutputOptions));
        }
        output.Flush();
        return failures;
    }

    /// <summary>Renders one request line.</summary>
    public static string RenderLine(ChatTemplateConfig config, string line, int lineNumber = 1, string? templateName = null, ChatTemplate? template = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        JsonObject request;
        if (Formats.Utf8Text.DescribeInvalid(line) is { } bad) throw new InvalidDataException($"input line {lineNumber}: {bad}");
        try
        {
            request = JsonNode.Parse(line, documentOptions: Formats.Utf8Text.StrictJson) as JsonObject
                ?? throw new InvalidDataException($"input line {lineNumber}: expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"input line {lineNumber}: invalid JSON: {e.Message}", e);
        }

        if (request["messages"] is not JsonArray messages)
            throw new InvalidDataException($"input line {lineNumber}: \"messages\" must be a list of messages, found {Describe(request["messages"])}");
        bool addGenerationPrompt = request["add_generation_prompt"] switch
        {
            null => false,
            JsonValue value when value.GetValueKind() is JsonValueKind.True or JsonValueKind.False => value.GetValue<bool>(),
            var other => throw new InvalidDataException($"input line {lineNumber}: \"add_generation_prompt\" must be true or false, found {Describe(other)}"),
        };
        DateTimeOffset? now = request["now"] switch
        {
            null => null,
            JsonValue value when value.GetValueKind() == JsonValueKind.String => ParseNow(value.GetValue<string>(), lineNumber),
            var other => throw new InvalidDataException($"input line {lineNumber}: \"now\" must be a date string such as \"2025-04-09\", found {Describe(other)}"),
        };

        var extra = new JsonObject();
        foreach (var (key, value) in request)
            if (key is not ("messages" or "add_generation_prompt" or "now")) extra[key] = value?.DeepClone();

        var variables = config.BuildVariables(messages, addGenerationPrompt, extra);
        return (template ?? config.GetTemplate(templateName)).Render(variables, now);
    }

    /// <summary>"2025-04-09" means local midnight of that day (as the fixtures pin the clock);
    /// a full ISO date-time is taken as written.</summary>
    private static DateTimeOffset ParseNow(string text, int lineNumber)
    {
        // The clock reading as written: "2025-04-09T10:00:00+02:00" means 10:00, whatever this machine's zone.
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AllowWhiteSpaces | DateTimeStyles.AssumeUniversal, out var written))
            return new DateTimeOffset(written.DateTime, TimeSpan.Zero);
        throw new InvalidDataException($"input line {lineNumber}: \"now\" is not a date: '{text}' (expected e.g. \"2025-04-09\" or \"2025-04-09T13:45:00\")");
    }

    private static string Describe(JsonNode? node) => node is null ? "null" : $"{node.GetValueKind().ToString().ToLowerInvariant()} {node.ToJsonString()}";
}

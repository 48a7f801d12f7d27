using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Structured;

namespace Alora.Cli;

/// <summary>Structured outputs on the command line: --json-schema FILE, --json-object, --regex, --choice (repeatable), --grammar FILE (GBNF).</summary>
internal sealed class ConstraintFlags
{
    private readonly Option<string?> _schema = new("--json-schema") { Description = "Constrain the output to JSON valid under this JSON Schema file" };
    private readonly Option<bool> _object = new("--json-object") { Description = "Constrain the output to a JSON object" };
    private readonly Option<string?> _regex = new("--regex") { Description = "Constrain the output to text matching this regular expression in full" };
    private readonly Option<string[]> _choice = new("--choice") { Description = "Constrain the output to one of these strings (repeatable)", AllowMultipleArgumentsPerToken = false };
    private readonly Option<string?> _grammar = new("--grammar") { Description = "Constrain the output to this GBNF grammar file (llama.cpp's format; starts at root)" };

    public IEnumerable<Option> All => [_schema, _object, _regex, _choice, _grammar];

    /// <summary>The constraint the flags ask for (null: none), checked to compile.</summary>
    public OutputConstraint? Read(ParseResult parse, Tokenization.Tokenizer? tokenizer)
    {
        var given = new List<(string Flag, OutputConstraint Constraint)>();
        if (parse.GetValue(_schema) is { } schemaPath)
        {
            JsonNode schema;
            try { schema = JsonNode.Parse(ReadFile(schemaPath, "--json-schema")) ?? throw new CliException($"--json-schema: {schemaPath} holds null, not a schema"); }
            catch (JsonException e) { throw new CliException($"--json-schema: {schemaPath} is not valid JSON: {e.Message}"); }
            given.Add(("--json-schema", OutputConstraint.JsonSchema(schema)));
        }
        if (parse.GetValue(_object)) given.Add(("--json-object", OutputConstraint.JsonObject()));
        if (parse.GetValue(_regex) is { } regex) given.Add(("--regex", OutputConstraint.Regex(regex)));
        if (parse.GetValue(_choice) is { Length: > 0 } choices) given.Add(("--choice", OutputConstraint.Choice(choices)));
        if (parse.GetValue(_grammar) is { } grammarPath) given.Add(("--grammar", OutputConstraint.Grammar(ReadFile(grammarPath, "--grammar"))));
        if (given.Count == 0) return null;
        if (given.Count > 1) throw new CliException($"give one output constraint: {string.Join(" and ", given.Select(g => g.Flag))} were both given");
        var (flag, constraint) = given[0];
        if (tokenizer is null) throw new CliException($"{flag} needs the model's tokenizer (tokenizer.json or a GGUF vocabulary)");
        try { TokenConstraint.Compile(constraint, TokenVocabulary.For(tokenizer)); }
        catch (StructuredOutputException e) { throw new CliException($"{flag}: {e.Message}"); }
        return constraint;
    }

    private static string ReadFile(string path, string flag)
        => File.Exists(path) ? File.ReadAllText(path) : throw new CliException($"{flag}: no file {path}");
}

using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Structured;

namespace Alora.Server;

public sealed partial class AloraServer
{
    /// <summary>
    /// The request's output constraint, from whichever of the peers' fields it uses: OpenAI's
    /// <c>response_format</c> (json_object, json_schema), vLLM's <c>structured_outputs</c> (json, regex, choice,
    /// grammar, json_object) and its older <c>guided_json</c>/<c>guided_regex</c>/<c>guided_choice</c>/<c>guided_grammar</c>,
    /// llama.cpp's <c>json_schema</c> and <c>grammar</c> (GBNF). One per request. It is compiled here, so a schema
    /// with an unsupported keyword is a 400 that names the keyword and where it is.
    /// </summary>
    private OutputConstraint? Constraint(RequestFields f)
    {
        var found = new List<(string Field, OutputConstraint Constraint)>();
        if (f.OptionalObject("response_format") is { } format) { if (ResponseFormat(format) is { } c) found.Add(("response_format", c)); }
        if (f.OptionalObject("structured_outputs") is { } structured)
        {
            var so = new RequestFields(structured);
            bool compact = so.OptionalBool("disable_any_whitespace") ?? false;
            foreach (var (key, c) in StructuredOutputs(so)) found.Add(($"structured_outputs.{key}", c with { JsonWhitespace = !compact }));
        }
        if (f.Node("guided_json") is { } guidedJson) found.Add(("guided_json", OutputConstraint.JsonSchema(SchemaNode("guided_json", guidedJson))));
        if (f.OptionalString("guided_regex") is { } regex) found.Add(("guided_regex", OutputConstraint.Regex(regex)));
        if (f.Node("guided_choice") is { } choice) found.Add(("guided_choice", OutputConstraint.Choice(Choices("guided_choice", choice))));
        if (f.OptionalString("guided_grammar") is { } guidedGrammar) found.Add(("guided_grammar", OutputConstraint.Grammar(guidedGrammar)));
        if (f.Node("json_schema") is { } llamaSchema) found.Add(("json_schema", OutputConstraint.JsonSchema(SchemaNode("json_schema", llamaSchema))));
        if (f.OptionalString("grammar") is { } grammar) found.Add(("grammar", OutputConstraint.Grammar(grammar)));

        if (found.Count == 0) return null;
        if (found.Count > 1)
            throw ApiError.BadField(found[1].Field, $"one output constraint per request: {string.Join(" and ", found.Select(x => x.Field))} were both given");
        var (field, constraint) = found[0];
        try { TokenConstraint.Compile(constraint, TokenVocabulary.For(Tokenizer)); }
        catch (StructuredOutputException e)
        {
            throw new ApiError(400, $"{field}: {e.Message}", field, "unsupported_constraint");
        }
        return constraint;
    }

    private static OutputConstraint? ResponseFormat(JsonObject format)
    {
        var rf = new RequestFields(format);
        string type = rf.OptionalString("type") ?? throw ApiError.BadField("response_format.type", "is required (text, json_object or json_schema)");
        switch (type)
        {
            case "text": return null;
            case "json_object": return OutputConstraint.JsonObject();
            case "json_schema":
                var inner = rf.OptionalObject("json_schema") ?? throw ApiError.BadField("response_format.json_schema", "is required when type is json_schema");
                var schema = inner["schema"] ?? throw ApiError.BadField("response_format.json_schema.schema", "is required");
                return OutputConstraint.JsonSchema(SchemaNode("response_format.json_schema.schema", schema));
            default:
                throw ApiError.BadField("response_format.type", $"expected text, json_object or json_schema, found '{type}'");
        }
    }

    private static IEnumerable<(string Key, OutputConstraint Constraint)> StructuredOutputs(RequestFields so)
    {
        if (so.Node("json") is { } json) yield return ("json", OutputConstraint.JsonSchema(SchemaNode("structured_outputs.json", json)));
        if (so.OptionalString("regex") is { } regex) yield return ("regex", OutputConstraint.Regex(regex));
        if (so.Node("choice") is { } choice) yield return ("choice", OutputConstraint.Choice(Choices("structured_outputs.choice", choice)));
        if (so.OptionalString("grammar") is { } grammar) yield return ("grammar", OutputConstraint.Grammar(grammar));
        if (so.OptionalBool("json_object") == true) yield return ("json_object", OutputConstraint.JsonObject());
        var unknown = so.Body.Select(p => p.Key).Except(["json", "regex", "choice", "grammar", "json_object", "disable_any_whitespace", "structural_tag", "backend"]).ToArray();
        if (unknown.Length > 0) throw ApiError.BadField("structured_outputs", $"unknown field{(unknown.Length > 1 ? "s" : "")} {string.Join(", ", unknown)} (expected json, regex, choice, grammar or json_object)");
        if (so.Node("structural_tag") is not null) throw ApiError.BadField("structured_outputs.structural_tag", "structural tags are not supported");
    }

    /// <summary>A schema given as an object, or (vLLM and llama.cpp accept it) as a string holding JSON.</summary>
    private static JsonNode SchemaNode(string field, JsonNode node)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            try { return JsonNode.Parse(v.GetValue<string>()) ?? throw ApiError.BadField(field, "the schema string is null"); }
            catch (JsonException e) { throw ApiError.BadField(field, $"the schema string is not valid JSON: {e.Message}"); }
        }
        return node is JsonObject or JsonValue ? node : throw ApiError.BadField(field, $"expected a JSON Schema (an object), found {RequestFields.Describe(node)}");
    }

    private static string[] Choices(string field, JsonNode node)
    {
        if (node is not JsonArray { Count: > 0 } array) throw ApiError.BadField(field, $"expected a non-empty array of strings, found {RequestFields.Describe(node)}");
        return [.. array.Select((c, i) => c is JsonValue s && s.GetValueKind() == JsonValueKind.String && s.GetValue<string>().Length > 0 ? s.GetValue<string>()
            : throw ApiError.BadField($"{field}[{i}]", $"expected a non-empty string, found {RequestFields.Describe(c)}"))];
    }
}

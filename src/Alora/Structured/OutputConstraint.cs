using System.Text.Json.Nodes;

namespace Alora.Structured;

/// <summary>The kind of constraint a request puts on its output.</summary>
public enum ConstraintKind
{
    /// <summary>Any JSON object (OpenAI's <c>{"type": "json_object"}</c>).</summary>
    JsonObject,
    /// <summary>A JSON value valid under a JSON Schema (OpenAI's <c>json_schema</c>, vLLM's <c>guided_json</c>, llama.cpp's <c>json_schema</c>).</summary>
    JsonSchema,
    /// <summary>Exactly one of a list of strings (vLLM's <c>guided_choice</c>).</summary>
    Choice,
    /// <summary>Text matching a regular expression in full (vLLM's <c>guided_regex</c>).</summary>
    Regex,
    /// <summary>Text derived from the <c>root</c> rule of a GBNF grammar (llama.cpp's <c>grammar</c>).</summary>
    Grammar,
}

/// <summary>
/// What a request's output must look like: structured outputs. This is the request's description only; the
/// engine compiles it to a byte-level grammar over the tokenizer's vocabulary and masks the logits each step
/// (see <see cref="ConstraintKind"/> for the sources of each kind).
/// </summary>
public sealed record OutputConstraint
{
    private OutputConstraint(ConstraintKind kind) => Kind = kind;

    public ConstraintKind Kind { get; }
    /// <summary>The schema, for <see cref="ConstraintKind.JsonSchema"/>.</summary>
    public JsonNode? Schema { get; private init; }
    /// <summary>The choices, for <see cref="ConstraintKind.Choice"/>.</summary>
    public IReadOnlyList<string> Choices { get; private init; } = [];
    /// <summary>The regular expression (<see cref="ConstraintKind.Regex"/>) or the GBNF text (<see cref="ConstraintKind.Grammar"/>).</summary>
    public string? Text { get; private init; }
    /// <summary>
    /// JSON kinds: whether whitespace may come between tokens (true: a space, or a newline and up to 20 spaces or tabs
    /// of indentation, as llama.cpp allows; false: compact JSON only, vLLM's disable_any_whitespace).
    /// </summary>
    public bool JsonWhitespace { get; init; } = true;

    public static OutputConstraint JsonObject() => new(ConstraintKind.JsonObject);

    public static OutputConstraint JsonSchema(JsonNode schema)
        => new(ConstraintKind.JsonSchema) { Schema = schema?.DeepClone() ?? throw new ArgumentNullException(nameof(schema)) };

    public static OutputConstraint Choice(IEnumerable<string> choices)
    {
        var list = choices.ToArray();
        if (list.Length == 0) throw new ArgumentException("a choice constraint needs at least one choice", nameof(choices));
        return new(ConstraintKind.Choice) { Choices = list };
    }

    public static OutputConstraint Regex(string pattern) => new(ConstraintKind.Regex) { Text = pattern ?? throw new ArgumentNullException(nameof(pattern)) };

    public static OutputConstraint Grammar(string gbnf) => new(ConstraintKind.Grammar) { Text = gbnf ?? throw new ArgumentNullException(nameof(gbnf)) };
}

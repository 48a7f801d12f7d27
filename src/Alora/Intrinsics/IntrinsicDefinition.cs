using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Structured;

namespace Alora.Intrinsics;

/// <summary>A document of a retrieval-augmented request (granite-common's <c>Document</c>: text, optional title and id).</summary>
public sealed record IntrinsicDocument(string Text, string? DocId = null, string? Title = null)
{
    /// <summary>The document as JSON, fields in granite-common's order (text, title, doc_id), absent ones left out.</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject { ["text"] = Text };
        if (Title is not null) o["title"] = Title;
        if (DocId is not null) o["doc_id"] = DocId;
        return o;
    }
}

/// <summary>An intrinsic call after input processing: what the model is actually asked.</summary>
public sealed class IntrinsicCall
{
    /// <summary>The messages: sentence boundaries marked, documents as a message when the intrinsic asks, the instruction appended.</summary>
    public required JsonArray Messages { get; init; }
    /// <summary>The documents for the chat template's <c>documents</c> variable (sentence-marked); empty when they went into a message.</summary>
    public required IReadOnlyList<IntrinsicDocument> Documents { get; init; }
    /// <summary>The documents as the model saw them, wherever they went (output processing decodes sentences against these).</summary>
    public required IReadOnlyList<IntrinsicDocument> MarkedDocuments { get; init; }
    /// <summary>Chat-completion parameters from io.yaml (max_completion_tokens, temperature, …) plus logprobs/top_logprobs when a transformation needs them.</summary>
    public required JsonObject Parameters { get; init; }
    /// <summary>vLLM extra_body parameters from io.yaml (besides the schema).</summary>
    public required JsonObject ExtraBody { get; init; }
    /// <summary>The schema the output must follow, or null.</summary>
    public OutputConstraint? Constraint { get; init; }
}

/// <summary>
/// An intrinsic as granite-common describes it in an <c>io.yaml</c>: the model to call, the JSON schema of its
/// output, the transformations that turn the raw output into the result, and the input processing (an
/// instruction turn, parameters, sentence-boundary markers, documents as a message). docs/intrinsics.md lists
/// the semantics this follows.
/// </summary>
public sealed class IntrinsicDefinition
{
    /// <summary>granite-common's fields (YAML_REQUIRED_FIELDS, YAML_OPTIONAL_FIELDS) plus mellea's <c>name</c>.</summary>
    private static readonly string[] RequiredFields = ["model", "response_format", "transformations"];
    private static readonly string[] OptionalFields = ["docs_as_message", "instruction", "logprobs_workaround", "name", "parameters", "sentence_boundaries"];

    /// <summary>Alternatives asked for per generated token when a transformation decodes logprobs (granite-common's TOP_LOGPROBS).</summary>
    public const int TopLogprobs = 10;

    private IntrinsicDefinition() { }

    /// <summary>Where the definition came from (a path, or a name given to <see cref="Parse"/>).</summary>
    public string Source { get; private init; } = "";
    /// <summary>The <c>name</c> field (mellea writes one), or null.</summary>
    public string? Name { get; private init; }
    /// <summary>The model to call, or null for the request's own.</summary>
    public string? Model { get; private init; }
    /// <summary>The JSON schema of the raw output, or null.</summary>
    public JsonNode? ResponseFormat { get; private init; }
    public IReadOnlyList<TransformationRule> Transformations { get; private init; } = [];
    /// <summary>A Python format string for an extra user turn (fields: last_message and the call's arguments), or null.</summary>
    public string? Instruction { get; private init; }
    /// <summary>Chat-completion parameters added to every call (io.yaml's parameters without extra_body).</summary>
    public JsonObject Parameters { get; private init; } = [];
    /// <summary>io.yaml's parameters.extra_body.</summary>
    public JsonObject ExtraBodyParameters { get; private init; } = [];
    /// <summary>Where to mark sentence boundaries ("last_message", "documents") and the marker's prefix ("c" gives &lt;c0&gt;).</summary>
    public IReadOnlyDictionary<string, string> SentenceBoundaries { get; private init; } = new Dictionary<string, string>();
    /// <summary>How documents go into a message at the start ("string", "json", "roles"), or null to leave them to the chat template.</summary>
    public string? DocsAsMessage { get; private init; }
    /// <summary>Read the output from the logprobs' tokens in the final Harmony channel (gpt-oss models).</summary>
    public bool LogprobsWorkaround { get; private init; }

    /// <summary>Whether a transformation decodes token logprobs (then calls ask for logprobs and <see cref="TopLogprobs"/> alternatives).</summary>
    public bool NeedsLogprobs => Transformations.Any(t => t is LikelihoodRule);

    /// <summary>The output constraint of <see cref="ResponseFormat"/>, or null.</summary>
    public OutputConstraint? Constraint => ResponseFormat is null ? null : OutputConstraint.JsonSchema(ResponseFormat);

    public static IntrinsicDefinition Load(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new IntrinsicException($"{path}: cannot read the intrinsic definition: {e.Message}"); }
        return Parse(text, path);
    }

    /// <summary>Reads an io.yaml; <paramref name="source"/> names it in errors.</summary>
    public static IntrinsicDefinition Parse(string yaml, string source = "io.yaml")
    {
        var root = YamlReader.Parse(yaml, source);
        if (root is not YamlMapping map) throw new IntrinsicException($"{source}: expected a mapping of fields (model, response_format, transformations, …) at the top, found {Describe(root)}");
        var all = RequiredFields.Concat(OptionalFields).Order(StringComparer.Ordinal).ToArray();
        foreach (var field in RequiredFields)
            if (!map.ContainsKey(field)) throw new IntrinsicException($"{source}: the required field '{field}' is missing (required: {string.Join(", ", RequiredFields)}; write '{field}: ~' for none)");
        foreach (var (key, _) in map.Entries)
            if (!all.Contains(key.PythonString)) throw new IntrinsicException($"{At(source, key)}: unexpected top-level field '{key.PythonString}'; known fields are {string.Join(", ", all)}");

        string? model = OptionalString(source, map, "model");
        JsonNode? responseFormat = null;
        if (map["response_format"] is { } rf && rf is not YamlScalar { Value: null })
        {
            // granite-common holds the schema as a JSON string; an already-parsed mapping is taken as is.
            if (rf is YamlScalar { Value: { } v } && v.GetValueKind() == JsonValueKind.String)
            {
                try { responseFormat = JsonNode.Parse(v.GetValue<string>()); }
                catch (JsonException e) { throw new IntrinsicException($"{At(source, rf)}: response_format is not valid JSON: {e.Message}"); }
            }
            else responseFormat = rf.ToJson();
            if (responseFormat is not JsonObject) throw new IntrinsicException($"{At(source, rf)}: response_format must be a JSON schema (an object), found {responseFormat?.ToJsonString() ?? "null"}");
        }

        var parameters = new JsonObject();
        var extraBody = new JsonObject();
        if (map["parameters"] is { } p && p is not YamlScalar { Value: null })
        {
            if (p is not YamlMapping pm) throw new IntrinsicException($"{At(source, p)}: 'parameters' must be null (~) or a mapping from chat completion parameter to value, found {Describe(p)}");
            foreach (var (key, value) in pm.Entries)
            {
                if (key.PythonString == "extra_body")
                {
                    if (value is not YamlMapping eb) throw new IntrinsicException($"{At(source, key)}: parameters.extra_body must be a mapping, found {Describe(value)}");
                    foreach (var (k, v) in eb.Entries) extraBody[k.PythonString] = v?.ToJson();
                }
                else parameters[key.PythonString] = value?.ToJson();
            }
        }

        var boundaries = new Dictionary<string, string>(StringComparer.Ordinal);
        if (map["sentence_boundaries"] is { } sb && sb is not YamlScalar { Value: null })
        {
            if (sb is not YamlMapping sbm) throw new IntrinsicException($"{At(source, sb)}: 'sentence_boundaries', if present, must be a mapping from location (last_message/documents) to marker prefix, found {Describe(sb)}");
            foreach (var (key, value) in sbm.Entries)
            {
                if (key.PythonString is not ("last_message" or "documents")) throw new IntrinsicException($"{At(source, key)}: unexpected location '{key.PythonString}' in sentence_boundaries; expected last_message or documents");
                if (value is not YamlScalar { Value: { } s } || s.GetValueKind() != JsonValueKind.String)
                    throw new IntrinsicException($"{At(source, key)}: the marker prefix for '{key.PythonString}' must be a string, found {Describe(value)}");
                boundaries[key.PythonString] = s.GetValue<string>();
            }
        }

        string? docsAsMessage = OptionalString(source, map, "docs_as_message");
        if (docsAsMessage is not (null or "" or "string" or "json" or "roles"))
            throw new IntrinsicException($"{At(source, map["docs_as_message"]!)}: docs_as_message is '{docsAsMessage}', expected one of string, json, roles");
        if (docsAsMessage == "") docsAsMessage = null;

        bool workaround = false;
        if (map["logprobs_workaround"] is YamlScalar { Value: { } w })
        {
            if (w.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False)) throw new IntrinsicException($"{At(source, map["logprobs_workaround"]!)}: logprobs_workaround must be true or false, found {w.ToJsonString()}");
            workaround = w.GetValue<bool>();
        }
        else if (map["logprobs_workaround"] is { } bad and not YamlScalar) throw new IntrinsicException($"{At(source, bad)}: logprobs_workaround must be true or false, found {Describe(bad)}");

        var rules = new List<TransformationRule>();
        if (map["transformations"] is { } t && t is not YamlScalar { Value: null })
        {
            if (t is not YamlSequence seq) throw new IntrinsicException($"{At(source, t)}: 'transformations' must be null (~) or a list of rules, found {Describe(t)}");
            for (int i = 0; i < seq.Items.Count; i++)
                rules.Add(TransformationRule.Parse(docsAsMessage, seq.Items[i], $"{source}: transformations[{i}]"));
        }
        return new IntrinsicDefinition
        {
            Source = source,
            Name = OptionalString(source, map, "name"),
            Model = model,
            ResponseFormat = responseFormat,
            Instruction = OptionalString(source, map, "instruction"),
            Parameters = parameters,
            ExtraBodyParameters = extraBody,
            SentenceBoundaries = boundaries,
            DocsAsMessage = docsAsMessage,
            LogprobsWorkaround = workaround,
            Transformations = rules,
        };
    }

    internal static string At(string source, YamlNode node) => $"{source}, line {node.Line}, column {node.Column}";

    internal static string Describe(YamlNode? node) => node switch
    {
        null => "nothing",
        YamlMapping => "a mapping",
        YamlSequence => "a list",
        YamlScalar { Value: null } => "null",
        YamlScalar s => s.Value!.GetValueKind() == JsonValueKind.String ? $"the string \"{s.Text}\"" : s.Text,
        _ => node.GetType().Name,
    };

    private static string? OptionalString(string source, YamlMapping map, string field)
    {
        var node = map[field];
        if (node is null or YamlScalar { Value: null }) return null;
        if (node is YamlScalar { Value: { } v } && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        throw new IntrinsicException($"{At(source, node)}: '{field}' must be a string or null (~), found {Describe(node)}");
    }

    // ───────────── input processing ─────────────

    /// <summary>
    /// Input processing, in granite-common's order: sentence boundaries are marked (in the last message and in
    /// the documents, numbered across all documents), the documents go into a first message when
    /// <see cref="DocsAsMessage"/> says so, then the instruction is formatted (fields: <c>last_message</c>, the
    /// last message's content after marking, and <paramref name="arguments"/>) and appended as a user turn.
    /// </summary>
    public IntrinsicCall Prepare(JsonArray messages, IReadOnlyList<IntrinsicDocument>? documents = null, IReadOnlyDictionary<string, string>? arguments = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var result = (JsonArray)messages.DeepClone();
        var docs = documents?.ToList() ?? [];

        if (SentenceBoundaries.TryGetValue("last_message", out string? messageTag) && result.Count > 0)
        {
            var last = (JsonObject)result[^1]!;
            string content = ContentOf(last, result.Count - 1);
            last["content"] = MarkSentenceBoundaries([SentenceSplitter.Split(content)], messageTag)[0];
        }
        if (SentenceBoundaries.TryGetValue("documents", out string? docTag) && docs.Count > 0)
        {
            var marked = MarkSentenceBoundaries(docs.Select(d => SentenceSplitter.Split(d.Text)).ToList(), docTag);
            docs = docs.Select((d, i) => d with { Text = marked[i] }).ToList();
        }

        var templateDocs = docs;
        if (DocsAsMessage is { } how && docs.Count > 0)
        {
            var prefix = new List<JsonObject>();
            switch (how)
            {
                case "string":
                    prefix.Add(new JsonObject { ["role"] = "user", ["content"] = "You have access to the following documents:\n\n" + string.Join("\n\n", docs.Select(d => $"[Document {d.DocId ?? "None"}]\n{d.Text}")) });
                    break;
                case "json":
                    prefix.Add(new JsonObject { ["role"] = "user", ["content"] = PythonJson.Dumps(new JsonArray([.. docs.Select(d => (JsonNode)d.ToJson())])) });
                    break;
                case "roles":
                    prefix.AddRange(docs.Select(d => new JsonObject { ["role"] = $"document {d.DocId ?? "None"}", ["content"] = d.Text }));
                    break;
            }
            for (int i = prefix.Count - 1; i >= 0; i--) result.Insert(0, prefix[i]);
            templateDocs = [];
        }

        if (Instruction is { } instruction)
        {
            var fields = new Dictionary<string, string>(StringComparer.Ordinal);
            if (arguments is not null) foreach (var (k, v) in arguments) fields[k] = v;
            if (result.Count > 0) fields["last_message"] = ContentOf((JsonObject)result[^1]!, result.Count - 1);
            result.Add(new JsonObject { ["role"] = "user", ["content"] = FormatInstruction(instruction, fields) });
        }

        var parameters = (JsonObject)Parameters.DeepClone();
        if (Model is not null) parameters["model"] = Model;
        if (NeedsLogprobs)
        {
            parameters["logprobs"] = true;
            parameters["top_logprobs"] = TopLogprobs;
        }
        return new IntrinsicCall
        {
            Messages = result,
            Documents = templateDocs,
            MarkedDocuments = docs,
            Parameters = parameters,
            ExtraBody = (JsonObject)ExtraBodyParameters.DeepClone(),
            Constraint = Constraint,
        };
    }

    private static string ContentOf(JsonObject message, int index)
        => message["content"] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw new IntrinsicException($"messages[{index}].content: expected a string, found {message["content"]?.ToJsonString() ?? "null"}");

    /// <summary>The marker before sentence <paramref name="number"/>: "&lt;c3&gt; " (with its trailing space).</summary>
    public static string SentenceMarker(string tag, int number) => $"<{tag}{number.ToString(CultureInfo.InvariantCulture)}> ";

    /// <summary>
    /// Joins each text's sentences with single spaces, each preceded by its marker; numbering runs on across
    /// the texts (<c>&lt;c0&gt; A. &lt;c1&gt; B.</c>, then <c>&lt;c2&gt; …</c> in the next document).
    /// </summary>
    public static List<string> MarkSentenceBoundaries(IReadOnlyList<IReadOnlyList<string>> texts, string tag)
    {
        int index = 0;
        var result = new List<string>(texts.Count);
        foreach (var sentences in texts)
            result.Add(string.Join(" ", sentences.Select(s => SentenceMarker(tag, index++) + s)));
        return result;
    }

    private static List<string> MarkSentenceBoundaries(List<List<string>> texts, string tag)
        => MarkSentenceBoundaries(texts.Select(t => (IReadOnlyList<string>)t).ToList(), tag);

    /// <summary>Python's <c>str.format(**fields)</c> for named fields: <c>{name}</c> is replaced, <c>{{</c> and <c>}}</c> are braces.</summary>
    public static string FormatInstruction(string template, IReadOnlyDictionary<string, string> fields)
    {
        var sb = new StringBuilder(template.Length);
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if (c == '{')
            {
                if (i + 1 < template.Length && template[i + 1] == '{') { sb.Append('{'); i++; continue; }
                int close = template.IndexOf('}', i + 1);
                if (close < 0) throw new IntrinsicException($"the instruction has a '{{' at offset {i} with no closing '}}' (write '{{{{' for a literal brace)");
                string name = template[(i + 1)..close];
                if (name.Length == 0 || char.IsDigit(name[0]))
                    throw new IntrinsicException($"the instruction has a positional field '{{{name}}}' at offset {i}; intrinsic instructions take named fields only");
                if (name.IndexOfAny([':', '!', '.', '[', '{']) >= 0)
                    throw new IntrinsicException($"the instruction's field '{{{name}}}' uses a conversion, format spec, attribute or index; only plain named fields are supported");
                if (!fields.TryGetValue(name, out var value))
                    throw new IntrinsicException($"Missing argument for intrinsic's instruction string: '{name}' (given: {(fields.Count == 0 ? "none" : string.Join(", ", fields.Keys.Order(StringComparer.Ordinal)))})");
                sb.Append(value);
                i = close;
                continue;
            }
            if (c == '}')
            {
                if (i + 1 < template.Length && template[i + 1] == '}') { sb.Append('}'); i++; continue; }
                throw new IntrinsicException($"the instruction has a single '}}' at offset {i} (write '}}}}' for a literal brace)");
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    // ───────────── output processing ─────────────

    /// <summary>
    /// Output processing: parses the raw output as JSON (with the position of every literal), applies the
    /// transformations in order and returns the result. <paramref name="tokens"/> are the generated tokens with
    /// their logprobs (needed by likelihood rules); <paramref name="call"/> is the processed input (needed to
    /// decode sentence numbers).
    /// </summary>
    public JsonNode? ProcessOutput(string content, IReadOnlyList<OutputToken>? tokens, IntrinsicCall? call)
    {
        ArgumentNullException.ThrowIfNull(content);
        if (LogprobsWorkaround && tokens is not null && HarmonyFinalChannel(tokens) is { } derived)
            (content, tokens) = derived;
        // Alora's extension: with neither a schema nor transformations the output is free text, returned as a
        // JSON string (granite-common would fail to parse it as JSON).
        if (ResponseFormat is null && Transformations.Count == 0) return JsonValue.Create(content);
        var positioned = PositionedJson.Parse(content);
        JsonNode? value = positioned.Value?.DeepClone();
        var context = new RuleContext(positioned, tokens, call, this);
        foreach (var rule in Transformations) value = rule.Apply(value, context);
        return value;
    }

    /// <summary>The processed output as granite-common writes it into the message: Python's <c>json.dumps</c>.</summary>
    public string ProcessOutputText(string content, IReadOnlyList<OutputToken>? tokens, IntrinsicCall? call)
        => PythonJson.Dumps(ProcessOutput(content, tokens, call));

    private static readonly HashSet<string> HarmonyEnd = ["<|end|>", "<|return|>", "<|end_of_text|>"];

    /// <summary>The content and tokens of the last <c>&lt;|channel|&gt; final &lt;|message|&gt;</c> section (matched on whole tokens), or null.</summary>
    internal static (string, IReadOnlyList<OutputToken>)? HarmonyFinalChannel(IReadOnlyList<OutputToken> tokens)
    {
        int message = -1;
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Text != "<|channel|>") continue;
            int j = i + 1;
            while (j < tokens.Count && tokens[j].Text.Trim().Length == 0) j++;
            if (j < tokens.Count && tokens[j].Text.Trim() == "final")
            {
                j++;
                while (j < tokens.Count && tokens[j].Text.Trim().Length == 0) j++;
                if (j < tokens.Count && tokens[j].Text == "<|message|>") { message = j; i = j; }
            }
        }
        if (message < 0 || message + 1 >= tokens.Count) return null;
        int end = tokens.Count;
        for (int i = message + 1; i < tokens.Count; i++) if (HarmonyEnd.Contains(tokens[i].Text)) { end = i; break; }
        var trimmed = tokens.Skip(message + 1).Take(end - message - 1).ToList();
        if (trimmed.Count == 0) return null;
        return (string.Concat(trimmed.Select(t => t.Text)), trimmed);
    }
}

/// <summary>A bad intrinsic definition, request or output: the message names the file, field or value.</summary>
public sealed class IntrinsicException(string message) : Exception(message);

/// <summary>An alternative at a generated position: its text and log probability.</summary>
public readonly record struct TokenAlternative(string Text, double Logprob);

/// <summary>A generated token as output processing sees it (OpenAI's logprobs content entry): its text, log probability and top alternatives.</summary>
public sealed record OutputToken(string Text, double Logprob, IReadOnlyList<TokenAlternative> Top);

using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Intrinsics;

/// <summary>What a rule may read besides the value: the raw output's literal positions, the tokens, the processed input, the definition.</summary>
public sealed record RuleContext(PositionedJson Raw, IReadOnlyList<OutputToken>? Tokens, IntrinsicCall? Call, IntrinsicDefinition Definition);

/// <summary>
/// One of granite-common's output transformations. A rule matches every path of the current value whose
/// length equals its <c>input_path</c> and whose elements equal it (a null element matches any key or index);
/// the matching paths are found before the rule runs, then it rewrites each in turn on a copy.
/// </summary>
public abstract class TransformationRule
{
    protected TransformationRule(IReadOnlyList<object?> inputPath, string where)
    {
        InputPath = inputPath;
        Where = where;
    }

    /// <summary>The rule's <c>type</c> in io.yaml.</summary>
    public abstract string YamlName { get; }
    /// <summary>Elements: string (an object key), int (a list index), null (any).</summary>
    public IReadOnlyList<object?> InputPath { get; }
    /// <summary>Where the rule was defined (file and index), for errors.</summary>
    protected string Where { get; }

    public JsonNode? Apply(JsonNode? value, RuleContext context)
    {
        var paths = AllPaths(value).Where(Matches).ToList();
        var prepared = Prepare(value, context);
        var result = value?.DeepClone();
        foreach (var path in paths) result = ApplyAtPath(result, path, prepared, context);
        return result;
    }

    /// <summary>Data computed once per output (the token table, the decoded sentences).</summary>
    protected virtual object? Prepare(JsonNode? value, RuleContext context) => null;

    protected abstract JsonNode? ApplyAtPath(JsonNode? result, IReadOnlyList<object> path, object? prepared, RuleContext context);

    private bool Matches(IReadOnlyList<object> path)
    {
        if (path.Count != InputPath.Count) return false;
        for (int i = 0; i < path.Count; i++)
            if (InputPath[i] is { } e && !e.Equals(path[i])) return false;
        return true;
    }

    /// <summary>Every path of the tree, the root first, then depth first in key and index order.</summary>
    public static List<IReadOnlyList<object>> AllPaths(JsonNode? node)
    {
        var result = new List<IReadOnlyList<object>>();
        void Walk(JsonNode? n, List<object> prefix)
        {
            result.Add(prefix.ToArray());
            if (n is JsonObject o)
                foreach (var (k, v) in o) { prefix.Add(k); Walk(v, prefix); prefix.RemoveAt(prefix.Count - 1); }
            else if (n is JsonArray a)
                for (int i = 0; i < a.Count; i++) { prefix.Add(i); Walk(a[i], prefix); prefix.RemoveAt(prefix.Count - 1); }
        }
        Walk(node, []);
        return result;
    }

    public static string Describe(IReadOnlyList<object> path) => "[" + string.Join(", ", path.Select(p => p is string s ? $"\"{s}\"" : p.ToString())) + "]";

    protected static JsonNode? Fetch(JsonNode? root, IReadOnlyList<object> path, int count = -1)
    {
        if (count < 0) count = path.Count;
        var current = root;
        for (int i = 0; i < count; i++)
        {
            current = (current, path[i]) switch
            {
                (JsonObject o, string key) when o.ContainsKey(key) => o[key],
                (JsonArray a, int index) when index < a.Count => a[index],
                _ => throw new IntrinsicException($"the output has no element at path {Describe(path.Take(i + 1).ToList())}"),
            };
        }
        return current;
    }

    protected static JsonNode? Replace(JsonNode? root, IReadOnlyList<object> path, JsonNode? value, int count = -1)
    {
        if (count < 0) count = path.Count;
        if (count == 0) return value;
        var parent = Fetch(root, path, count - 1);
        if (value?.Parent is not null) value = value.DeepClone();
        switch (parent, path[count - 1])
        {
            case (JsonObject o, string key): o[key] = value; break;
            case (JsonArray a, int index): a[index] = value; break;
        }
        return root;
    }

    // ───────────── parsing from io.yaml ─────────────

    internal static TransformationRule Parse(string? docsAsMessage, YamlNode? node, string where)
    {
        if (node is not YamlMapping map) throw new IntrinsicException($"{where}: expected a mapping with 'type' and 'input_path', found {IntrinsicDefinition.Describe(node)}");
        where = $"{where} (line {map.Line})";
        string type = map["type"] is YamlScalar { Value: { } t } && t.GetValueKind() == JsonValueKind.String ? t.GetValue<string>()
            : throw new IntrinsicException($"{where}: 'type' must be the rule's name ({string.Join(", ", Names)}), found {IntrinsicDefinition.Describe(map["type"])}");
        if (!map.ContainsKey("input_path")) throw new IntrinsicException($"{where}: rule '{type}' has no 'input_path' (a list of keys, indices and nulls; [] is the whole output)");
        var inputPath = ParsePath(map["input_path"], $"{where}: input_path");
        var args = map.Entries.Where(e => e.Key.PythonString is not ("type" or "input_path")).ToDictionary(e => e.Key.PythonString, e => e.Value, StringComparer.Ordinal);
        var a = new RuleArguments(type, args, where);
        TransformationRule rule = type switch
        {
            "likelihood" => new LikelihoodRule(inputPath, where, a),
            "nest" => new NestRule(inputPath, where, a),
            "project" => new ProjectRule(inputPath, where, a),
            "explode" => new ExplodeRule(inputPath, where, a),
            "drop_duplicates" => new DropDuplicatesRule(inputPath, where, a),
            "merge_spans" => new MergeSpansRule(inputPath, where, a),
            "decode_sentences" => new DecodeSentencesRule(inputPath, where, a, docsAsMessage),
            _ => throw new IntrinsicException($"{where}: unknown transformation rule '{type}'; available rules are {string.Join(", ", Names)}"),
        };
        a.ThrowIfUnused();
        return rule;
    }

    private static readonly string[] Names = ["decode_sentences", "drop_duplicates", "explode", "merge_spans", "nest", "project", "likelihood"];

    private static List<object?> ParsePath(YamlNode? node, string where)
    {
        if (node is not YamlSequence seq) throw new IntrinsicException($"{where}: expected a list of keys (strings), indices (integers) and wildcards (null), found {IntrinsicDefinition.Describe(node)}");
        var path = new List<object?>();
        foreach (var item in seq.Items)
        {
            path.Add(item switch
            {
                null or YamlScalar { Value: null } => null,
                YamlScalar { Value: { } v } when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                YamlScalar { Value: { } v } when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out long l) => (object)(int)l,
                _ => throw new IntrinsicException($"{where}: element {IntrinsicDefinition.Describe(item)} is not a key (string), an index (integer) or a wildcard (null)"),
            });
        }
        return path;
    }
}

/// <summary>A rule's arguments from io.yaml, each read once; any left over is an error that names it.</summary>
internal sealed class RuleArguments(string rule, Dictionary<string, YamlNode?> args, string where)
{
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);
    private readonly List<string> _known = [];
    public string Where { get; } = where;

    public YamlNode? Optional(string name)
    {
        _known.Add(name);
        _read.Add(name);
        return args.TryGetValue(name, out var v) ? v : null;
    }

    public YamlNode Required(string name)
        => Optional(name) ?? throw new IntrinsicException($"{Where}: rule '{rule}' needs the argument '{name}'");

    public string RequiredString(string name) => Optional(name) is YamlScalar { Value: { } v } && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
        : throw new IntrinsicException($"{Where}: '{name}' parameter for '{rule}' rule must be a string, found {IntrinsicDefinition.Describe(args.GetValueOrDefault(name))}");

    public List<string> StringList(string name)
    {
        var node = Required(name);
        if (node is not YamlSequence seq || seq.Items.Any(i => i is not YamlScalar { Value: { } v } || v.GetValueKind() != JsonValueKind.String))
            throw new IntrinsicException($"{Where}: '{name}' parameter for '{rule}' rule must be a list of strings, found {IntrinsicDefinition.Describe(node)}");
        return seq.Items.Select(i => ((YamlScalar)i!).Value!.GetValue<string>()).ToList();
    }

    public void ThrowIfUnused()
    {
        foreach (var name in args.Keys)
            if (!_read.Contains(name))
                throw new IntrinsicException($"{Where}: unexpected argument '{name}' for rule '{rule}' (it takes {(_known.Count == 0 ? "none" : string.Join(", ", _known))})");
    }
}

/// <summary>Rules that replace the matched value.</summary>
public abstract class InPlaceRule(IReadOnlyList<object?> inputPath, string where) : TransformationRule(inputPath, where)
{
    protected sealed override JsonNode? ApplyAtPath(JsonNode? result, IReadOnlyList<object> path, object? prepared, RuleContext context)
    {
        var original = Fetch(result, path);
        var transformed = Transform(original, path, prepared, context);
        return Replace(result, path, transformed);
    }

    protected abstract JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context);
}

/// <summary>
/// <c>likelihood</c>: turns a categorical value into the expected value of <c>categories_to_values</c> under the
/// model's distribution at the value's first token. The weights are exp(logprob) of the chosen token (for the
/// category written) and of each top alternative (for the first category whose <c>str()</c> starts with the
/// alternative's text; an alternative equal to the chosen token is not counted twice), normalized to sum to 1.
/// With no match the result is 0.0. A value that begins inside a token (the token ends with the value's JSON
/// text) maps straight to its category's value.
/// </summary>
public sealed class LikelihoodRule : InPlaceRule
{
    internal LikelihoodRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a) : base(inputPath, where)
    {
        var node = a.Required("categories_to_values");
        if (node is not YamlMapping map) throw new IntrinsicException($"{where}: 'categories_to_values' must be a mapping from category to number, found {IntrinsicDefinition.Describe(node)}");
        var categories = new List<(JsonValue?, double)>();
        foreach (var (key, value) in map.Entries)
        {
            if (value is not YamlScalar { Value: { } v } || v.GetValueKind() != JsonValueKind.Number)
                throw new IntrinsicException($"{where}: the value of category '{key.PythonString}' must be a number, found {IntrinsicDefinition.Describe(value)}");
            categories.Add((key.Value, PythonJson.ToDouble(v)));
        }
        Categories = categories;
    }

    public override string YamlName => "likelihood";
    /// <summary>Categories (typed as YAML read them: "1" and 1 differ) and their values, in file order.</summary>
    public IReadOnlyList<(JsonValue? Category, double Value)> Categories { get; }

    protected override object? Prepare(JsonNode? value, RuleContext context)
    {
        var tokens = context.Tokens ?? throw new IntrinsicException($"{Where}: the likelihood rule needs the generated tokens' logprobs, and none came with the output");
        // Offset of each token's first character → its index (a later empty token takes over an offset, as a dict would).
        var beginToToken = new Dictionary<int, int>();
        int offset = 0;
        for (int i = 0; i < tokens.Count; i++)
        {
            beginToToken[offset] = i;
            offset += tokens[i].Text.Length;
        }
        return beginToToken;
    }

    private double? ValueOf(JsonNode? literal)
    {
        foreach (var (category, value) in Categories)
            if (PythonJson.ScalarEquals(category, literal)) return value;
        return null;
    }

    protected override JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context)
    {
        var beginToToken = (Dictionary<int, int>)prepared!;
        var tokens = context.Tokens!;
        var literal = context.Raw.LiteralAt(path) ?? throw new IntrinsicException($"{Where}: the likelihood rule expects a literal at path {Describe(path)} of the raw output, found {PythonJson.Dumps(value)}");
        if (!JsonNode.DeepEquals(value, literal.Value) && !PythonJson.ScalarEquals(value, literal.Value))
            throw new IntrinsicException($"{Where}: at path {Describe(path)} the value is now {PythonJson.Dumps(value)} but the model wrote {PythonJson.Dumps(literal.Value)}; a likelihood rule must run before rules that change its values");
        int start = literal.Begin + (literal.Value?.GetValueKind() == JsonValueKind.String ? 1 : 0);   // after a string's opening quote

        if (!beginToToken.TryGetValue(start, out int first))
        {
            int previous = start;
            while (previous > 0 && !beginToToken.ContainsKey(previous)) previous--;
            if (!beginToToken.TryGetValue(previous, out int previousIndex))
                throw new IntrinsicException($"{Where}: no generated tokens to decode the value at path {Describe(path)} from");
            if (tokens[previousIndex].Text.EndsWith(PythonJson.Dumps(literal.Value), StringComparison.Ordinal))
                return ValueOf(literal.Value) is double direct ? JsonValue.Create(direct)
                    : throw new IntrinsicException($"{Where}: {PythonJson.Dumps(literal.Value)} is not one of the categories ({string.Join(", ", Categories.Select(c => PythonJson.Str(c.Category)))})");
            throw new IntrinsicException($"{Where}: the value {PythonJson.Dumps(literal.Value)} at path {Describe(path)} starts at offset {start} of the output, but no token starts there");
        }

        var values = new List<double>();
        var weights = new List<double>();
        var chosen = tokens[first];
        // The probability of the first token stands for the probability of the whole literal.
        if (ValueOf(literal.Value) is double v)
        {
            values.Add(v);
            weights.Add(Math.Exp(chosen.Logprob));
        }
        foreach (var alternative in chosen.Top)
        {
            if (alternative.Text == chosen.Text) continue;   // engines may list the chosen token among the top ones
            foreach (var (category, value2) in Categories)
            {
                if (PythonJson.Str(category).StartsWith(alternative.Text, StringComparison.Ordinal))
                {
                    values.Add(value2);
                    weights.Add(Math.Exp(alternative.Logprob));
                    break;
                }
            }
        }
        if (values.Count == 0) return JsonValue.Create(0.0);
        // As granite-common computes it, with Python's sum() (3.12+: Neumaier-compensated, left to right).
        double total = PythonJson.Sum(weights);
        var products = new double[values.Count];
        for (int i = 0; i < values.Count; i++) products[i] = weights[i] / total * values[i];
        double result = PythonJson.Sum(products);
        return JsonValue.Create(result);
    }
}

/// <summary><c>nest</c>: wraps the value in an object with one field, <c>field_name</c>.</summary>
public sealed class NestRule : InPlaceRule
{
    internal NestRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a) : base(inputPath, where) => FieldName = a.RequiredString("field_name");
    public override string YamlName => "nest";
    public string FieldName { get; }
    protected override JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context)
        => new JsonObject { [FieldName] = value?.DeepClone() };
}

/// <summary>
/// <c>project</c>: keeps only <c>retained_fields</c> of a record (or of each record of a list), in that order,
/// renamed when it is a mapping from field to new name; a missing field becomes null.
/// </summary>
public sealed class ProjectRule : InPlaceRule
{
    internal ProjectRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a) : base(inputPath, where)
    {
        var node = a.Required("retained_fields");
        Retained = node switch
        {
            YamlSequence s when s.Items.All(i => i is YamlScalar) => s.Items.Select(i => (((YamlScalar)i!).PythonString, ((YamlScalar)i!).PythonString)).ToList(),
            YamlMapping m when m.Entries.All(e => e.Value is YamlScalar) => m.Entries.Select(e => (e.Key.PythonString, ((YamlScalar)e.Value!).PythonString)).ToList(),
            _ => throw new IntrinsicException($"{where}: 'retained_fields' argument of 'project' rule must be either a list of fields or a mapping from retained field to new name, found {IntrinsicDefinition.Describe(node)}"),
        };
    }

    public override string YamlName => "project";
    public IReadOnlyList<(string Field, string NewName)> Retained { get; }

    private JsonObject ProjectRecord(JsonNode? record, IReadOnlyList<object> path)
    {
        if (record is not JsonObject o) throw new IntrinsicException($"{Where}: an element at path {Describe(path)} is not a record: {PythonJson.Dumps(record)}");
        var result = new JsonObject();
        foreach (var (field, newName) in Retained) result[newName] = o.TryGetPropertyValue(field, out var v) ? v?.DeepClone() : null;
        return result;
    }

    protected override JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context) => value switch
    {
        JsonObject => ProjectRecord(value, path),
        JsonArray list => new JsonArray([.. list.Select(e => (JsonNode)ProjectRecord(e, path))]),
        _ => throw new IntrinsicException($"{Where}: matching element at path {Describe(path)} is not a list or a record; 'project' paths must hold one or more records, found {PythonJson.Dumps(value)}"),
    };
}

/// <summary><c>explode</c>: in a list of records, replaces each record by one copy per element of its list-valued <c>target_field</c>.</summary>
public sealed class ExplodeRule : InPlaceRule
{
    internal ExplodeRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a) : base(inputPath, where) => TargetField = a.RequiredString("target_field");
    public override string YamlName => "explode";
    public string TargetField { get; }

    protected override JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context)
    {
        if (value is not JsonArray list) throw new IntrinsicException($"{Where}: matching element at path {Describe(path)} is not a list; 'explode' paths must be lists");
        var result = new JsonArray();
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject record) throw new IntrinsicException($"{Where}: element {i} of the list at path {Describe(path)} is not a record: {PythonJson.Dumps(list[i])}");
            if (!record.TryGetPropertyValue(TargetField, out var target)) throw new IntrinsicException($"{Where}: element {i} of the list at path {Describe(path)} has no field '{TargetField}': {PythonJson.Dumps(record)}");
            if (target is not JsonArray targets) throw new IntrinsicException($"{Where}: field '{TargetField}' of element {i} at path {Describe(path)} is not a list: {PythonJson.Dumps(record)}");
            foreach (var t in targets)
            {
                var copy = new JsonObject();
                foreach (var (k, v) in record) copy[k] = (k == TargetField ? t : v)?.DeepClone();
                result.Add(copy);
            }
        }
        return result;
    }
}

/// <summary>
/// <c>drop_duplicates</c>: removes records whose <c>target_fields</c> equal an earlier record's; a kept record
/// stays at its first position and takes the last duplicate's contents (a dict keyed by those fields). Note:
/// granite-common keys its dict by a generator expression, so there no two keys are ever equal and nothing is
/// dropped; this does what the rule's documentation says.
/// </summary>
public sealed class DropDuplicatesRule : InPlaceRule
{
    internal DropDuplicatesRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a) : base(inputPath, where) => TargetFields = a.StringList("target_fields");
    public override string YamlName => "drop_duplicates";
    public IReadOnlyList<string> TargetFields { get; }

    protected override JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context)
    {
        if (value is not JsonArray list) throw new IntrinsicException($"{Where}: matching element at path {Describe(path)} is not a list; 'drop_duplicates' paths must be lists");
        var keys = new List<string>();
        var records = new Dictionary<string, JsonNode>(StringComparer.Ordinal);
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject record) throw new IntrinsicException($"{Where}: element {i} of the list at path {Describe(path)} is not a record");
            foreach (var t in TargetFields)
                if (!record.ContainsKey(t)) throw new IntrinsicException($"{Where}: element {i} of the list at path {Describe(path)} is missing field '{t}': {PythonJson.Dumps(record)}");
            string key = PythonJson.Dumps(new JsonArray([.. TargetFields.Select(t => record[t]?.DeepClone())]));
            if (!records.ContainsKey(key)) keys.Add(key);
            records[key] = record;
        }
        return new JsonArray([.. keys.Select(k => records[k].DeepClone())]);
    }
}

/// <summary>
/// <c>merge_spans</c>: sorts a list of span records by (<c>group_fields</c>…, begin) and merges each run of
/// spans of one group where a span's end equals the next one's begin (text concatenated when
/// <c>text_field</c> is given). Records may hold only those fields; two spans may not start at one place.
/// </summary>
public sealed class MergeSpansRule : InPlaceRule
{
    internal MergeSpansRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a) : base(inputPath, where)
    {
        GroupFields = a.StringList("group_fields");
        BeginField = a.RequiredString("begin_field");
        EndField = a.RequiredString("end_field");
        TextField = a.Optional("text_field") is YamlScalar { Value: { } t } && t.GetValueKind() == JsonValueKind.String ? t.GetValue<string>() : null;
    }

    public override string YamlName => "merge_spans";
    public IReadOnlyList<string> GroupFields { get; }
    public string BeginField { get; }
    public string EndField { get; }
    public string? TextField { get; }

    private static int Compare(JsonNode? a, JsonNode? b)
    {
        if (a is null || b is null) return a is null ? (b is null ? 0 : -1) : 1;
        var ka = a.GetValueKind();
        var kb = b.GetValueKind();
        if (ka == JsonValueKind.String && kb == JsonValueKind.String) return string.CompareOrdinal(a.GetValue<string>(), b.GetValue<string>());
        if (ka == JsonValueKind.Number && kb == JsonValueKind.Number) return PythonJson.ToDouble(a).CompareTo(PythonJson.ToDouble(b));
        throw new IntrinsicException($"cannot order {PythonJson.Dumps(a)} and {PythonJson.Dumps(b)} in merge_spans");
    }

    protected override JsonNode? Transform(JsonNode? value, IReadOnlyList<object> path, object? prepared, RuleContext context)
    {
        if (value is not JsonArray list) throw new IntrinsicException($"{Where}: matching element at path {Describe(path)} is not a list; 'merge_spans' paths must be lists");
        if (list.Count == 0) return value.DeepClone();
        var expected = new HashSet<string>([.. GroupFields, BeginField, EndField], StringComparer.Ordinal);
        if (TextField is not null) expected.Add(TextField);
        var records = new List<(JsonNode?[] Key, JsonObject Record)>();
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject record) throw new IntrinsicException($"{Where}: element {i} of the list at path {Describe(path)} is not a record");
            foreach (var f in new[] { BeginField, EndField }.Concat(TextField is null ? [] : [TextField]))
                if (record[f] is null) throw new IntrinsicException($"{Where}: record {i} at path {Describe(path)} has no '{f}'; merge_spans does not handle null spans: {PythonJson.Dumps(record)}");
            foreach (var (k, _) in record)
                if (!expected.Contains(k)) throw new IntrinsicException($"{Where}: record {i} at path {Describe(path)} has the unexpected field '{k}'; merge_spans takes only the group fields and the span's fields");
            records.Add(([.. GroupFields.Select(g => record[g]), record[BeginField]], record));
        }
        int CompareKeys(JsonNode?[] x, JsonNode?[] y)
        {
            for (int i = 0; i < x.Length; i++) { int c = Compare(x[i], y[i]); if (c != 0) return c; }
            return 0;
        }
        records.Sort((x, y) => CompareKeys(x.Key, y.Key));
        for (int i = 1; i < records.Count; i++)
            if (CompareKeys(records[i - 1].Key, records[i].Key) == 0)
                throw new IntrinsicException($"{Where}: two spans start at {PythonJson.Dumps(records[i].Record[BeginField])} in one group; merge_spans supports only non-overlapping spans");
        var result = new JsonArray();
        var current = (JsonObject)records[0].Record.DeepClone();
        var group = records[0].Key[..^1];
        for (int i = 1; i < records.Count; i++)
        {
            var (key, next) = records[i];
            bool sameGroup = CompareKeys(key[..^1], group) == 0;
            if (!sameGroup || !PythonJson.ScalarEquals(current[EndField], next[BeginField]))
            {
                result.Add(current);
                current = (JsonObject)next.DeepClone();
                group = key[..^1];
            }
            else
            {
                current[EndField] = next[EndField]!.DeepClone();
                if (TextField is not null) current[TextField] = current[TextField]!.GetValue<string>() + next[TextField]!.GetValue<string>();
            }
        }
        result.Add(current);
        return result;
    }
}

/// <summary>
/// <c>decode_sentences</c>: the value is a sentence number; adds fields (<c>output_names</c>: begin, end, text,
/// and for documents document_id) next to it, read from the sentence-marked input. Offsets are into the
/// text without markers; document sentences are numbered across all documents.
/// </summary>
public sealed class DecodeSentencesRule : TransformationRule
{
    internal DecodeSentencesRule(IReadOnlyList<object?> inputPath, string where, RuleArguments a, string? docsAsMessage) : base(inputPath, where)
    {
        Source = a.RequiredString("source");
        if (Source is not ("last_message" or "documents")) throw new IntrinsicException($"{where}: 'source' argument must be last_message or documents, found '{Source}'");
        var names = a.Required("output_names");
        if (names is not YamlMapping m) throw new IntrinsicException($"{where}: expected a mapping for output_names, found {IntrinsicDefinition.Describe(names)}");
        var output = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in m.Entries)
        {
            if (!(k.PythonString is "begin" or "end" or "text" || (Source == "documents" && k.PythonString == "document_id")))
                throw new IntrinsicException($"{where}: unexpected key '{k.PythonString}' in output_names");
            output[k.PythonString] = v is YamlScalar s ? s.PythonString : throw new IntrinsicException($"{where}: output_names.{k.PythonString} must be a field name");
        }
        OutputNames = output;
        if (docsAsMessage is not (null or "json" or "roles"))
            throw new IntrinsicException($"{where}: decoding sentences with document encoding method '{docsAsMessage}' is not supported (granite-common supports json and roles)");
    }

    public override string YamlName => "decode_sentences";
    public string Source { get; }
    public IReadOnlyDictionary<string, string> OutputNames { get; }

    private sealed record Sentences(List<int> Begins, List<int> Ends, List<string> Texts, List<string?> DocumentIds);

    protected override object? Prepare(JsonNode? value, RuleContext context)
    {
        var call = context.Call ?? throw new IntrinsicException($"{Where}: decode_sentences needs the processed request, and none was given");
        var boundaries = context.Definition.SentenceBoundaries;
        if (Source == "documents")
        {
            if (!boundaries.TryGetValue("documents", out string? tag))
                throw new IntrinsicException($"{Where}: decoding document sentences, but sentence_boundaries has no 'documents' entry to say how they were marked");
            var all = new Sentences([], [], [], []);
            int next = 0;
            foreach (var d in call.MarkedDocuments)
            {
                var local = Desplit(d.Text, tag, next);
                all.Begins.AddRange(local.Begins);
                all.Ends.AddRange(local.Ends);
                all.Texts.AddRange(local.Texts);
                all.DocumentIds.AddRange(Enumerable.Repeat(d.DocId, local.Begins.Count));
                next += local.Begins.Count;
            }
            return all;
        }
        if (!boundaries.TryGetValue("last_message", out string? messageTag))
            throw new IntrinsicException($"{Where}: decoding the last message, but sentence_boundaries has no 'last_message' entry to say how it was marked");
        // The second-to-last turn when input processing appended an instruction.
        int index = call.Messages.Count - (context.Definition.Instruction is not null ? 2 : 1);
        if (index < 0) throw new IntrinsicException($"{Where}: the request has no message to decode sentences from");
        string text = call.Messages[index]?["content"]?.GetValue<string>() ?? "";
        return Desplit(text, messageTag, 0);
    }

    /// <summary>Undoes sentence marking: each sentence's begin and end offsets in the unmarked text, and its text (the space before the next marker included).</summary>
    private Sentences Desplit(string tagged, string tag, int firstNumber)
    {
        var s = new Sentences([], [], [], []);
        int number = firstNumber;
        string delimiter = IntrinsicDefinition.SentenceMarker(tag, number);
        int at = tagged.IndexOf(delimiter, StringComparison.Ordinal);
        if (at < 0) throw new IntrinsicException($"{Where}: first sentence delimiter '{delimiter}' not found in '{tagged}'");
        int begin = 0;
        int taggedBegin = at + delimiter.Length;
        while (true)
        {
            delimiter = IntrinsicDefinition.SentenceMarker(tag, number + 1);
            at = tagged.IndexOf(delimiter, taggedBegin, StringComparison.Ordinal);
            if (at < 0)
            {
                s.Begins.Add(begin);
                s.Ends.Add(begin + (tagged.Length - taggedBegin));
                s.Texts.Add(tagged[taggedBegin..]);
                break;
            }
            s.Begins.Add(begin);
            begin += at - taggedBegin;
            s.Ends.Add(begin);
            s.Texts.Add(tagged[taggedBegin..at]);
            taggedBegin = at + delimiter.Length;
            number++;
        }
        return s;
    }

    protected override JsonNode? ApplyAtPath(JsonNode? result, IReadOnlyList<object> path, object? prepared, RuleContext context)
    {
        if (path.Count == 0) throw new IntrinsicException($"{Where}: decode_sentences needs a path to a field of an object, not the whole output");
        var parent = Fetch(result, path, path.Count - 1) as JsonObject
            ?? throw new IntrinsicException($"{Where}: expected an object at path {Describe(path.Take(path.Count - 1).ToList())}");
        var value = parent[(string)path[^1]];
        if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || PythonJson.IsFloat(v))
            throw new IntrinsicException($"{Where}: expected an integer sentence number at path {Describe(path)}, found {PythonJson.Dumps(value)}");
        long n = (long)PythonJson.ToDouble(v);
        var s = (Sentences)prepared!;
        if (n < 0 || n >= s.Begins.Count) throw new IntrinsicException($"{Where}: sentence number {n} at path {Describe(path)} is out of range (the input has {s.Begins.Count} sentences)");
        int k = (int)n;
        var updated = (JsonObject)parent.DeepClone();
        if (OutputNames.TryGetValue("begin", out var b)) updated[b] = s.Begins[k];
        if (OutputNames.TryGetValue("end", out var e)) updated[e] = s.Ends[k];
        if (OutputNames.TryGetValue("text", out var t)) updated[t] = s.Texts[k];
        if (OutputNames.TryGetValue("document_id", out var id)) updated[id] = s.DocumentIds[k];
        return Replace(result, path, updated, path.Count - 1);
    }
}

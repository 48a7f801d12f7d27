using System.Globalization;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Structured;

/// <summary>
/// Compiles a JSON Schema to a grammar whose strings are exactly JSON texts valid under it (with the choices
/// below). Supported: type (one or a list), properties, required, additionalProperties (false, true or a
/// schema), enum, const, items, minItems, maxItems, anyOf, oneOf (as anyOf: branches are not made exclusive),
/// allOf with one branch, $ref (local JSON pointers: #, #/$defs/…, #/definitions/…; recursion allowed), string
/// minLength/maxLength/pattern/format (date, time, date-time, uuid), integer minimum/maximum and their exclusive
/// forms, and number minimum/maximum. Annotations (title, description, default, examples, $schema, $id,
/// $comment, deprecated, readOnly, writeOnly) are ignored; any other keyword is refused and named.
/// Choices, as llama.cpp and XGrammar make them: properties come in the order the schema lists them; when a
/// schema lists properties, others are allowed only if additionalProperties says so; whitespace between
/// tokens is a space or a line break with up to 20 spaces or tabs (or none: <see cref="OutputConstraint.JsonWhitespace"/>); strings use raw UTF-8 except where JSON requires an escape
/// (any escape is accepted in free strings); bounded numbers are written without an exponent.
/// </summary>
internal sealed class JsonSchemaGrammar
{
    private static readonly HashSet<string> Annotations =
        ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict", "name"];
    private static readonly HashSet<string> Supported =
        ["type", "properties", "required", "additionalProperties", "enum", "const", "items", "minItems", "maxItems", "anyOf", "oneOf", "allOf",
         "$ref", "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

    private readonly GrammarBuilder _b = new();
    private readonly JsonNode _root;
    private readonly Dictionary<string, int> _refRules = [];
    private readonly int _ws, _value, _string, _number;
    private readonly string _what;

    private JsonSchemaGrammar(JsonNode root, string what, bool whitespace)
    {
        _root = root;
        _what = what;
        // llama.cpp's rule: nothing, one space, or a line break and up to 20 spaces or tabs. Free whitespace lets a
        // weak model pad forever; this still takes compact, one-line and pretty-printed JSON.
        _ws = _b.Add("ws", whitespace
            ? GExpr.Optional(GExpr.Alt(GExpr.Literal(" "), GExpr.Seq(GExpr.Literal("\n"), GExpr.Repeat(new GByte(ByteSet.Of((byte)' ').Union(ByteSet.Of((byte)'\t'))), 0, 20))))
            : GExpr.Empty);
        _string = _b.Add("string", GExpr.Seq(GExpr.Literal("\""), GExpr.Star(AnyStringChar()), GExpr.Literal("\"")));
        _number = _b.Add("number", NumberSyntax());
        _value = _b.Declare("value");
        _b.Define(_value, AnyValue());
    }

    /// <summary>The grammar of JSON texts valid under the schema.</summary>
    public static ByteGrammar Compile(JsonNode schema, bool whitespace = true, string what = "the schema")
    {
        var compiler = new JsonSchemaGrammar(schema, what, whitespace);
        var body = compiler.Schema(schema, "#");
        int root = compiler._b.Add("root", GExpr.Seq(new GRef(compiler._ws), body));
        return compiler._b.Build(root);
    }

    /// <summary>The grammar of any JSON object (OpenAI's json_object).</summary>
    public static ByteGrammar AnyObject(bool whitespace = true)
    {
        var compiler = new JsonSchemaGrammar(new JsonObject(), "json_object", whitespace);
        int root = compiler._b.Add("root", GExpr.Seq(new GRef(compiler._ws), compiler.AnyObjectExpr()));
        return compiler._b.Build(root);
    }

    private StructuredOutputException Error(string path, string message) => new($"{_what} at {path}: {message}", path);

    private GExpr Ws => new GRef(_ws);

    private GExpr Schema(JsonNode? node, string path)
    {
        switch (node)
        {
            case JsonValue v when v.GetValueKind() == JsonValueKind.True: return new GRef(_value);
            case JsonValue v when v.GetValueKind() == JsonValueKind.False: throw Error(path, "the schema false allows no value");
            case JsonObject o: return ObjectSchema(o, path);
            default: throw Error(path, $"expected a schema (an object or a boolean), found {Describe(node)}");
        }
    }

    private GExpr ObjectSchema(JsonObject s, string path)
    {
        var unsupported = s.Select(p => p.Key).Where(k => !Supported.Contains(k) && !Annotations.Contains(k)).ToArray();
        if (unsupported.Length > 0)
            throw Error(path, $"unsupported keyword{(unsupported.Length > 1 ? "s" : "")} {string.Join(", ", unsupported.Select(k => $"'{k}'"))} (supported: {string.Join(", ", Supported)})");
        string[] constraints = [.. s.Select(p => p.Key).Where(Supported.Contains)];

        if (s["$ref"] is { } refNode)
        {
            RefuseSiblings(s, path, "$ref", constraints);
            return new GRef(Reference(refNode, path));
        }
        if (s["allOf"] is { } allOf)
        {
            RefuseSiblings(s, path, "allOf", constraints);
            if (allOf is not JsonArray { Count: 1 } single) throw Error(path + "/allOf", "only allOf with a single schema is supported");
            return Schema(single[0], path + "/allOf/0");
        }
        foreach (string key in (string[])["anyOf", "oneOf"])
            if (s[key] is { } branches)
            {
                RefuseSiblings(s, path, key, constraints);
                if (branches is not JsonArray { Count: > 0 } list) throw Error($"{path}/{key}", $"expected a non-empty array of schemas, found {Describe(branches)}");
                return GExpr.Alt([.. list.Select((b, i) => Schema(b, $"{path}/{key}/{i}"))]);
            }
        if (s["const"] is var constant && s.ContainsKey("const"))
        {
            RefuseSiblings(s, path, "const", constraints, "type");
            return Literal(constant, path + "/const");
        }
        if (s["enum"] is { } enumNode)
        {
            RefuseSiblings(s, path, "enum", constraints, "type");
            if (enumNode is not JsonArray { Count: > 0 } values) throw Error(path + "/enum", $"expected a non-empty array, found {Describe(enumNode)}");
            return GExpr.Alt([.. values.Select((v, i) => Literal(v, $"{path}/enum/{i}"))]);
        }

        var types = Types(s, path);
        return GExpr.Alt([.. types.Select(t => Typed(s, t, path))]);
    }

    private void RefuseSiblings(JsonObject s, string path, string keyword, string[] constraints, params string[] allowed)
    {
        var others = constraints.Where(k => k != keyword && !allowed.Contains(k)).ToArray();
        if (others.Length > 0)
            throw Error(path, $"'{keyword}' together with {string.Join(", ", others.Select(k => $"'{k}'"))} is not supported; move them into the {keyword} branches");
    }

    private string[] Types(JsonObject s, string path)
    {
        switch (s["type"])
        {
            case null:
                if (s.ContainsKey("properties") || s.ContainsKey("additionalProperties") || s.ContainsKey("required")) return ["object"];
                if (s.ContainsKey("items") || s.ContainsKey("minItems") || s.ContainsKey("maxItems")) return ["array"];
                if (s.ContainsKey("minLength") || s.ContainsKey("maxLength") || s.ContainsKey("pattern") || s.ContainsKey("format")) return ["string"];
                if (s.ContainsKey("minimum") || s.ContainsKey("maximum") || s.ContainsKey("exclusiveMinimum") || s.ContainsKey("exclusiveMaximum")) return ["number"];
                return ["any"];
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return [CheckType(v.GetValue<string>(), path + "/type")];
            case JsonArray { Count: > 0 } list:
                return [.. list.Select((t, i) => t is JsonValue tv && tv.GetValueKind() == JsonValueKind.String ? CheckType(tv.GetValue<string>(), $"{path}/type/{i}")
                    : throw Error($"{path}/type/{i}", $"expected a type name, found {Describe(t)}"))];
            case var other:
                throw Error(path + "/type", $"expected a type name or a non-empty list of them, found {Describe(other)}");
        }
    }

    private string CheckType(string type, string path) => type is "string" or "number" or "integer" or "boolean" or "null" or "object" or "array"
        ? type : throw Error(path, $"unknown type '{type}' (expected string, number, integer, boolean, null, object or array)");

    private GExpr Typed(JsonObject s, string type, string path) => type switch
    {
        "any" => new GRef(_value),
        "string" => StringSchema(s, path),
        "integer" => IntegerSchema(s, path),
        "number" => NumberSchema(s, path),
        "boolean" => GExpr.Alt(GExpr.Literal("true"), GExpr.Literal("false")),
        "null" => GExpr.Literal("null"),
        "object" => ObjectTyped(s, path),
        "array" => ArraySchema(s, path),
        _ => throw new InvalidOperationException(type),
    };

    // ---- references

    private int Reference(JsonNode refNode, string path)
    {
        if (refNode is not JsonValue v || v.GetValueKind() != JsonValueKind.String) throw Error(path + "/$ref", $"expected a string, found {Describe(refNode)}");
        string target = v.GetValue<string>();
        if (_refRules.TryGetValue(target, out int rule)) return rule;
        if (!target.StartsWith('#')) throw Error(path + "/$ref", $"only references inside the schema (starting with '#') are supported, found '{target}'");
        JsonNode? node = _root;
        foreach (string raw in target[1..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            string part = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
            node = node switch
            {
                JsonObject o when o.TryGetPropertyValue(part, out var child) => child,
                JsonArray a when int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < a.Count => a[i],
                _ => throw Error(path + "/$ref", $"the reference '{target}' points at nothing in the schema"),
            };
        }
        rule = _b.Declare("ref " + target);
        _refRules[target] = rule;
        _b.Define(rule, Schema(node, target));
        return rule;
    }

    // ---- literals (const, enum)

    private GExpr Literal(JsonNode? value, string path) => GExpr.Literal(Canonical(value));

    /// <summary>Compact JSON with raw UTF-8 in strings (only what JSON requires is escaped).</summary>
    private static string Canonical(JsonNode? value) => value switch
    {
        null => "null",
        JsonObject o => "{" + string.Join(",", o.Select(p => RegexGrammar.JsonQuote(p.Key) + ":" + Canonical(p.Value))) + "}",
        JsonArray a => "[" + string.Join(",", a.Select(Canonical)) + "]",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => RegexGrammar.JsonQuote(v.GetValue<string>()),
        _ => value.ToJsonString(),
    };

    // ---- strings

    private static GExpr AnyStringChar() => GExpr.Alt(
        GExpr.Chars(CodePointSet.Any().Minus(CodePointSet.Of((0, 0x1F), ('"', '"'), ('\\', '\\')))),
        GExpr.Seq(GExpr.Literal("\\"), GExpr.Alt(
            new GByte(ByteSetOf("\"\\/bfnrt")),
            GExpr.Seq(GExpr.Literal("u"), GExpr.Repeat(new GByte(ByteSetOf("0123456789abcdefABCDEF")), 4, 4)))));

    private static ByteSet ByteSetOf(string chars)
    {
        var set = new ByteSet();
        foreach (char c in chars) set = set.Union(ByteSet.Of((byte)c));
        return set;
    }

    /// <summary>Calendar dates (RFC 3339 full-date) with each month's length; 29 February is left out (it needs the year).</summary>
    private const string Date = @"[1-9]\d{3}-((0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)";

    /// <summary>As llama.cpp: integer parts and fractions of free numbers have at most 16 digits (a weak model may emit digits forever).</summary>
    private const int MaxDigits = 16;

    private GExpr StringSchema(JsonObject s, string path)
    {
        int? minLength = Count(s, "minLength", path), maxLength = Count(s, "maxLength", path);
        string? pattern = OptionalString(s, "pattern", path);
        string? format = OptionalString(s, "format", path);
        if ((pattern is not null || format is not null) && (minLength is not null || maxLength is not null))
            throw Error(path, "minLength/maxLength together with pattern or format is not supported; put the length in the pattern");
        if (pattern is not null && format is not null) throw Error(path, "pattern together with format is not supported");
        if (format is not null)
        {
            pattern = format switch
            {
                "date" => Date,
                "time" => @"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)",
                "date-time" => Date + @"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)",
                "uuid" => @"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                _ => throw Error(path + "/format", $"the format '{format}' is not supported (supported: date, time, date-time, uuid)"),
            };
        }
        GExpr content;
        if (pattern is not null)
        {
            string body = pattern;
            // JSON Schema's pattern is a search; generating a full match of it is valid (and what peers do).
            if (body.StartsWith('^')) body = body[1..];
            if (body.EndsWith('$') && !body.EndsWith("\\$")) body = body[..^1];
            content = RegexGrammar.Compile(body, jsonString: true, $"{_what} at {path}/{(format is null ? "pattern" : "format")}");
        }
        else
        {
            int min = minLength ?? 0, max = maxLength ?? -1;
            if (max >= 0 && max < min) throw Error(path, $"maxLength {max} is below minLength {min}");
            content = GExpr.Repeat(AnyStringChar(), min, max);
        }
        return GExpr.Seq(GExpr.Literal("\""), content, GExpr.Literal("\""));
    }

    // ---- numbers

    private static GExpr Digit() => new GByte(ByteSet.Range('0', '9'));
    private static GExpr Digit(int lo, int hi) => new GByte(ByteSet.Range('0' + lo, '0' + hi));

    private static GExpr NumberSyntax() => GExpr.Seq(
        GExpr.Optional(GExpr.Literal("-")),
        GExpr.Alt(GExpr.Literal("0"), GExpr.Seq(Digit(1, 9), GExpr.Repeat(Digit(), 0, MaxDigits - 1))),
        GExpr.Optional(GExpr.Seq(GExpr.Literal("."), GExpr.Repeat(Digit(), 1, MaxDigits))),
        GExpr.Optional(GExpr.Seq(new GByte(ByteSetOf("eE")), GExpr.Optional(new GByte(ByteSetOf("+-"))), GExpr.Repeat(Digit(), 1, 3))));

    private GExpr IntegerSchema(JsonObject s, string path)
    {
        BigInteger? lo = Bound(s, "minimum", path, integer: true, ceiling: true), hi = Bound(s, "maximum", path, integer: true, ceiling: false);
        if (Bound(s, "exclusiveMinimum", path, integer: true, ceiling: false) is { } xlo) lo = Max(lo, xlo + 1);
        if (Bound(s, "exclusiveMaximum", path, integer: true, ceiling: true) is { } xhi) hi = Min(hi, xhi - 1);
        if (lo is { } l && hi is { } h && l > h) throw Error(path, $"no integer lies between the minimum {l} and the maximum {h}");
        return IntegerRange(lo, hi);
    }

    private GExpr NumberSchema(JsonObject s, string path)
    {
        foreach (string key in (string[])["exclusiveMinimum", "exclusiveMaximum"])
            if (s.ContainsKey(key)) throw Error($"{path}/{key}", $"{key} is supported for integers only");
        var lo = Decimal(s, "minimum", path);
        var hi = Decimal(s, "maximum", path);
        if (lo is null && hi is null) return new GRef(_number);
        if (lo is { } l && hi is { } h && Compare(l, h) > 0) throw Error(path, "minimum is above maximum");
        // Bounded numbers: no exponent. Split by sign.
        var parts = new List<GExpr>();
        bool allowsNegative = lo is null || lo.Value.Negative;
        bool allowsNonNegative = hi is null || !hi.Value.Negative;
        if (allowsNonNegative)
            parts.Add(DecimalRange(lo is { Negative: false } pl ? pl : DecimalParts.Zero, hi));
        if (allowsNegative)
        {
            // -x with x in [max(0, -hi), -lo]
            var magnitudeLo = hi is { Negative: true } nh ? nh with { Negative = false } : DecimalParts.Zero;
            DecimalParts? magnitudeHi = lo is { } nl ? nl with { Negative = false } : null;
            parts.Add(GExpr.Seq(GExpr.Literal("-"), DecimalRange(magnitudeLo, magnitudeHi)));
        }
        return GExpr.Alt([.. parts]);
    }

    /// <summary>A decimal split into its integer part and its fraction digits (without trailing zeros).</summary>
    private readonly record struct DecimalParts(bool Negative, BigInteger Integer, string Fraction)
    {
        public static readonly DecimalParts Zero = new(false, 0, "");
    }

    private DecimalParts? Decimal(JsonObject s, string key, string path)
    {
        if (s[key] is not { } node) return null;
        if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.Number) throw Error($"{path}/{key}", $"expected a number, found {Describe(node)}");
        string text = node.ToJsonString();
        if (!decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out decimal value))
            throw Error($"{path}/{key}", $"the bound {text} is out of range");
        bool negative = value < 0;
        value = Math.Abs(value);
        string plain = value.ToString("0.############################", CultureInfo.InvariantCulture);
        int dot = plain.IndexOf('.');
        var integer = BigInteger.Parse(dot < 0 ? plain : plain[..dot], CultureInfo.InvariantCulture);
        string fraction = dot < 0 ? "" : plain[(dot + 1)..].TrimEnd('0');
        if (integer.IsZero && fraction.Length == 0) negative = false;
        return new DecimalParts(negative, integer, fraction);
    }

    private static int Compare(DecimalParts a, DecimalParts b)
    {
        if (a.Negative != b.Negative) return a.Negative ? -1 : 1;
        int magnitude = a.Integer != b.Integer ? a.Integer.CompareTo(b.Integer) : string.CompareOrdinal(a.Fraction, b.Fraction);
        return a.Negative ? -magnitude : magnitude;
    }

    /// <summary>Non-negative decimals (no exponent) x with lo ≤ x ≤ hi (hi null: no bound), lo and hi non-negative.</summary>
    private GExpr DecimalRange(DecimalParts lo, DecimalParts? hi)
    {
        var parts = new List<GExpr>();
        if (hi is { } h && h.Integer == lo.Integer)
        {
            parts.Add(GExpr.Seq(GExpr.Literal(lo.Integer.ToString(CultureInfo.InvariantCulture)), Fraction(lo.Fraction, h.Fraction)));
        }
        else
        {
            parts.Add(GExpr.Seq(GExpr.Literal(lo.Integer.ToString(CultureInfo.InvariantCulture)), Fraction(lo.Fraction, null)));
            BigInteger? middleHi = hi is { } h2 ? h2.Integer - 1 : null;
            if (middleHi is null || middleHi >= lo.Integer + 1)
                parts.Add(GExpr.Seq(NonNegativeIntegers(lo.Integer + 1, middleHi), Fraction("", null)));
            if (hi is { } h3) parts.Add(GExpr.Seq(GExpr.Literal(h3.Integer.ToString(CultureInfo.InvariantCulture)), Fraction("", h3.Fraction)));
        }
        return GExpr.Alt([.. parts]);
    }

    /// <summary>
    /// An optional fraction ".ddd" whose digits D satisfy lo ≤ D ≤ hi as decimal fractions (digit strings compared
    /// with missing digits as zeros); lo "" is 0, hi null is no bound (1 exclusive).
    /// </summary>
    private static GExpr Fraction(string lo, string? hi)
    {
        // No fraction at all stands for .0: allowed when lo is 0.
        var withDigits = GExpr.Seq(GExpr.Literal("."), FractionDigits(lo, hi, 0, nonEmpty: true));
        return lo.Length == 0 ? GExpr.Alt(GExpr.Empty, withDigits) : withDigits;
    }

    /// <summary>Digit strings d (from position i of both bounds on) with lo[i..] ≤ d ≤ hi[i..] (hi null: no upper bound).</summary>
    private static GExpr FractionDigits(string lo, string? hi, int i, bool nonEmpty)
    {
        string loRest = i < lo.Length ? lo[i..] : "";
        string? hiRest = hi is null ? null : i < hi.Length ? hi[i..] : "";
        if (loRest.Length == 0 && hiRest is null) return GExpr.Repeat(Digit(), nonEmpty ? 1 : 0, MaxDigits);
        var alternatives = new List<GExpr>();
        // Ending here means the remaining digits are zeros: ≥ loRest only if loRest is empty; ≤ hiRest always.
        if (!nonEmpty && loRest.Length == 0) alternatives.Add(GExpr.Empty);
        int a = loRest.Length > 0 ? loRest[0] - '0' : 0;
        int b = hiRest is null ? 9 : hiRest.Length > 0 ? hiRest[0] - '0' : 0;
        if (hiRest is { Length: 0 })
        {
            // Upper bound reached: only zeros may follow.
            if (loRest.Length > 0) throw new InvalidOperationException("the fraction's lower bound is above its upper bound");
            return GExpr.Repeat(GExpr.Literal("0"), nonEmpty ? 1 : 0, MaxDigits);
        }
        if (a + 1 <= b - 1) alternatives.Add(GExpr.Seq(Digit(a + 1, b - 1), GExpr.Repeat(Digit(), 0, MaxDigits)));
        if (a == b) alternatives.Add(GExpr.Seq(Digit(a, a), FractionDigits(lo, hi, i + 1, nonEmpty: false)));
        else
        {
            alternatives.Add(GExpr.Seq(Digit(a, a), FractionDigits(lo, null, i + 1, nonEmpty: false)));
            alternatives.Add(GExpr.Seq(Digit(b, b), FractionDigits("", hi, i + 1, nonEmpty: false)));
        }
        return GExpr.Alt([.. alternatives]);
    }

    private BigInteger? Bound(JsonObject s, string key, string path, bool integer, bool ceiling)
    {
        var d = Decimal(s, key, path);
        if (d is not { } v) return null;
        BigInteger whole = v.Negative ? -v.Integer : v.Integer;
        if (v.Fraction.Length > 0)
        {
            // A fractional bound on an integer: round inward.
            if (v.Negative) whole = ceiling ? whole : whole - 1;
            else whole = ceiling ? whole + 1 : whole;
        }
        return whole;
    }

    private static BigInteger? Max(BigInteger? a, BigInteger b) => a is { } x && x > b ? x : b;
    private static BigInteger? Min(BigInteger? a, BigInteger b) => a is { } x && x < b ? x : b;

    /// <summary>Integers in [lo, hi] (null: unbounded) written without leading zeros or "-0".</summary>
    private static GExpr IntegerRange(BigInteger? lo, BigInteger? hi)
    {
        var parts = new List<GExpr>();
        if (hi is null || hi >= 0) parts.Add(NonNegativeIntegers(lo is { } l && l > 0 ? l : 0, hi));
        if (lo is null || lo < 0)
        {
            BigInteger magnitudeLo = hi is { } h && h < 0 ? -h : 1;
            BigInteger? magnitudeHi = lo is { } l2 ? -l2 : null;
            parts.Add(GExpr.Seq(GExpr.Literal("-"), NonNegativeIntegers(magnitudeLo, magnitudeHi)));
        }
        return GExpr.Alt([.. parts]);
    }

    /// <summary>Non-negative integers in [lo, hi] (hi null: no bound), in decimal without leading zeros.</summary>
    private static GExpr NonNegativeIntegers(BigInteger lo, BigInteger? hi)
    {
        var parts = new List<GExpr>();
        int loLength = lo.ToString(CultureInfo.InvariantCulture).Length;
        int hiLength = hi is { } h ? h.ToString(CultureInfo.InvariantCulture).Length : loLength;
        for (int length = loLength; length <= hiLength; length++)
        {
            BigInteger first = length == 1 ? 0 : BigInteger.Pow(10, length - 1), last = BigInteger.Pow(10, length) - 1;
            BigInteger a = BigInteger.Max(lo, first), b = hi is { } hb ? BigInteger.Min(hb, last) : last;
            if (a <= b) parts.Add(SameLength(a.ToString(CultureInfo.InvariantCulture), b.ToString(CultureInfo.InvariantCulture), 0));
        }
        if (hi is null && loLength < MaxDigits) parts.Add(GExpr.Seq(Digit(1, 9), GExpr.Repeat(Digit(), loLength, MaxDigits - 1)));
        return GExpr.Alt([.. parts]);
    }

    /// <summary>Digit strings of the same length as a and b, between them (inclusive), from position i on.</summary>
    private static GExpr SameLength(string a, string b, int i)
    {
        if (i == a.Length) return GExpr.Empty;
        // Every digit string from here on: one repeat. Without this shortcut the two open ends below ("000…" to
        // b, a to "999…") each recurse into "000…" to "999…", which branches twice per digit: a 19-digit bound
        // built 2^19 alternatives (found by the structured-output fuzz target; it took the compile past 10 s).
        if (a.AsSpan(i).IndexOfAnyExcept('0') < 0 && b.AsSpan(i).IndexOfAnyExcept('9') < 0)
            return GExpr.Repeat(Digit(), a.Length - i, a.Length - i);
        int x = a[i] - '0', y = b[i] - '0';
        if (x == y) return GExpr.Seq(Digit(x, x), SameLength(a, b, i + 1));
        int rest = a.Length - i - 1;
        var parts = new List<GExpr>
        {
            GExpr.Seq(Digit(x, x), SameLength(a, new string('9', a.Length), i + 1)),
        };
        if (x + 1 <= y - 1) parts.Add(GExpr.Seq(Digit(x + 1, y - 1), GExpr.Repeat(Digit(), rest, rest)));
        parts.Add(GExpr.Seq(Digit(y, y), SameLength(new string('0', a.Length), b, i + 1)));
        return GExpr.Alt([.. parts]);
    }

    // ---- objects

    private GExpr ObjectTyped(JsonObject s, string path)
    {
        var properties = s["properties"] switch
        {
            null => [],
            JsonObject p => p.Select(kv => (Name: kv.Key, Schema: kv.Value)).ToList(),
            var other => throw Error(path + "/properties", $"expected an object of schemas, found {Describe(other)}"),
        };
        var required = new HashSet<string>(StringComparer.Ordinal);
        if (s["required"] is { } requiredNode)
        {
            if (requiredNode is not JsonArray list) throw Error(path + "/required", $"expected an array of property names, found {Describe(requiredNode)}");
            foreach (var (item, i) in list.Select((x, i) => (x, i)))
            {
                string name = item is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Error($"{path}/required/{i}", $"expected a property name, found {Describe(item)}");
                if (!properties.Any(p => p.Name == name))
                {
                    if (s["additionalProperties"] is JsonValue ap && ap.GetValueKind() == JsonValueKind.False || s["properties"] is not null && s["additionalProperties"] is null)
                        throw Error($"{path}/required/{i}", $"the required property '{name}' is not among the properties, and no others are allowed");
                    properties.Add((name, JsonValue.Create(true)));
                }
                required.Add(name);
            }
        }
        // Other properties: additionalProperties when given; when absent, allowed only if no properties are listed.
        GExpr? extraValue = s["additionalProperties"] switch
        {
            null => properties.Count == 0 ? new GRef(_value) : null,
            JsonValue v when v.GetValueKind() == JsonValueKind.False => null,
            var schema => Schema(schema, path + "/additionalProperties"),
        };

        int n = properties.Count;
        // Chain from the last property back: rest[i, first] = properties i.. when none (first) or some came before.
        var extraPair = extraValue is null ? null : GExpr.Seq(new GRef(_string), Ws, GExpr.Literal(":"), Ws, extraValue);
        GExpr Comma() => GExpr.Seq(Ws, GExpr.Literal(","), Ws);
        GExpr restFirst = extraPair is null ? GExpr.Empty : GExpr.Optional(GExpr.Seq(extraPair, GExpr.Star(GExpr.Seq(Comma(), extraPair))));
        GExpr restLater = extraPair is null ? GExpr.Empty : GExpr.Star(GExpr.Seq(Comma(), extraPair));
        int nextFirst = _b.Add($"{path} rest first", restFirst), nextLater = _b.Add($"{path} rest later", restLater);
        for (int i = n - 1; i >= 0; i--)
        {
            var (name, schema) = properties[i];
            var pair = GExpr.Seq(GExpr.Literal(RegexGrammar.JsonQuote(name)), Ws, GExpr.Literal(":"), Ws, Schema(schema, $"{path}/properties/{Pointer(name)}"));
            bool isRequired = required.Contains(name);
            var later = GExpr.Seq(Comma(), pair, new GRef(nextLater));
            var first = GExpr.Seq(pair, new GRef(nextLater));
            int ruleLater = _b.Add($"{path} from {name} later", isRequired ? later : GExpr.Alt(later, new GRef(nextLater)));
            int ruleFirst = _b.Add($"{path} from {name} first", isRequired ? first : GExpr.Alt(first, new GRef(nextFirst)));
            nextFirst = ruleFirst;
            nextLater = ruleLater;
        }
        return GExpr.Seq(GExpr.Literal("{"), Ws, new GRef(nextFirst), Ws, GExpr.Literal("}"));
    }

    private static string Pointer(string name) => name.Replace("~", "~0").Replace("/", "~1");

    private GExpr AnyObjectExpr()
    {
        var pair = GExpr.Seq(new GRef(_string), Ws, GExpr.Literal(":"), Ws, new GRef(_value));
        return GExpr.Seq(GExpr.Literal("{"), Ws, GExpr.Optional(GExpr.Seq(pair, GExpr.Star(GExpr.Seq(Ws, GExpr.Literal(","), Ws, pair)))), Ws, GExpr.Literal("}"));
    }

    private GExpr AnyValue()
    {
        var array = GExpr.Seq(GExpr.Literal("["), Ws, GExpr.Optional(GExpr.Seq(new GRef(_value), GExpr.Star(GExpr.Seq(Ws, GExpr.Literal(","), Ws, new GRef(_value))))), Ws, GExpr.Literal("]"));
        return GExpr.Alt(AnyObjectExpr(), array, new GRef(_string), new GRef(_number), GExpr.Literal("true"), GExpr.Literal("false"), GExpr.Literal("null"));
    }

    // ---- arrays

    private GExpr ArraySchema(JsonObject s, string path)
    {
        int min = Count(s, "minItems", path) ?? 0;
        int? max = Count(s, "maxItems", path);
        if (max is { } m && m < min) throw Error(path, $"maxItems {m} is below minItems {min}");
        var item = s["items"] is { } items ? Schema(items, path + "/items") : new GRef(_value);
        int itemRule = _b.Add($"{path}/items", item);
        var one = new GRef(itemRule);
        var next = GExpr.Seq(Ws, GExpr.Literal(","), Ws, one);
        GExpr body;
        if (max == 0) body = GExpr.Empty;
        else
        {
            var nonEmpty = GExpr.Seq(one, GExpr.Repeat(next, Math.Max(0, min - 1), max is { } mx ? mx - 1 : -1));
            body = min == 0 ? GExpr.Optional(nonEmpty) : nonEmpty;
        }
        return GExpr.Seq(GExpr.Literal("["), Ws, body, Ws, GExpr.Literal("]"));
    }

    // ---- fields

    private int? Count(JsonObject s, string key, string path)
    {
        if (s[key] is not { } node) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number
            && double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d >= 0 && d == Math.Floor(d) && d <= 100_000)
            return (int)d;
        throw Error($"{path}/{key}", $"expected a non-negative integer (at most 100000), found {Describe(node)}");
    }

    private string? OptionalString(JsonObject s, string key, string path)
    {
        if (s[key] is not { } node) return null;
        return node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Error($"{path}/{key}", $"expected a string, found {Describe(node)}");
    }

    private static string Describe(JsonNode? node)
    {
        string text = node?.ToJsonString() ?? "null";
        return text.Length <= 60 ? text : text[..57] + "...";
    }
}

using System.Text;
using System.Text.Json.Nodes;
using Alora.Structured;
using Xunit;

namespace Alora.Tests.Structured;

/// <summary>The byte-level grammars of each constraint kind, run on whole strings (no tokenizer).</summary>
public class GrammarTests
{
    internal static bool Matches(OutputConstraint constraint, string text)
    {
        var automaton = new GrammarAutomaton(ConstraintGrammar.Build(constraint));
        int state = automaton.Advance(automaton.Initial, Encoding.UTF8.GetBytes(text));
        return state != GrammarAutomaton.Dead && automaton.IsAccepting(state);
    }

    private static bool Prefix(OutputConstraint constraint, string text)
    {
        var automaton = new GrammarAutomaton(ConstraintGrammar.Build(constraint));
        return automaton.Advance(automaton.Initial, Encoding.UTF8.GetBytes(text)) != GrammarAutomaton.Dead;
    }

    [Theory]
    [InlineData("abc", "abc", true)]
    [InlineData("abc", "abcd", false)]
    [InlineData("a|bc", "bc", true)]
    [InlineData("[a-c]+x?", "abcabcx", true)]
    [InlineData("[a-c]+x?", "x", false)]
    [InlineData(@"\d{3}-\d{2,}", "123-45678", true)]
    [InlineData(@"\d{3}-\d{2,}", "123-4", false)]
    [InlineData(@"(?:ab){2}", "abab", true)]
    [InlineData(@"(?<name>x|y)z", "yz", true)]
    [InlineData(@"[^a]", "é", true)]
    [InlineData(@"[^a]", "a", false)]
    [InlineData(@".", "\n", false)]
    [InlineData(@"^yes|no$", "no", true)]
    [InlineData(@"\w+\s\W", "ab_9 !", true)]
    [InlineData(@"[\u00e0-\u00ff]{2}", "éü", true)]
    [InlineData(@"😀+", "😀😀", true)]
    public void Regex_matches_whole_strings(string pattern, string text, bool expected)
        => Assert.Equal(expected, Matches(OutputConstraint.Regex(pattern), text));

    [Theory]
    [InlineData(@"(?=a)a", "lookaround")]
    [InlineData(@"(a)\1", "backreferences")]
    [InlineData(@"\bword", "anchor")]
    [InlineData(@"\p{L}", "Unicode properties")]
    [InlineData(@"(ab", "missing ')'")]
    [InlineData(@"a{3,1}", "maximum below its minimum")]
    public void Regex_refuses_what_it_cannot_do_by_name(string pattern, string named)
    {
        var e = Assert.Throws<StructuredOutputException>(() => Matches(OutputConstraint.Regex(pattern), "a"));
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void Gbnf_grammar_with_rules_repetition_and_classes()
    {
        const string gbnf = """
            # a list of small arithmetic expressions
            root ::= expr ("," expr){0,2}
            expr ::= term (("+" | "-") term)*
            term ::= [0-9]+ | "(" expr ")"
            """;
        var c = OutputConstraint.Grammar(gbnf);
        Assert.True(Matches(c, "1+2"));
        Assert.True(Matches(c, "(1+2)-3,4,5"));
        Assert.False(Matches(c, "1,2,3,4"));
        Assert.False(Matches(c, "1+"));
        Assert.True(Prefix(c, "(1+"));
    }

    [Fact]
    public void Gbnf_errors_name_the_rule_or_place()
    {
        Assert.Contains("'expr' is used but never defined", Assert.Throws<StructuredOutputException>(() => Matches(OutputConstraint.Grammar("root ::= expr"), "")).Message);
        Assert.Contains("no 'root' rule", Assert.Throws<StructuredOutputException>(() => Matches(OutputConstraint.Grammar("start ::= \"a\""), "a")).Message);
        Assert.Contains("left-recursive", Assert.Throws<StructuredOutputException>(() => Matches(OutputConstraint.Grammar("root ::= root \"a\" | \"a\""), "a")).Message);
        Assert.Contains("line 2", Assert.Throws<StructuredOutputException>(() => Matches(OutputConstraint.Grammar("root ::= \"a\"\nx ::= [b"), "a")).Message);
    }

    [Fact]
    public void Choice_matches_exactly_one_choice()
    {
        var c = OutputConstraint.Choice(["yes", "no", "yesterday"]);
        Assert.True(Matches(c, "yes"));
        Assert.True(Matches(c, "yesterday"));
        Assert.False(Matches(c, "ye"));
        Assert.False(Matches(c, "no!"));
    }

    [Theory]
    [InlineData("""{"type":"integer","minimum":-15,"maximum":130}""", new[] { "-15", "-9", "0", "7", "99", "130", "100" }, new[] { "-16", "131", "-0", "007", "1000", "1.5" })]
    [InlineData("""{"type":"integer","exclusiveMinimum":0}""", new[] { "1", "1234567890123456" }, new[] { "0", "-1", "12345678901234567" })]
    [InlineData("""{"type":"string","format":"date"}""", new[] { "\"2024-01-31\"", "\"1999-04-30\"", "\"2000-02-28\"" }, new[] { "\"2024-04-31\"", "\"2024-02-30\"", "\"2024-13-01\"" })]
    [InlineData("""{"type":"number","minimum":-1.25,"maximum":3.5}""", new[] { "-1.25", "-1.2", "-1", "0", "0.0001", "3", "3.5", "3.50", "2.999" }, new[] { "-1.26", "-1.3", "3.51", "4", "1e2" })]
    [InlineData("""{"type":"number","minimum":0.5}""", new[] { "0.5", "0.51", "1", "123.25" }, new[] { "0.49", "0", "-1" })]
    [InlineData("""{"type":"string","minLength":2,"maxLength":3}""", new[] { "\"ab\"", "\"a\\nb\"", "\"日本語\"" }, new[] { "\"a\"", "\"abcd\"", "\"a\nb\"" })]
    [InlineData("""{"type":"string","pattern":"^[A-Z]{2}\\d$"}""", new[] { "\"AB1\"" }, new[] { "\"AB\"", "\"ab1\"" })]
    [InlineData("""{"type":"string","pattern":"a\"b\\\\c"}""", new[] { "\"a\\\"b\\\\c\"" }, new[] { "\"a\"b\\c\"" })]
    [InlineData("""{"enum":["red","green",1,null]}""", new[] { "\"red\"", "1", "null" }, new[] { "\"blue\"", "2" })]
    [InlineData("""{"const":{"a":[1,"x"]}}""", new[] { """{"a":[1,"x"]}""" }, new[] { """{"a":[1]}""" })]
    [InlineData("""{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}""", new[] { "[true]", "[ true , false ]" }, new[] { "[]", "[true,true,true]" })]
    [InlineData("""{"type":["string","null"]}""", new[] { "null", "\"x\"" }, new[] { "1" })]
    [InlineData("""{"anyOf":[{"type":"integer"},{"type":"boolean"}]}""", new[] { "3", "false" }, new[] { "\"3\"" })]
    public void Json_schema_keywords(string schema, string[] valid, string[] invalid)
    {
        var c = OutputConstraint.JsonSchema(JsonNode.Parse(schema)!);
        foreach (var text in valid) Assert.True(Matches(c, text), $"{schema} should accept {text}");
        foreach (var text in invalid) Assert.False(Matches(c, text), $"{schema} should refuse {text}");
    }

    [Fact]
    public void Json_schema_objects_keep_property_order_and_optional_properties()
    {
        var c = OutputConstraint.JsonSchema(JsonNode.Parse("""
            {"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"],"additionalProperties":false}
            """)!);
        Assert.True(Matches(c, """{"b":"x"}"""));
        Assert.True(Matches(c, """{"a":1,"b":"x"}"""));
        Assert.True(Matches(c, """{"a": 1, "b": "x", "c": true}"""));
        Assert.True(Matches(c, "{\n  \"b\": \"x\",\n  \"c\": false\n}"));
        Assert.False(Matches(c, """{"a":1}"""));
        Assert.False(Matches(c, """{"b":"x","a":1}"""));
        Assert.False(Matches(c, """{"b":"x","d":1}"""));
        Assert.False(Matches(c, """{,"b":"x"}"""));
    }

    [Fact]
    public void Json_schema_refs_recursion_and_defs()
    {
        var c = OutputConstraint.JsonSchema(JsonNode.Parse("""
            {"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],"additionalProperties":false}}}
            """)!);
        Assert.True(Matches(c, """{"v":1,"next":{"v":2,"next":null}}"""));
        Assert.False(Matches(c, """{"v":1,"next":{"v":2}}"""));
    }

    [Fact]
    public void Json_object_accepts_any_object()
    {
        var c = OutputConstraint.JsonObject();
        Assert.True(Matches(c, """{"a":[1,2,{"b":null}],"c":"\u00e9"}"""));
        Assert.True(Matches(c, "{}"));
        Assert.False(Matches(c, "[1]"));
        Assert.False(Matches(c, """{"a":}"""));
    }

    [Theory]
    [InlineData("""{"type":"string","format":"email"}""", "'email' is not supported")]
    [InlineData("""{"type":"object","minProperties":1}""", "'minProperties'")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","contentEncoding":"base64","patternProperties":{}}}}""", "#/properties/a")]
    [InlineData("""{"not":{"type":"string"}}""", "'not'")]
    [InlineData("""{"type":"strin"}""", "unknown type 'strin'")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "points at nothing")]
    [InlineData("""{"type":"integer","minimum":5,"maximum":4}""", "no integer lies between")]
    public void Json_schema_refuses_unsupported_keywords_by_name(string schema, string named)
    {
        var e = Assert.Throws<StructuredOutputException>(() => ConstraintGrammar.Build(OutputConstraint.JsonSchema(JsonNode.Parse(schema)!)));
        Assert.Contains(named, e.Message);
    }
}

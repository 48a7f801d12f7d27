using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;

namespace Alora.Tests.Templates;

/// <summary>JSON input becomes Python values the way json.loads makes them, whether the JsonObject was
/// parsed from text or built in code.</summary>
public class TemplateValueTests
{
    private static string Render(string source, JsonObject variables) => ChatTemplate.Parse(source).Render(variables);

    [Fact]
    public void Parsed_json_numbers_keep_python_int_and_float_types()
    {
        var variables = JsonNode.Parse("""{"v": {"a": 1.0, "b": 1, "c": 1e5, "d": -0, "e": 2.5e-7, "f": 10000000000000000.0}}""")!.AsObject();
        Assert.Equal("1.0 1 100000.0 0 2.5e-07 1e+16", Render("{{ v.a }} {{ v.b }} {{ v.c }} {{ v.d }} {{ v.e }} {{ v.f }}", variables));
        Assert.Equal("""{"a": 1.0, "b": 1, "c": 100000.0, "d": 0, "e": 2.5e-07, "f": 1e+16}""", Render("{{ v | tojson }}", variables));
        Assert.Equal("float integer", Render("{{ 'float' if v.a is float }} {{ 'integer' if v.b is integer }}", variables));
    }

    [Fact]
    public void Values_built_in_code_convert_like_parsed_ones()
    {
        var variables = new JsonObject
        {
            ["i"] = 7,
            ["l"] = 1L << 40,
            ["d"] = 0.5,
            ["s"] = "it's",
            ["b"] = true,
            ["n"] = null,
            ["list"] = new JsonArray(1, "x", null, false),
            ["m"] = new JsonObject { ["k"] = 1.5f },
        };
        Assert.Equal("7 1099511627776 0.5 it's True None [1, 'x', None, False] {'k': 1.5}",
            Render("{{ i }} {{ l }} {{ d }} {{ s }} {{ b }} {{ n }} {{ list }} {{ m }}", variables));
    }

    [Fact]
    public void Missing_keys_are_undefined_but_null_is_none()
    {
        var variables = JsonNode.Parse("""{"m": {"content": null}}""")!.AsObject();
        Assert.Equal("True False|False True", Render(
            "{{ m.content is none }} {{ m.content is undefined }}|{{ m.other is none }} {{ m.other is undefined }}", variables));
    }
}

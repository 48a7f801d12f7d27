using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;

namespace Alora.Tests.Templates;

/// <summary>Bad templates fail with the line and column of the problem; runtime failures name what failed.</summary>
public class TemplateErrorTests
{
    private static TemplateSyntaxException SyntaxError(string source)
        => Assert.Throws<TemplateSyntaxException>(() => ChatTemplate.Parse(source, "test.jinja"));

    [Theory]
    [InlineData("{% if x %}\nno end", 1, 1, "'if' block opened here was never closed")]
    [InlineData("line one\n  {% for m in messages %}{{ m }}", 2, 3, "'for' block opened here was never closed")]
    [InlineData("ok\n{{ 1 + }}", 2, 8, "expected an expression")]
    [InlineData("a\nb\n   {{ x | no_such_filter }}", 3, 11, "No filter named 'no_such_filter'.")]
    [InlineData("{{ x is no_such_test }}", 1, 9, "No test named 'no_such_test'.")]
    [InlineData("{% if x %}{% for i in y %}{{ i | nope }}{% endfor %}{% endif %}", 1, 34, "No filter named 'nope'.")]
    [InlineData("{% endif %}", 1, 4, "unexpected 'endif'")]
    [InlineData("{% for x in y %}{% endif %}", 1, 20, "unexpected 'endif'")]
    [InlineData("x\n{% frobnicate %}", 2, 4, "unknown tag 'frobnicate'")]
    [InlineData("{{ 'unterminated }}", 1, 4, "unterminated string literal")]
    [InlineData("{{ (1, 2 }}", 1, 10, "unexpected '}'")]
    [InlineData("{{ x }", 1, 6, "unexpected '}'")]
    [InlineData("{{ x ", 1, 1, "expected '}}' to close the tag")]
    [InlineData("{# never closed", 1, 1, "missing end of comment tag")]
    [InlineData("{% break %}", 1, 4, "'break' outside of a for loop")]
    [InlineData("{% set = 1 %}", 1, 8, "expected a name after 'set'")]
    [InlineData("{% include 'x.jinja' %}", 1, 4, "'include' tag is not supported")]
    [InlineData("{{ x @ y }}", 1, 6, "unexpected character '@'")]
    public void Syntax_errors_report_line_and_column(string source, int line, int column, string fragment)
    {
        var error = SyntaxError(source);
        Assert.Equal(line, error.Line);
        Assert.Equal(column, error.Column);
        Assert.Contains(fragment, error.Message, StringComparison.Ordinal);
        Assert.Contains($"line {line}, column {column}", error.Message, StringComparison.Ordinal);
        Assert.Contains("test.jinja", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_filter_error_names_the_filter()
    {
        var error = SyntaxError("{{ messages | frobnicate(2) }}");
        Assert.Contains("'frobnicate'", error.Message, StringComparison.Ordinal);
        Assert.Equal((1, 15), (error.Line, error.Column));
    }

    [Fact]
    public void Unknown_filter_inside_an_if_fails_only_when_reached_as_in_jinja2()
    {
        var template = ChatTemplate.Parse("{% if use %}{{ args | from_json }}{% endif %}{{ 'a' | nope if use else 'b' }}");
        Assert.Equal("b", template.Render(new JsonObject { ["use"] = false }));
        var error = Assert.ThrowsAny<TemplateException>(() => template.Render(new JsonObject { ["use"] = true, ["args"] = "{}" }));
        Assert.Contains("No filter named 'from_json' found.", error.Message, StringComparison.Ordinal);
        Assert.Equal((1, 23), (error.Line, error.Column));
    }

    [Fact]
    public void Raise_exception_surfaces_the_template_message_exactly()
    {
        var template = ChatTemplate.Parse(
            "{% for m in messages %}\n{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('Unsupported role: ' + m.role) }}{% endif %}{% endfor %}");
        var variables = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "robot", ["content"] = "x" }) };
        var error = Assert.Throws<TemplateRaisedException>(() => template.Render(variables));
        Assert.Equal("Unsupported role: robot", error.Message);
        Assert.IsAssignableFrom<TemplateException>(error);
    }

    [Fact]
    public void Raise_exception_inside_a_macro_inside_a_filter_keeps_its_message()
    {
        var template = ChatTemplate.Parse("{% macro fail() %}{{ raise_exception('from macro') }}{% endmacro %}{{ fail() | trim }}");
        var error = Assert.Throws<TemplateRaisedException>(() => template.Render([]));
        Assert.Equal("from macro", error.Message);
    }

    [Theory]
    [InlineData("{{ x.y }}", "'x' is undefined", 1, 5)]
    [InlineData("\n\n  {{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str", 3, 10)]
    [InlineData("{{ messages[0].content + ' ' + messages[0].missing.deeper }}", "'dict object' has no attribute 'missing'", 1, 51)]
    [InlineData("{% for x in 5 %}{% endfor %}", "'int' object is not iterable", 1, 1)]
    [InlineData("{{ [1] | tojson }}{{ undefined_name | tojson }}", "Object of type Undefined is not JSON serializable", 1, 39)]
    [InlineData("{% set n = 3 %}{% set n.x = 1 %}", "not a namespace()", 1, 16)]
    [InlineData("{{ [].append(1) }}", "access to attribute 'append' of 'list' object is unsafe", 1, 13)]
    [InlineData("{{ 1 // 0 }}", "division or modulo by zero", 1, 6)]
    public void Runtime_errors_name_the_problem_and_position(string source, string fragment, int line, int column)
    {
        var variables = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) };
        var error = Assert.ThrowsAny<TemplateException>(() => ChatTemplate.Parse(source, "t.jinja").Render(variables));
        Assert.Contains(fragment, error.Message, StringComparison.Ordinal);
        Assert.Equal((line, column), (error.Line, error.Column));
    }

    [Fact]
    public void Generation_blocks_render_their_body_as_transformers_does()
    {
        var template = ChatTemplate.Parse("{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}");
        var variables = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["content"] = "a" }, new JsonObject { ["content"] = "b" }) };
        Assert.Equal("[a][b]", template.Render(variables));
    }

    [Fact]
    public void Strftime_now_uses_the_given_clock_and_python_codes()
    {
        var template = ChatTemplate.Parse("{{ strftime_now('%d %B %Y|%-d %b|%A %j|%H:%M') }}");
        var now = new DateTimeOffset(2024, 7, 4, 9, 5, 0, TimeSpan.FromHours(-5));
        Assert.Equal("04 July 2024|4 Jul|Thursday 186|09:05", template.Render([], now));
    }

    [Fact]
    public void Parsed_template_renders_repeatedly_with_independent_state()
    {
        var template = ChatTemplate.Parse("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}");
        var two = new JsonObject { ["messages"] = new JsonArray(1, 2) };
        var three = new JsonObject { ["messages"] = new JsonArray(1, 2, 3) };
        Assert.Equal("2", template.Render(two));
        Assert.Equal("3", template.Render(three));
        Assert.Equal("2", template.Render(two));
    }
}

using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;
using CsCheck;

namespace Alora.Tests.Fuzz;

/// <summary>
/// Properties of the template limits: any nesting depth, loop size, recursion or string growth either renders what
/// Jinja2 would or stops with a TemplateException that says which limit it hit; never a stack overflow, a hang or
/// an out-of-memory. Seeded, so a failure reproduces.
/// </summary>
public sealed class TemplateLimitTests
{
    private static string Render(string source) => ChatTemplate.Parse(source, "limits.jinja").Render(new JsonObject(), DateTimeOffset.UnixEpoch);

    private static void RendersOrNamesTheLimit(string source, string expected, string limitWords)
    {
        try
        {
            Assert.Equal(expected, Render(source));
        }
        catch (TemplateException e)
        {
            Assert.Contains(limitWords, e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void NestingOfAnyDepthParsesOrIsASyntaxErrorNamingTheLimit()
    {
        Seeded.ForEach(Gen.Int[1, 5000], 40, depth =>
        {
            RendersOrNamesTheLimit("{{ " + new string('(', depth) + "1" + new string(')', depth) + " }}", "1", "nest");
            RendersOrNamesTheLimit("{{ " + string.Concat(Enumerable.Repeat("[", depth)) + string.Concat(Enumerable.Repeat("]", depth)) + " | length }}", depth == 1 ? "0" : "1", "nest");
            RendersOrNamesTheLimit(string.Concat(Enumerable.Repeat("{% if 1 %}", depth)) + "x" + string.Concat(Enumerable.Repeat("{% endif %}", depth)), "x", "nest");
            RendersOrNamesTheLimit("{{ 1" + string.Concat(Enumerable.Repeat(" + 1", depth)) + " }}", (depth + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), "nest");
        });
        // Far past the limit the error is a syntax error with a position.
        var e = Assert.Throws<TemplateSyntaxException>(() => Render("{{ " + new string('(', 100_000) + "1" + new string(')', 100_000) + " }}"));
        Assert.Contains($"deeper than {TemplateLimits.MaxNesting} levels", e.Message);
        Assert.Contains("line 1", e.Message);
    }

    [Fact]
    public void LoopsRunUntilTheStepLimitAndNoFurther()
    {
        Seeded.ForEach(Gen.Int[1, 110].Select(Gen.Int[1, 110], Gen.Int[1, 110]), 8, sizes =>
        {
            var (a, b, c) = sizes;
            long steps = (long)a * b * c;
            string source = $"{{% set ns = namespace(n=0) %}}{{% for i in range({a}) %}}{{% for j in range({b}) %}}{{% for k in range({c}) %}}{{% set ns.n = ns.n + 1 %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}{{{{ ns.n }}}}";
            if (steps * 2 < TemplateLimits.MaxSteps) Assert.Equal(steps.ToString(System.Globalization.CultureInfo.InvariantCulture), Render(source));
            else RendersOrNamesTheLimit(source, steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "steps");
        });
    }

    [Fact]
    public void ContainersThatHoldThemselvesPrintAsPythonDoes()
    {
        // Found by afl-fuzz: {% set ns.n = ns, n, + 1 %} then {{ ns.n }} recursed in repr until the stack overflowed.
        Assert.Equal("[<Namespace {'n': [...]}>]", Render("{% set ns = namespace(n=0) %}{% set ns.n = [ns] %}{{ ns.n }}"));
        Assert.Equal("(<Namespace {'n': (...)}>, 1)", Render("{% set ns = namespace(n=0) %}{% set ns.n = ns, 1 %}{{ ns.n }}"));
        Assert.Equal("True", Render("{% set ns = namespace(n=0) %}{% set ns.n = [ns] %}{{ ns.n == ns.n }}"));
        RendersOrNamesTheLimit("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x | length }}{{ ns.x }}", "", "too deeply");
    }

    [Fact]
    public void RecursionStopsWithAClearError()
    {
        var e = Assert.Throws<TemplateException>(() => Render("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}"));
        Assert.Contains("recursed deeper than", e.Message);
        e = Assert.Throws<TemplateException>(() => Render("{% macro m(n) %}{{ m(n) ~ m(n) }}{% endmacro %}{{ m(1) }}"));
        Assert.Contains("recursed deeper than", e.Message);
    }

    [Theory]
    [InlineData("{{ 'x' * 1000000000 }}")]
    [InlineData("{{ ([1] * 100000000) | length }}")]
    [InlineData("{{ 'x' | center(1000000000) }}")]
    [InlineData("{{ 'x\ny' | indent(1000000000) }}")]
    [InlineData("{{ '%1000000000d' % 3 }}")]
    [InlineData("{{ '%.99999999e' % 1.5 }}")]
    [InlineData("{{ '{:.99999999f}'.format(1.5) }}")]
    [InlineData("{{ ('x' * 100000) | replace('x', 'xxxxxxxxxx' * 10000) | length }}")]
    [InlineData("{{ range(100000) | join('x' * 100000) | length }}")]
    [InlineData("{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}")]
    public void StringsAndListsStopGrowingAtTheLengthLimit(string source)
    {
        var e = Assert.Throws<TemplateException>(() => Render(source));
        Assert.Contains($"at most {TemplateLimits.MaxLength:N0} characters or items", e.Message);
    }
}

namespace Alora.Tokenization.Templates;

/// <summary>A test: <c>value is name(arguments)</c>.</summary>
internal delegate bool TemplateTest(object? value, CallArguments arguments, RenderState state);

/// <summary>Jinja2's built-in tests.</summary>
internal static class TemplateTests
{
    private static object? Argument(CallArguments arguments, string test)
        => arguments.Has(0, "other") || arguments.Has(0, "value")
            ? arguments.Get(0, "other", arguments.Get(0, "value", null))
            : throw new TemplateException($"test '{test}' needs an argument to compare with");

    private static readonly Dictionary<string, TemplateTest> Tests = new(StringComparer.Ordinal)
    {
        ["boolean"] = (v, a, _) => v is bool,
        // Python's Undefined defines __call__ (calling it raises), so Jinja2 reports it callable.
        ["callable"] = (v, a, _) => v is ITemplateCallable or Undefined,
        ["defined"] = (v, a, _) => v is not Undefined,
        ["divisibleby"] = (v, a, _) => PyOps.IsTrue(PyOps.AreEqual(PyOps.Modulo(v, Argument(a, "divisibleby")), 0L)),
        ["eq"] = (v, a, _) => PyOps.AreEqual(v, Argument(a, "eq")),
        ["equalto"] = (v, a, _) => PyOps.AreEqual(v, Argument(a, "equalto")),
        ["=="] = (v, a, _) => PyOps.AreEqual(v, Argument(a, "==")),
        ["escaped"] = (v, a, _) => false,
        ["even"] = (v, a, _) => PyOps.ToLong(v) % 2 == 0,
        ["false"] = (v, a, _) => v is false,
        ["filter"] = (v, a, _) => v is string name && TemplateFilters.TryGet(name, out TemplateFilter _),
        ["float"] = (v, a, _) => v is double,
        ["ge"] = (v, a, _) => PyOps.Compare(v, Argument(a, "ge"), ">=") >= 0,
        [">="] = (v, a, _) => PyOps.Compare(v, Argument(a, ">="), ">=") >= 0,
        ["gt"] = (v, a, _) => PyOps.Compare(v, Argument(a, "gt"), ">") > 0,
        [">"] = (v, a, _) => PyOps.Compare(v, Argument(a, ">"), ">") > 0,
        ["greaterthan"] = (v, a, _) => PyOps.Compare(v, Argument(a, "greaterthan"), ">") > 0,
        ["in"] = (v, a, _) => PyOps.Contains(a.Get(0, "seq", null), v),
        ["integer"] = (v, a, _) => v is long,
        ["iterable"] = (v, a, _) => v is string or ValueList or ValueDict,
        ["le"] = (v, a, _) => PyOps.Compare(v, Argument(a, "le"), "<=") <= 0,
        ["<="] = (v, a, _) => PyOps.Compare(v, Argument(a, "<="), "<=") <= 0,
        ["lower"] = (v, a, _) => v is string s && s == s.ToLowerInvariant(),
        ["lt"] = (v, a, _) => PyOps.Compare(v, Argument(a, "lt"), "<") < 0,
        ["<"] = (v, a, _) => PyOps.Compare(v, Argument(a, "<"), "<") < 0,
        ["lessthan"] = (v, a, _) => PyOps.Compare(v, Argument(a, "lessthan"), "<") < 0,
        ["mapping"] = (v, a, _) => v is ValueDict,
        ["ne"] = (v, a, _) => !PyOps.AreEqual(v, Argument(a, "ne")),
        ["!="] = (v, a, _) => !PyOps.AreEqual(v, Argument(a, "!=")),
        ["none"] = (v, a, _) => v is null,
        ["number"] = (v, a, _) => v is long or double or bool,
        ["odd"] = (v, a, _) => PyOps.ToLong(v) % 2 != 0,
        ["sameas"] = (v, a, _) => SameAs(v, Argument(a, "sameas")),
        ["sequence"] = (v, a, _) => v is string or ValueList or ValueDict,
        ["string"] = (v, a, _) => v is string,
        ["test"] = (v, a, _) => v is string name && Tests!.ContainsKey(name),
        ["true"] = (v, a, _) => v is true,
        ["undefined"] = (v, a, _) => v is Undefined,
        ["upper"] = (v, a, _) => v is string s && s == s.ToUpperInvariant(),
    };

    /// <summary>Tests that take only the tested value; Python raises when they are given arguments.</summary>
    private static readonly HashSet<string> NoArgumentTests = new(StringComparer.Ordinal)
    {
        "boolean", "callable", "defined", "escaped", "even", "false", "filter", "float", "integer", "iterable", "lower",
        "mapping", "none", "number", "odd", "sequence", "string", "test", "true", "undefined", "upper",
    };

    public static bool TryGet(string name, out TemplateTest test)
    {
        if (!Tests.TryGetValue(name, out var found))
        {
            test = null!;
            return false;
        }
        test = NoArgumentTests.Contains(name)
            ? (value, arguments, state) => arguments.Positional.Count + arguments.Keywords.Count == 0
                ? found(value, arguments, state)
                : throw new TemplateException($"test '{name}' takes no arguments, got {arguments.Positional.Count + arguments.Keywords.Count}")
            : found;
        return true;
    }

    /// <summary>Python's <c>is</c>: identity for objects, value identity for None/bools and small immutables.</summary>
    private static bool SameAs(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (bool x, bool y) => x == y,
        (long x, long y) => x == y,
        (string x, string y) => ReferenceEquals(x, y) || x == y,
        _ => ReferenceEquals(a, b),
    };
}

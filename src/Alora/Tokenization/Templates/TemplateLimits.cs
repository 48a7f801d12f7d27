namespace Alora.Tokenization.Templates;

/// <summary>
/// The bounds that keep one hostile template or request from taking a server down: how deep the source may nest,
/// how many steps a render may take, and how long a string or list it builds may grow. Real chat templates stay
/// orders of magnitude below each (granite's renders in a few thousand steps); Jinja2's sandbox caps range() the
/// same way (<see cref="TemplateGlobals.MaxRange"/>), and Python's recursion limit stops deep nesting there.
/// </summary>
internal static class TemplateLimits
{
    /// <summary>Nested expressions (parentheses, brackets, a chain of binary operators) and nested blocks, together.</summary>
    public const int MaxNesting = 256;

    /// <summary>Statements run, loop iterations and macro calls in one render.</summary>
    public const long MaxSteps = 1_000_000;

    /// <summary>Characters in any string (the output included) and items in any list one render builds.</summary>
    public const long MaxLength = 1L << 24;

    /// <summary>Throws the render's "too long" error when <paramref name="length"/> exceeds <see cref="MaxLength"/>.</summary>
    public static void CheckLength(long length, string what)
    {
        if (length > MaxLength || length < 0)
            throw new TemplateException($"{what} would be {(length < 0 ? "longer than any" : length.ToString("N0", System.Globalization.CultureInfo.InvariantCulture))} long; a render may build at most {MaxLength:N0} characters or items");
    }
}

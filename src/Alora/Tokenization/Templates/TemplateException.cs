namespace Alora.Tokenization.Templates;

/// <summary>
/// An error while parsing or rendering a chat template. <see cref="Line"/> and <see cref="Column"/> are
/// 1-based positions in the template source (0 when unknown).
/// </summary>
public class TemplateException : Exception
{
    public TemplateException() { }
    public TemplateException(string message) : base(message) { Detail = message; }
    public TemplateException(string message, Exception inner) : base(message, inner) { Detail = message; }

    public TemplateException(string detail, string? sourceName, int line, int column)
        : base(FormatMessage(detail, sourceName, line, column))
    {
        Detail = detail;
        SourceName = sourceName;
        Line = line;
        Column = column;
    }

    /// <summary>The message without the position suffix.</summary>
    public string Detail { get; } = "";
    public string? SourceName { get; }
    public int Line { get; }
    public int Column { get; }

    internal bool HasPosition => Line > 0;

    private static string FormatMessage(string detail, string? sourceName, int line, int column)
        => $"{detail} ({sourceName ?? "<template>"}, line {line}, column {column})";
}

/// <summary>The template text is not valid Jinja: an unknown tag, an unclosed block, a bad expression,
/// an unknown filter or test.</summary>
public sealed class TemplateSyntaxException : TemplateException
{
    public TemplateSyntaxException(string detail, string? sourceName, int line, int column)
        : base(detail, sourceName, line, column) { }

    public TemplateSyntaxException() { }
    public TemplateSyntaxException(string message) : base(message) { }
    public TemplateSyntaxException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The template called <c>raise_exception(message)</c>; <see cref="Exception.Message"/> is that
/// message exactly, as transformers surfaces it.</summary>
public sealed class TemplateRaisedException : TemplateException
{
    public TemplateRaisedException(string message) : base(message) { }

    public TemplateRaisedException() { }
    public TemplateRaisedException(string message, Exception inner) : base(message, inner) { }
}

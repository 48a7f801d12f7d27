namespace Alora.Tokenization.Templates;

internal enum TokenKind
{
    Data,           // literal template text (whitespace control already applied)
    VariableBegin,  // {{
    VariableEnd,    // }}
    BlockBegin,     // {%
    BlockEnd,       // %}
    Name,
    String,         // value holds the unescaped string
    Integer,
    Float,
    Operator,
    EndOfTemplate,
}

/// <summary>One lexed token; <see cref="Offset"/> indexes the normalized source (for line/column).</summary>
internal readonly record struct TemplateToken(TokenKind Kind, string Value, int Offset)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;
    public bool IsName(string name) => Kind == TokenKind.Name && Value == name;
    public bool IsOperator(string op) => Kind == TokenKind.Operator && Value == op;

    public string Describe() => Kind switch
    {
        TokenKind.Data => "template text",
        TokenKind.VariableBegin => "'{{'",
        TokenKind.VariableEnd => "'}}'",
        TokenKind.BlockBegin => "'{%'",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.EndOfTemplate => "end of template",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}

/// <summary>Maps source offsets to 1-based line and column numbers.</summary>
internal sealed class SourcePositions
{
    private readonly List<int> _lineStarts = [0];

    public SourcePositions(string source, string? sourceName)
    {
        SourceName = sourceName;
        for (int i = 0; i < source.Length; i++)
            if (source[i] == '\n') _lineStarts.Add(i + 1);
    }

    public string? SourceName { get; }

    public (int Line, int Column) At(int offset)
    {
        int index = _lineStarts.BinarySearch(offset);
        if (index < 0) index = ~index - 1;
        return (index + 1, offset - _lineStarts[index] + 1);
    }

    public TemplateSyntaxException SyntaxError(string detail, int offset)
    {
        var (line, column) = At(offset);
        return new TemplateSyntaxException(detail, SourceName, line, column);
    }

    public TemplateException RuntimeError(TemplateException inner, int offset)
    {
        var (line, column) = At(offset);
        return new TemplateException(inner.Detail, SourceName, line, column);
    }
}

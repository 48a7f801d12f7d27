using System.Text;
using System.Text.Json.Nodes;

namespace Alora.Tokenization.Templates;

/// <summary>
/// A parsed Jinja chat template. Parse once (the syntax tree is cached here), render per request; a
/// rendered template matches what transformers' <c>apply_chat_template</c> produces with Python Jinja2
/// (trim_blocks, lstrip_blocks, loop controls, sandboxed and immutable).
/// </summary>
public sealed class ChatTemplate
{
    private readonly IReadOnlyList<Statement> _body;
    private readonly SourcePositions _positions;

    private ChatTemplate(string source, string? sourceName, IReadOnlyList<Statement> body, SourcePositions positions)
    {
        Source = source;
        SourceName = sourceName;
        _body = body;
        _positions = positions;
    }

    /// <summary>The template text as given.</summary>
    public string Source { get; }

    /// <summary>Where the template came from (a file name or "tokenizer_config.json:chat_template"), used in errors.</summary>
    public string? SourceName { get; }

    /// <summary>Parses a template. Throws <see cref="TemplateSyntaxException"/> with the 1-based line and
    /// column of the problem (an unknown tag, filter or test, an unclosed block, a bad expression).</summary>
    public static ChatTemplate Parse(string source, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        string normalized = TemplateLexer.NormalizeSource(source);
        var positions = new SourcePositions(normalized, sourceName);
        var tokens = TemplateLexer.Tokenize(normalized, positions);
        var body = TemplateParser.Parse(tokens, positions);
        return new ChatTemplate(source, sourceName, body, positions);
    }

    /// <summary>Renders with the given variables (messages, add_generation_prompt, special tokens, tools...).
    /// <paramref name="now"/> fixes what <c>strftime_now</c> returns (its local date and time are used);
    /// null means the current local time. Errors raised by the template (<c>raise_exception</c>) surface as
    /// <see cref="TemplateRaisedException"/>; other failures as <see cref="TemplateException"/> with the
    /// line and column of the failing expression.</summary>
    public string Render(JsonObject variables, DateTimeOffset? now = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, node) in variables) values[name] = TemplateJson.FromNode(node);
        return Render(values, now);
    }

    internal string Render(IReadOnlyDictionary<string, object?> variables, DateTimeOffset? now)
    {
        var globals = new Scope(null);
        foreach (var (name, value) in TemplateGlobals.All) globals.Set(name, value);
        var scope = new Scope(globals);
        foreach (var (name, value) in variables) scope.Set(name, value);

        var state = new RenderState(now ?? DateTimeOffset.Now);
        var output = new StringBuilder(Source.Length * 2);
        try
        {
            Statement.ExecuteAll(_body, output, scope, state);
        }
        catch (LocatedTemplateError located)
        {
            var (line, column) = _positions.At(located.Offset);
            throw new TemplateException(located.Error.Detail, SourceName, line, column);
        }
        catch (Exception e) when (e is InvalidCastException or InvalidOperationException or ArgumentException
                                      or IndexOutOfRangeException or NullReferenceException or OverflowException or FormatException)
        {
            // A gap in this interpreter, not in the template: still report it as a template error so one bad
            // request cannot take a server or a batch run down.
            throw new TemplateException($"internal error while rendering {SourceName ?? "the template"}: {e.GetType().Name}: {e.Message}", e);
        }
        return output.ToString();
    }
}

namespace Alora.Tokenization.Templates;

/// <summary>Per-render state: the clock strftime_now reads and a guard against runaway macro recursion.</summary>
internal sealed class RenderState
{
    public const int MaxCallDepth = 200;

    public RenderState(DateTimeOffset now) { Now = now; }

    public DateTimeOffset Now { get; }
    public int CallDepth { get; set; }

    private long _steps;

    /// <summary>Counts one statement, loop iteration or call against <see cref="TemplateLimits.MaxSteps"/>.</summary>
    public void Step()
    {
        if (++_steps > TemplateLimits.MaxSteps)
            throw new TemplateException($"the template ran more than {TemplateLimits.MaxSteps:N0} steps (statements, loop iterations and calls) in one render; is a loop or recursion unbounded?");
    }
}

/// <summary>A variable scope. Jinja2 gives each for-loop iteration, macro call and with-block its own
/// scope, so a <c>set</c> inside them does not leak out; if-blocks share their parent's scope.</summary>
internal sealed class Scope
{
    private readonly Scope? _parent;
    private Dictionary<string, object?>? _variables;

    public Scope(Scope? parent) { _parent = parent; }

    public bool TryGet(string name, out object? value)
    {
        for (var scope = this; scope is not null; scope = scope._parent)
        {
            if (scope._variables is not null && scope._variables.TryGetValue(name, out value)) return true;
        }
        value = null;
        return false;
    }

    public object? Get(string name) => TryGet(name, out var value) ? value : Undefined.ForName(name);

    public void Set(string name, object? value)
    {
        _variables ??= new Dictionary<string, object?>(StringComparer.Ordinal);
        _variables[name] = value;
    }
}

/// <summary>What a statement tells its enclosing loop.</summary>
internal enum Flow { Normal, Break, Continue }

using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>Per-render state: the clock strftime_now reads and a guard against runaway macro recursion.</summary>
internal sealed class RenderState
{
    public const int MaxCallDepth = 200;

    public RenderState(DateTimeOffset now) { Now = now; }

    public DateTimeOffset Now { get; }
    public int CallDepth { get; set; }
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

/// <summary>Jinja2's <c>loop</c> variable.</summary>
internal sealed class LoopContext
{
    private readonly IReadOnlyList<object?> _items;
    private object? _lastChanged = Undefined.Plain;
    private bool _changedCalled;

    public LoopContext(IReadOnlyList<object?> items) { _items = items; }

    public int Index0 { get; set; }
    public int Index => Index0 + 1;
    public int Length => _items.Count;

    public object? GetAttribute(string name) => name switch
    {
        "index" => (long)Index,
        "index0" => (long)Index0,
        "revindex" => (long)(Length - Index0),
        "revindex0" => (long)(Length - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => (long)Length,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? _items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Length ? _items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinCallable("loop.cycle", (arguments, _) =>
        {
            if (arguments.Positional.Count == 0) throw new TemplateException("loop.cycle() needs at least one value to cycle through");
            return arguments.Positional[Index0 % arguments.Positional.Count];
        }),
        "changed" => new BuiltinCallable("loop.changed", (arguments, _) =>
        {
            object? value = new ValueList(arguments.Positional, isTuple: true);
            bool changed = !_changedCalled || !PyOps.AreEqual(value, _lastChanged);
            _changedCalled = true;
            _lastChanged = value;
            return changed;
        }),
        _ => new Undefined($"'LoopContext' object has no attribute '{name}'"),
    };
}

/// <summary>A <c>{% macro %}</c>: rendering its body in a fresh scope whose parent is the defining scope.</summary>
internal sealed class Macro : ITemplateCallable
{
    private readonly IReadOnlyList<(string Name, Expression? Default)> _parameters;
    private readonly IReadOnlyList<Statement> _body;
    private readonly Scope _definingScope;
    private readonly SourcePositions _positions;

    public Macro(string name, IReadOnlyList<(string Name, Expression? Default)> parameters, IReadOnlyList<Statement> body,
        Scope definingScope, SourcePositions positions)
    {
        Name = name;
        _parameters = parameters;
        _body = body;
        _definingScope = definingScope;
        _positions = positions;
    }

    public string Name { get; }

    /// <summary>The body of a {% call %} block, exposed to the macro as <c>caller</c>.</summary>
    public ITemplateCallable? Caller { get; init; }

    public object? Call(CallArguments arguments, RenderState state)
    {
        if (state.CallDepth >= RenderState.MaxCallDepth)
            throw new TemplateException($"macro '{Name}' recursed deeper than {RenderState.MaxCallDepth} calls");
        var scope = new Scope(_definingScope);
        var extraPositional = new ValueList { IsTuple = true };
        for (int i = 0; i < arguments.Positional.Count; i++)
        {
            if (i < _parameters.Count) scope.Set(_parameters[i].Name, arguments.Positional[i]);
            else extraPositional.Add(arguments.Positional[i]);
        }
        var extraKeywords = new ValueDict();
        ITemplateCallable? caller = Caller;
        foreach (var (key, value) in arguments.Keywords)
        {
            int index = -1;
            for (int p = 0; p < _parameters.Count; p++)
                if (_parameters[p].Name == key) index = p;
            if (index < 0)
            {
                if (key == "caller" && value is ITemplateCallable callerValue) caller = callerValue;
                else extraKeywords.Put(key, value);
                continue;
            }
            if (index < arguments.Positional.Count) throw new TemplateException($"macro '{Name}' got multiple values for argument '{key}'");
            scope.Set(key, value);
        }
        for (int p = arguments.Positional.Count; p < _parameters.Count; p++)
        {
            var (name, defaultValue) = _parameters[p];
            if (scope.TryGet(name, out _) && HasKeyword(arguments, name)) continue;
            scope.Set(name, defaultValue is null ? new Undefined($"parameter '{name}' was not provided") : defaultValue.Evaluate(scope, state));
        }
        scope.Set("varargs", extraPositional);
        scope.Set("kwargs", extraKeywords);
        if (caller is not null) scope.Set("caller", caller);

        var output = new StringBuilder();
        state.CallDepth++;
        try
        {
            Statement.ExecuteAll(_body, output, scope, state);
        }
        finally
        {
            state.CallDepth--;
        }
        return output.ToString();
    }

    private static bool HasKeyword(CallArguments arguments, string name)
    {
        foreach (var (key, _) in arguments.Keywords)
            if (key == name) return true;
        return false;
    }

    internal SourcePositions Positions => _positions;
}

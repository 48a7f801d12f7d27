using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>A <c>{% macro %}</c>: rendering its body in a fresh scope whose parent is the defining scope.</summary>
internal sealed class Macro : ITemplateCallable
{
    private readonly IReadOnlyList<(string Name, Expression? Default)> _parameters;
    private readonly IReadOnlyList<Statement> _body;
    private readonly Scope _definingScope;
    private readonly MacroSignature _signature;

    public Macro(string name, IReadOnlyList<(string Name, Expression? Default)> parameters, IReadOnlyList<Statement> body,
        Scope definingScope, MacroSignature signature)
    {
        Name = name;
        _parameters = parameters;
        _body = body;
        _definingScope = definingScope;
        _signature = signature;
    }

    public string Name { get; }

    /// <summary>Names that start undefined in the macro's frame (see <see cref="FrameSymbols"/>).</summary>
    public string[] StartUndefined { get; init; } = [];

    /// <summary>The body of a {% call %} block, exposed to the macro as <c>caller</c>.</summary>
    public ITemplateCallable? Caller { get; init; }

    public object? Call(CallArguments arguments, RenderState state)
    {
        state.Step();
        if (state.CallDepth >= RenderState.MaxCallDepth)
            throw new TemplateException($"macro '{Name}' recursed deeper than {RenderState.MaxCallDepth} calls");
        if (arguments.Positional.Count > _parameters.Count && !_signature.TakesVarargs)
            throw new TemplateException($"macro '{Name}' takes not more than {_parameters.Count} argument(s)");
        var scope = FrameSymbols.NewScope(_definingScope, StartUndefined);
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
                if (key == "caller")
                {
                    if (!_signature.UsesCaller)
                        throw new TemplateException($"macro '{Name}' was invoked with two values for the special caller argument (it does not use caller())");
                    caller = value as ITemplateCallable;
                }
                else if (_signature.TakesKwargs)
                {
                    extraKeywords.Put(key, value);
                }
                else
                {
                    throw new TemplateException($"macro '{Name}' takes no keyword argument '{key}'");
                }
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
}

/// <summary>What a macro body mentions, which decides the calls it accepts (as Jinja2 decides it):
/// extra positional arguments need <c>varargs</c>, unknown keywords need <c>kwargs</c>, a call block needs
/// <c>caller</c>.</summary>
internal readonly record struct MacroSignature(bool TakesVarargs, bool TakesKwargs, bool UsesCaller);

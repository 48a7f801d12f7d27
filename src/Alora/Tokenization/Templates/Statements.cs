using System.Text;

namespace Alora.Tokenization.Templates;

internal abstract class Statement
{
    protected Statement(int offset) { Offset = offset; }

    public int Offset { get; }

    public abstract Flow Execute(StringBuilder output, Scope scope, RenderState state);

    /// <summary>Runs statements in order, stopping at break/continue so the enclosing loop can act.</summary>
    public static Flow ExecuteAll(IReadOnlyList<Statement> statements, StringBuilder output, Scope scope, RenderState state)
    {
        foreach (var statement in statements)
        {
            Flow flow;
            try
            {
                flow = statement.Execute(output, scope, state);
            }
            catch (TemplateRaisedException) { throw; }
            catch (TemplateException e) { throw new LocatedTemplateError(e, statement.Offset); }
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    protected static string RenderToString(IReadOnlyList<Statement> body, Scope scope, RenderState state)
    {
        var output = new StringBuilder();
        ExecuteAll(body, output, scope, state);
        return output.ToString();
    }
}

internal sealed class TextStatement(string text, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        output.Append(text);
        return Flow.Normal;
    }
}

internal sealed class OutputStatement(Expression expression, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        var value = expression.Evaluate(scope, state);
        if (value is string s) output.Append(s);
        else output.Append(PyOps.ToStr(value));
        return Flow.Normal;
    }
}

internal sealed class IfStatement(IReadOnlyList<(Expression Condition, IReadOnlyList<Statement> Body)> branches,
    IReadOnlyList<Statement>? elseBody, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        foreach (var (condition, body) in branches)
            if (PyOps.IsTrue(condition.Evaluate(scope, state))) return ExecuteAll(body, output, scope, state);
        return elseBody is null ? Flow.Normal : ExecuteAll(elseBody, output, scope, state);
    }
}

/// <summary>Where a <c>set</c> or <c>for</c> stores values: plain names (several unpack a sequence) or
/// one namespace attribute (<c>ns.count</c>).</summary>
internal sealed class AssignTarget
{
    public AssignTarget(IReadOnlyList<string> names, bool unpack, string? attribute, int offset)
    {
        Names = names;
        Unpack = unpack;
        Attribute = attribute;
        Offset = offset;
    }

    public IReadOnlyList<string> Names { get; }
    public bool Unpack { get; }
    public string? Attribute { get; }
    public int Offset { get; }

    public void Assign(Scope scope, object? value)
    {
        if (Attribute is not null)
        {
            var target = scope.Get(Names[0]);
            if (target is not NamespaceValue ns)
                throw new TemplateException($"cannot assign attribute '{Attribute}' on '{Names[0]}': it is {PyOps.TypeName(target)}, not a namespace()");
            ns.Attributes[Attribute] = value;
            return;
        }
        if (!Unpack)
        {
            scope.Set(Names[0], value);
            return;
        }
        var items = PyOps.Iterate(value);
        if (items.Count != Names.Count)
            throw new TemplateException($"cannot unpack {items.Count} value(s) into {Names.Count} name(s) ({string.Join(", ", Names)})");
        for (int i = 0; i < Names.Count; i++) scope.Set(Names[i], items[i]);
    }
}

internal sealed class SetStatement(AssignTarget target, Expression value, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        target.Assign(scope, value.Evaluate(scope, state));
        return Flow.Normal;
    }
}

/// <summary><c>{% set x | filter %}body{% endset %}</c>: captures rendered text.</summary>
internal sealed class SetBlockStatement(AssignTarget target, IReadOnlyList<Statement> body, IReadOnlyList<FilterExpression> filters, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        object? value = RenderToString(body, scope, state);
        foreach (var filter in filters) value = filter.Apply(value, scope, state);
        target.Assign(scope, value);
        return Flow.Normal;
    }
}

internal sealed class ForStatement(AssignTarget target, Expression iterable, Expression? condition,
    IReadOnlyList<Statement> body, IReadOnlyList<Statement>? elseBody, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        var source = iterable.Evaluate(scope, state);
        IReadOnlyList<object?> items = source switch
        {
            ValueList list => list,
            ValueDict or string or Undefined => PyOps.Iterate(source),
            null => throw new TemplateException("'NoneType' object is not iterable"),
            _ => throw new TemplateException($"'{PyOps.TypeName(source)}' object is not iterable"),
        };
        if (condition is not null) items = Filtered(items, scope, state);
        // Iterate a snapshot so the loop is stable even if the template rebinds the source.
        if (ReferenceEquals(items, source)) items = [.. items];

        if (items.Count == 0)
            return elseBody is null ? Flow.Normal : ExecuteAll(elseBody, output, new Scope(scope), state);

        var loop = new LoopContext(items);
        for (int i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var iterationScope = new Scope(scope);
            iterationScope.Set("loop", loop);
            target.Assign(iterationScope, items[i]);
            if (ExecuteAll(body, output, iterationScope, state) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    /// <summary><c>for x in items if condition</c>: the condition sees each item but not <c>loop</c>.</summary>
    private List<object?> Filtered(IReadOnlyList<object?> items, Scope scope, RenderState state)
    {
        var kept = new List<object?>();
        foreach (var item in items)
        {
            var filterScope = new Scope(scope);
            target.Assign(filterScope, item);
            if (PyOps.IsTrue(condition!.Evaluate(filterScope, state))) kept.Add(item);
        }
        return kept;
    }
}

internal sealed class LoopControlStatement(Flow flow, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state) => flow;
}

internal sealed class MacroStatement(string name, IReadOnlyList<(string Name, Expression? Default)> parameters,
    IReadOnlyList<Statement> body, SourcePositions positions, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        scope.Set(name, new Macro(name, parameters, body, scope, positions));
        return Flow.Normal;
    }
}

/// <summary><c>{% call(args) macro(...) %}body{% endcall %}</c>: the body becomes the macro's <c>caller</c>.</summary>
internal sealed class CallBlockStatement(CallExpression call, IReadOnlyList<(string Name, Expression? Default)> callerParameters,
    IReadOnlyList<Statement> body, SourcePositions positions, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        var caller = new Macro("caller", callerParameters, body, scope, positions);
        output.Append(PyOps.ToStr(call.Invoke(scope, state, caller)));
        return Flow.Normal;
    }
}

internal sealed class FilterBlockStatement(IReadOnlyList<FilterExpression> filters, IReadOnlyList<Statement> body, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        object? value = RenderToString(body, new Scope(scope), state);
        foreach (var filter in filters) value = filter.Apply(value, scope, state);
        output.Append(PyOps.ToStr(value));
        return Flow.Normal;
    }
}

internal sealed class WithStatement(IReadOnlyList<(AssignTarget Target, Expression Value)> assignments, IReadOnlyList<Statement> body, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        var inner = new Scope(scope);
        foreach (var (target, value) in assignments) target.Assign(inner, value.Evaluate(scope, state));
        return ExecuteAll(body, output, inner, state);
    }
}

/// <summary>A body run in the current scope: transformers' <c>{% generation %}</c> marks assistant text
/// for masks but renders it unchanged.</summary>
internal sealed class TransparentBlockStatement(IReadOnlyList<Statement> body, int offset) : Statement(offset)
{
    public override Flow Execute(StringBuilder output, Scope scope, RenderState state) => ExecuteAll(body, output, scope, state);
}

using System.Text;

namespace Alora.Tokenization.Templates;

internal abstract class Statement
{
    protected Statement(int offset) { Offset = offset; }

    public int Offset { get; }

    public abstract Flow Execute(StringBuilder output, Scope scope, RenderState state);

    /// <summary>Records this statement's variable uses in its frame (see <see cref="FrameSymbols"/>).</summary>
    public abstract void Analyze(FrameSymbols frame);

    /// <summary>Runs statements in order, stopping at break/continue so the enclosing loop can act.</summary>
    public static Flow ExecuteAll(IReadOnlyList<Statement> statements, StringBuilder output, Scope scope, RenderState state)
    {
        foreach (var statement in statements)
        {
            Flow flow;
            try
            {
                StackGuard.Check();
                state.Step();
                flow = statement.Execute(output, scope, state);
                TemplateLimits.CheckLength(output.Length, "the rendered text");
            }
            catch (TemplateRaisedException) { throw; }
            catch (TemplateException e) { throw new LocatedTemplateError(e, statement.Offset); }
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    /// <summary>Renders a captured body (set/filter block). A break or continue inside it abandons the
    /// capture, as in Jinja2, where it jumps past the code that would use the buffer.</summary>
    protected static string? RenderToString(IReadOnlyList<Statement> body, Scope scope, RenderState state, out Flow flow)
    {
        var output = new StringBuilder();
        flow = ExecuteAll(body, output, scope, state);
        return flow == Flow.Normal ? output.ToString() : null;
    }
}

internal sealed class TextStatement(string text, int offset) : Statement(offset)
{
    public override void Analyze(FrameSymbols frame)
    {
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        output.Append(text);
        return Flow.Normal;
    }
}

internal sealed class OutputStatement(Expression expression, int offset) : Statement(offset)
{
    public override void Analyze(FrameSymbols frame)
    {
        frame.Loads(expression);
    }

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
    public override void Analyze(FrameSymbols frame)
    {
        foreach (var (condition, body) in branches)
        {
            frame.Loads(condition);
            frame.InBranch(() => { foreach (var statement in body) statement.Analyze(frame); });
        }
        if (elseBody is not null) frame.InBranch(() => { foreach (var statement in elseBody) statement.Analyze(frame); });
    }

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

    public void AnalyzeStore(FrameSymbols frame)
    {
        if (Attribute is not null)
        {
            frame.Load(Names[0]);  // ns.attr = ... reads ns
            return;
        }
        foreach (string name in Names) frame.Store(name);
    }

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
    public override void Analyze(FrameSymbols frame)
    {
        frame.Loads(value);
        target.AnalyzeStore(frame);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        target.Assign(scope, value.Evaluate(scope, state));
        return Flow.Normal;
    }
}

/// <summary><c>{% set x | filter %}body{% endset %}</c>: captures rendered text.</summary>
internal sealed class SetBlockStatement(AssignTarget target, IReadOnlyList<Statement> body, IReadOnlyList<FilterExpression> filters, int offset) : Statement(offset)
{
    private string[] _bodyStartUndefined = [];

    public override void Analyze(FrameSymbols frame)
    {
        foreach (var filter in filters) frame.Loads(filter);
        frame.Nested(body, null, names => _bodyStartUndefined = names);
        target.AnalyzeStore(frame);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        // The block body is its own frame: a set inside it does not leak out.
        object? value = RenderToString(body, FrameSymbols.NewScope(scope, _bodyStartUndefined), state, out var flow);
        if (flow != Flow.Normal) return flow;
        foreach (var filter in filters) value = filter.Apply(value, scope, state);
        target.Assign(scope, value);
        return Flow.Normal;
    }
}

internal sealed class ForStatement(AssignTarget target, Expression iterable, Expression? condition,
    IReadOnlyList<Statement> body, IReadOnlyList<Statement>? elseBody, bool recursive, int offset) : Statement(offset)
{
    private string[] _bodyStartUndefined = [];
    private string[] _elseStartUndefined = [];

    public override void Analyze(FrameSymbols frame)
    {
        frame.Loads(iterable);
        frame.Nested(body, loopFrame =>
        {
            foreach (string name in target.Names) loopFrame.Define(name);
            loopFrame.Define("loop");
            loopFrame.Loads(condition);
        }, names => _bodyStartUndefined = names);
        if (elseBody is not null) frame.Nested(elseBody, null, names => _elseStartUndefined = names);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        RunLoop(iterable.Evaluate(scope, state), output, scope, state, depth0: 0);
        return Flow.Normal;
    }

    /// <summary>One run of the loop over <paramref name="source"/>; a recursive loop's <c>loop(children)</c>
    /// runs it again one level deeper and returns what that rendered.</summary>
    private void RunLoop(object? source, StringBuilder output, Scope scope, RenderState state, int depth0)
    {
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

        // Jinja2 runs the else block unless some iteration reached the end of the body: an empty loop, but
        // also one whose every iteration ended in break or continue.
        bool bodyCompleted = false;
        if (items.Count > 0)
        {
            Func<object?, string>? recurse = null;
            if (recursive)
            {
                recurse = children =>
                {
                    if (state.CallDepth >= RenderState.MaxCallDepth)
                        throw new TemplateException($"recursive loop nested deeper than {RenderState.MaxCallDepth} levels");
                    var inner = new StringBuilder();
                    state.CallDepth++;
                    try { RunLoop(children, inner, scope, state, depth0 + 1); }
                    finally { state.CallDepth--; }
                    return inner.ToString();
                };
            }
            var loop = new LoopContext(items, depth0, recurse);
            for (int i = 0; i < items.Count; i++)
            {
                state.Step();
                loop.Index0 = i;
                var iterationScope = FrameSymbols.NewScope(scope, _bodyStartUndefined);
                iterationScope.Set("loop", loop);
                target.Assign(iterationScope, items[i]);
                var flow = ExecuteAll(body, output, iterationScope, state);
                if (flow == Flow.Normal) bodyCompleted = true;
                else if (flow == Flow.Break) break;
            }
        }
        if (!bodyCompleted && elseBody is not null)
            ExecuteAll(elseBody, output, FrameSymbols.NewScope(scope, _elseStartUndefined), state);
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
    public override void Analyze(FrameSymbols frame)
    {
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state) => flow;
}

internal sealed class MacroStatement(string name, IReadOnlyList<(string Name, Expression? Default)> parameters,
    IReadOnlyList<Statement> body, MacroSignature signature, int offset) : Statement(offset)
{
    internal static void DefineParameters(FrameSymbols frame, IReadOnlyList<(string Name, Expression? Default)> parameters)
    {
        foreach (var (parameter, defaultValue) in parameters)
        {
            frame.Define(parameter);
            frame.Loads(defaultValue);
        }
        frame.Define("varargs");
        frame.Define("kwargs");
        frame.Define("caller");
    }

    private string[] _bodyStartUndefined = [];

    public override void Analyze(FrameSymbols frame)
    {
        frame.Store(name);
        frame.Nested(body, macroFrame => DefineParameters(macroFrame, parameters), names => _bodyStartUndefined = names);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        scope.Set(name, new Macro(name, parameters, body, scope, signature) { StartUndefined = _bodyStartUndefined });
        return Flow.Normal;
    }
}

/// <summary><c>{% call(args) macro(...) %}body{% endcall %}</c>: the body becomes the macro's <c>caller</c>.</summary>
internal sealed class CallBlockStatement(CallExpression call, IReadOnlyList<(string Name, Expression? Default)> callerParameters,
    IReadOnlyList<Statement> body, MacroSignature signature, int offset) : Statement(offset)
{
    private string[] _bodyStartUndefined = [];

    public override void Analyze(FrameSymbols frame)
    {
        frame.Loads(call);
        frame.Nested(body, callerFrame => MacroStatement.DefineParameters(callerFrame, callerParameters), names => _bodyStartUndefined = names);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        var caller = new Macro("caller", callerParameters, body, scope, signature) { StartUndefined = _bodyStartUndefined };
        output.Append(PyOps.ToStr(call.Invoke(scope, state, caller)));
        return Flow.Normal;
    }
}

internal sealed class FilterBlockStatement(IReadOnlyList<FilterExpression> filters, IReadOnlyList<Statement> body, int offset) : Statement(offset)
{
    private string[] _bodyStartUndefined = [];

    public override void Analyze(FrameSymbols frame)
    {
        foreach (var filter in filters) frame.Loads(filter);
        frame.Nested(body, null, names => _bodyStartUndefined = names);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        object? value = RenderToString(body, FrameSymbols.NewScope(scope, _bodyStartUndefined), state, out var flow);
        if (flow != Flow.Normal) return flow;
        foreach (var filter in filters) value = filter.Apply(value, scope, state);
        output.Append(PyOps.ToStr(value));
        return Flow.Normal;
    }
}

internal sealed class WithStatement(IReadOnlyList<(AssignTarget Target, Expression Value)> assignments, IReadOnlyList<Statement> body, int offset) : Statement(offset)
{
    private string[] _bodyStartUndefined = [];

    public override void Analyze(FrameSymbols frame)
    {
        foreach (var (_, value) in assignments) frame.Loads(value);
        frame.Nested(body, withFrame =>
        {
            foreach (var (target, _) in assignments)
                foreach (string name in target.Names) withFrame.Define(name);
        }, names => _bodyStartUndefined = names);
    }

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        var inner = FrameSymbols.NewScope(scope, _bodyStartUndefined);
        foreach (var (target, value) in assignments) target.Assign(inner, value.Evaluate(scope, state));
        return ExecuteAll(body, output, inner, state);
    }
}

/// <summary>transformers' <c>{% generation %}...{% endgeneration %}</c>: marks assistant text for training
/// masks and renders its body unchanged. transformers builds it as a call block, so the body is its own frame
/// (a <c>set</c> inside does not leak out).</summary>
internal sealed class GenerationBlockStatement(IReadOnlyList<Statement> body, int offset) : Statement(offset)
{
    private string[] _bodyStartUndefined = [];

    public override void Analyze(FrameSymbols frame) => frame.Nested(body, null, names => _bodyStartUndefined = names);

    public override Flow Execute(StringBuilder output, Scope scope, RenderState state)
    {
        ExecuteAll(body, output, FrameSymbols.NewScope(scope, _bodyStartUndefined), state);
        return Flow.Normal;
    }
}

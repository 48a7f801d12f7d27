namespace Alora.Tokenization.Templates;

/// <summary>
/// Jinja2's compile-time symbol analysis, reduced to the one effect it has on output. Jinja2 gives each
/// frame (the template, a loop body, a macro, a set/filter/with/call block) its own locals. A name whose
/// first use in a frame is an unconditional <c>set</c>, and which no enclosing frame uses, starts out
/// undefined in that frame, even if the render variables define it; so a macro or loop that reads it
/// before the <c>set</c> runs sees Undefined. Everything else (a read first, a set inside an if, a name an
/// outer frame uses) resolves outward, which is what <see cref="Scope"/> lookups already do.
/// Frames are analyzed outermost first: a frame's uses are complete before its nested frames look at them.
/// </summary>
internal sealed class FrameSymbols
{
    private readonly FrameSymbols? _parent;
    private readonly HashSet<string> _references = new(StringComparer.Ordinal);
    private readonly List<string> _startUndefined = [];
    private readonly List<Action> _nestedFrames = [];
    private int _conditionalDepth;

    public FrameSymbols(FrameSymbols? parent) { _parent = parent; }

    public void Load(string name) => _references.Add(name);

    public void Loads(Expression? expression)
    {
        if (expression is null) return;
        var names = new List<string>();
        expression.CollectLoads(names);
        foreach (string name in names) Load(name);
    }

    public void Loads(ArgumentList arguments)
    {
        var names = new List<string>();
        arguments.CollectLoads(names);
        foreach (string name in names) Load(name);
    }

    /// <summary>A set of <paramref name="name"/>; inside an if-branch Jinja2 resolves it outward first.</summary>
    public void Store(string name)
    {
        if (_conditionalDepth > 0)
        {
            Load(name);
            return;
        }
        if (_references.Add(name) && !AncestorReferences(name)) _startUndefined.Add(name);
    }

    /// <summary>Parameters and loop variables: bound when the frame starts.</summary>
    public void Define(string name) => _references.Add(name);

    public void InBranch(Action analyze)
    {
        _conditionalDepth++;
        try { analyze(); }
        finally { _conditionalDepth--; }
    }

    /// <summary>Schedules a nested frame; <paramref name="publish"/> receives the names that start undefined there.</summary>
    public void Nested(IReadOnlyList<Statement> body, Action<FrameSymbols>? bindFirst, Action<string[]> publish)
    {
        _nestedFrames.Add(() =>
        {
            var frame = new FrameSymbols(this);
            bindFirst?.Invoke(frame);
            foreach (var statement in body) statement.Analyze(frame);
            publish(frame.Complete());
        });
    }

    /// <summary>Analyzes the scheduled nested frames and returns this frame's start-undefined names.</summary>
    public string[] Complete()
    {
        foreach (var analyze in _nestedFrames) analyze();
        _nestedFrames.Clear();
        return [.. _startUndefined];
    }

    private bool AncestorReferences(string name)
    {
        for (var frame = _parent; frame is not null; frame = frame._parent)
            if (frame._references.Contains(name)) return true;
        return false;
    }

    /// <summary>A new scope for a frame, with its start-undefined names shadowing outer values.</summary>
    public static Scope NewScope(Scope parent, string[] startUndefined)
    {
        var scope = new Scope(parent);
        foreach (string name in startUndefined) scope.Set(name, Undefined.ForName(name));
        return scope;
    }
}

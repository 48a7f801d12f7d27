namespace Alora.Tokenization.Templates;

/// <summary>Jinja2's <c>loop</c> variable; in a <c>recursive</c> loop, <c>loop(children)</c> renders the
/// loop body over the children one level deeper.</summary>
internal sealed class LoopContext : ITemplateCallable
{
    private readonly IReadOnlyList<object?> _items;
    private readonly Func<object?, string>? _recurse;
    private object? _lastChanged = Undefined.Plain;
    private bool _changedCalled;

    public LoopContext(IReadOnlyList<object?> items, int depth0 = 0, Func<object?, string>? recurse = null)
    {
        _items = items;
        Depth0 = depth0;
        _recurse = recurse;
    }

    public string Name => "loop";
    public int Depth0 { get; }

    public object? Call(CallArguments arguments, RenderState state)
    {
        if (_recurse is null) throw new TemplateException("The loop must have the 'recursive' marker to be called recursively.");
        if (arguments.Positional.Count != 1 || arguments.Keywords.Count != 0)
            throw new TemplateException("loop() takes exactly one argument: the items to recurse into");
        return _recurse(arguments.Positional[0]);
    }

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
        "depth" => (long)(Depth0 + 1),
        "depth0" => (long)Depth0,
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

namespace Alora.Tokenization.Templates;

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

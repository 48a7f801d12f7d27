namespace Alora.Tokenization.Templates;

// Runtime values follow Python's data model, because templates are written against Python Jinja2:
//   None → null, bool, int → long, float → double, str → string,
//   list/tuple → ValueList, dict → ValueDict (insertion-ordered), Jinja's Undefined → Undefined,
//   namespace() → NamespaceValue, macros/builtins/bound methods → ITemplateCallable.

/// <summary>Jinja2's default Undefined: falsy, renders as "", iterates as empty; most other uses fail
/// with the reason it is undefined.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Plain = new("value is undefined");

    public Undefined(string reason) { Reason = reason; }

    /// <summary>Why it is undefined, e.g. "'x' is undefined", "'dict object' has no attribute 'y'".</summary>
    public string Reason { get; }

    public static Undefined ForName(string name) => new($"'{name}' is undefined");

    public TemplateException Fail() => new(Reason);

    public override string ToString() => "";
}

/// <summary>A Python list, or a tuple when <see cref="IsTuple"/>.</summary>
internal sealed class ValueList : List<object?>
{
    public ValueList() { }
    public ValueList(int capacity) : base(capacity) { }
    public ValueList(IEnumerable<object?> items, bool isTuple = false) : base(items) { IsTuple = isTuple; }

    public bool IsTuple { get; init; }

    /// <summary>Field names when this tuple is a namedtuple (groupby's (grouper, list)).</summary>
    public IReadOnlyList<string>? FieldNames { get; init; }

    public static ValueList Tuple(params object?[] items) => new(items, isTuple: true);
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality (1 == 1.0 == True).</summary>
internal sealed class ValueDict : OrderedDictionary<object, object?>
{
    public ValueDict() : base(PyKeyComparer.Instance) { }

    public static object KeyOf(object? key) => key ?? NoneKey.Instance;

    public bool TryGet(object? key, out object? value) => TryGetValue(KeyOf(key), out value);

    public void Put(object? key, object? value) => this[KeyOf(key)] = value;

    public static object? KeyValue(object key) => key is NoneKey ? null : key;
}

/// <summary>Stands in for a None key, since .NET dictionaries reject null keys.</summary>
internal sealed class NoneKey
{
    public static readonly NoneKey Instance = new();
    private NoneKey() { }
}

internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();

    public new bool Equals(object? x, object? y) => PyOps.AreEqual(x is NoneKey ? null : x, y is NoneKey ? null : y);

    public int GetHashCode(object obj) => obj switch
    {
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        double d => d == Math.Floor(d) && Math.Abs(d) < 9.2e18 ? ((long)d).GetHashCode() : d.GetHashCode(),
        string s => StringComparer.Ordinal.GetHashCode(s),
        ValueList list when list.IsTuple => list.Count,
        _ => obj.GetHashCode(),
    };
}

/// <summary>Jinja2's <c>namespace(...)</c>: the one object whose attributes templates may assign.</summary>
internal sealed class NamespaceValue
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>Positional and keyword arguments of a call.</summary>
internal sealed class CallArguments
{
    public static readonly CallArguments Empty = new([], []);

    public CallArguments(List<object?> positional, List<KeyValuePair<string, object?>> keywords)
    {
        Positional = positional;
        Keywords = keywords;
    }

    public List<object?> Positional { get; }
    public List<KeyValuePair<string, object?>> Keywords { get; }

    /// <summary>Binds a parameter the way Python does: by position, else by name, else the default.</summary>
    public object? Get(int position, string name, object? defaultValue)
    {
        if (position >= 0 && position < Positional.Count) return Positional[position];
        foreach (var (key, value) in Keywords)
            if (key == name) return value;
        return defaultValue;
    }

    public bool Has(int position, string name)
    {
        if (position >= 0 && position < Positional.Count) return true;
        foreach (var (key, _) in Keywords)
            if (key == name) return true;
        return false;
    }

    /// <summary>Rejects arguments beyond the named parameters, naming the callee.</summary>
    public void Check(string callee, params string[] parameterNames)
    {
        if (Positional.Count > parameterNames.Length)
            throw new TemplateException($"{callee}() takes at most {parameterNames.Length} positional argument(s), got {Positional.Count}");
        foreach (var (key, _) in Keywords)
            if (Array.IndexOf(parameterNames, key) < 0)
                throw new TemplateException($"{callee}() got an unexpected keyword argument '{key}'");
    }
}

/// <summary>Anything a template can call: macros, globals such as range(), bound string/dict methods.</summary>
internal interface ITemplateCallable
{
    string Name { get; }
    object? Call(CallArguments arguments, RenderState state);
}

internal sealed class BuiltinCallable : ITemplateCallable
{
    private readonly Func<CallArguments, RenderState, object?> _body;

    public BuiltinCallable(string name, Func<CallArguments, RenderState, object?> body)
    {
        Name = name;
        _body = body;
    }

    public string Name { get; }
    public object? Call(CallArguments arguments, RenderState state) => _body(arguments, state);
}

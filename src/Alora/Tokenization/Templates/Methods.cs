namespace Alora.Tokenization.Templates;

/// <summary>Python methods of str, dict and list that templates call (<c>content.strip()</c>,
/// <c>message.get('x')</c>, <c>tools.items()</c>...). Mutating methods exist in Python but
/// transformers' ImmutableSandboxedEnvironment refuses them; so does this.</summary>
internal static class Methods
{
    private static readonly HashSet<string> UnsafeListMethods = new(StringComparer.Ordinal)
        { "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse" };
    private static readonly HashSet<string> UnsafeDictMethods = new(StringComparer.Ordinal)
        { "update", "pop", "popitem", "setdefault", "clear" };

    public static bool TryBind(object? target, string name, out object? method)
    {
        method = target switch
        {
            string s => BindString(s, name),
            ValueDict dict => BindDict(dict, name),
            ValueList list => BindList(list, name),
            _ => null,
        };
        return method is not null;
    }

    private static BuiltinCallable Bound(string name, Func<CallArguments, object?> body)
        => new(name, (arguments, _) => body(arguments));

    private static TemplateException Unsafe(string name, string type)
        => new($"access to attribute '{name}' of '{type}' object is unsafe (the template sandbox is immutable, as in transformers)");

    private static string? OptionalString(object? value, string method) => value switch
    {
        null => null,
        string s => s,
        _ => throw new TemplateException($"{method}() argument must be str or None, not {PyOps.TypeName(value)}"),
    };

    private static string RequireString(object? value, string method) => value switch
    {
        string s => s,
        Undefined u => throw u.Fail(),
        _ => throw new TemplateException($"{method}() argument must be str, not {PyOps.TypeName(value)}"),
    };

    private static BuiltinCallable? BindString(string s, string name) => name switch
    {
        "strip" => Bound("str.strip", a => PyString.Strip(s, OptionalString(a.Get(0, "chars", null), "strip"), true, true)),
        "lstrip" => Bound("str.lstrip", a => PyString.Strip(s, OptionalString(a.Get(0, "chars", null), "lstrip"), true, false)),
        "rstrip" => Bound("str.rstrip", a => PyString.Strip(s, OptionalString(a.Get(0, "chars", null), "rstrip"), false, true)),
        "split" => Bound("str.split", a => PyString.Split(s, OptionalString(a.Get(0, "sep", null), "split"), PyOps.ToLong(a.Get(1, "maxsplit", -1L)))),
        "rsplit" => Bound("str.rsplit", a => PyString.RightSplit(s, OptionalString(a.Get(0, "sep", null), "rsplit"), PyOps.ToLong(a.Get(1, "maxsplit", -1L)))),
        "splitlines" => Bound("str.splitlines", a => PyString.SplitLines(s, PyOps.IsTrue(a.Get(0, "keepends", false)))),
        "startswith" => Bound("str.startswith", a => AffixMatch(s, a.Get(0, "prefix", null), a, prefix: true)),
        "endswith" => Bound("str.endswith", a => AffixMatch(s, a.Get(0, "suffix", null), a, prefix: false)),
        "replace" => Bound("str.replace", a => PyString.Replace(s, RequireString(a.Get(0, "old", null), "replace"), RequireString(a.Get(1, "new", null), "replace"), PyOps.ToLong(a.Get(2, "count", -1L)))),
        "upper" => Bound("str.upper", _ => PyString.Upper(s)),
        "lower" => Bound("str.lower", _ => s.ToLowerInvariant()),
        "casefold" => Bound("str.casefold", _ => s.ToLowerInvariant()),
        "title" => Bound("str.title", _ => PyString.Title(s)),
        "capitalize" => Bound("str.capitalize", _ => PyString.Capitalize(s)),
        "swapcase" => Bound("str.swapcase", _ => PyString.SwapCase(s)),
        "find" => Bound("str.find", a => Find(s, a, fromRight: false, raise: false)),
        "rfind" => Bound("str.rfind", a => Find(s, a, fromRight: true, raise: false)),
        "index" => Bound("str.index", a => Find(s, a, fromRight: false, raise: true)),
        "rindex" => Bound("str.rindex", a => Find(s, a, fromRight: true, raise: true)),
        "count" => Bound("str.count", a => CountOccurrences(s, RequireString(a.Get(0, "sub", null), "count"))),
        "join" => Bound("str.join", a => string.Join(s, PyOps.Iterate(a.Get(0, "iterable", null)).Select(item => item is string text ? text : throw new TemplateException($"str.join(): expected str items, found {PyOps.TypeName(item)}")))),
        "format" => Bound("str.format", a => PyString.Format(s, a)),
        "isdigit" or "isdecimal" or "isnumeric" => Bound("str." + name, _ => PyString.AllCharacters(s, char.IsDigit)),
        "isalpha" => Bound("str.isalpha", _ => PyString.AllCharacters(s, char.IsLetter)),
        "isalnum" => Bound("str.isalnum", _ => PyString.AllCharacters(s, char.IsLetterOrDigit)),
        "isspace" => Bound("str.isspace", _ => PyString.AllCharacters(s, PyString.IsPythonWhitespace)),
        "isupper" => Bound("str.isupper", _ => PyString.HasCasedAndAll(s, char.IsUpper)),
        "islower" => Bound("str.islower", _ => PyString.HasCasedAndAll(s, char.IsLower)),
        "istitle" => Bound("str.istitle", _ => s.Length > 0 && PyString.Title(s) == s && PyString.HasCasedAndAll(s, _ => true)),
        "zfill" => Bound("str.zfill", a => PyString.ZeroFill(s, PyOps.ToLong(a.Get(0, "width", 0L)))),
        "center" => Bound("str.center", a => PyString.Pad(s, PyOps.ToLong(a.Get(0, "width", 0L)), FillChar(a), 0)),
        "ljust" => Bound("str.ljust", a => PyString.Pad(s, PyOps.ToLong(a.Get(0, "width", 0L)), FillChar(a), -1)),
        "rjust" => Bound("str.rjust", a => PyString.Pad(s, PyOps.ToLong(a.Get(0, "width", 0L)), FillChar(a), 1)),
        "partition" => Bound("str.partition", a => Partition(s, RequireString(a.Get(0, "sep", null), "partition"), fromRight: false)),
        "rpartition" => Bound("str.rpartition", a => Partition(s, RequireString(a.Get(0, "sep", null), "rpartition"), fromRight: true)),
        "removeprefix" => Bound("str.removeprefix", a => RequireString(a.Get(0, "prefix", null), "removeprefix") is var p && s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s),
        "removesuffix" => Bound("str.removesuffix", a => RequireString(a.Get(0, "suffix", null), "removesuffix") is var p && p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s),
        _ => null,
    };

    private static char FillChar(CallArguments arguments)
    {
        string fill = RequireString(arguments.Get(1, "fillchar", " "), "pad");
        if (fill.Length != 1) throw new TemplateException("The fill character must be exactly one character long");
        return fill[0];
    }

    private static bool AffixMatch(string s, object? affix, CallArguments arguments, bool prefix)
    {
        long length = s.Length;
        long start = arguments.Get(1, "start", null) is { } st ? PyOps.ToLong(st) : 0;
        long end = arguments.Get(2, "end", null) is { } en ? PyOps.ToLong(en) : length;
        var (from, to) = Slicing.Bounds(s.Length, start, end);
        string window = to > from ? s[from..to] : "";
        IEnumerable<object?> candidates = affix is ValueList { IsTuple: true } tuple ? tuple : [affix];
        foreach (var candidate in candidates)
        {
            string text = candidate as string ?? throw new TemplateException(
                $"{(prefix ? "startswith" : "endswith")} first arg must be str or a tuple of str, not {PyOps.TypeName(candidate)}");
            if (prefix ? window.StartsWith(text, StringComparison.Ordinal) : window.EndsWith(text, StringComparison.Ordinal)) return true;
        }
        return false;
    }

    private static long Find(string s, CallArguments arguments, bool fromRight, bool raise)
    {
        string sub = RequireString(arguments.Get(0, "sub", null), fromRight ? "rfind" : "find");
        int found = fromRight ? s.LastIndexOf(sub, StringComparison.Ordinal) : s.IndexOf(sub, StringComparison.Ordinal);
        if (found < 0 && raise) throw new TemplateException("substring not found");
        return found;
    }

    private static long CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0) return PyString.Length(s) + 1;
        long count = 0;
        for (int i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    private static ValueList Partition(string s, string separator, bool fromRight)
    {
        int found = fromRight ? s.LastIndexOf(separator, StringComparison.Ordinal) : s.IndexOf(separator, StringComparison.Ordinal);
        if (found < 0) return fromRight ? ValueList.Tuple("", "", s) : ValueList.Tuple(s, "", "");
        return ValueList.Tuple(s[..found], separator, s[(found + separator.Length)..]);
    }

    private static BuiltinCallable? BindDict(ValueDict dict, string name)
    {
        if (UnsafeDictMethods.Contains(name)) return Bound("dict." + name, _ => throw Unsafe(name, "dict"));
        return name switch
        {
            "get" => Bound("dict.get", a => dict.TryGet(a.Get(0, "key", null), out var value) ? value : a.Get(1, "default", null)),
            "items" => Bound("dict.items", _ => Items(dict)),
            "keys" => Bound("dict.keys", _ => new ValueList(dict.Keys.Select(ValueDict.KeyValue))),
            "values" => Bound("dict.values", _ => new ValueList(dict.Values)),
            "copy" => Bound("dict.copy", _ => Copy(dict)),
            _ => null,
        };
    }

    public static ValueList Items(ValueDict dict)
    {
        var items = new ValueList(dict.Count);
        foreach (var (key, value) in dict) items.Add(ValueList.Tuple(ValueDict.KeyValue(key), value));
        return items;
    }

    private static ValueDict Copy(ValueDict dict)
    {
        var copy = new ValueDict();
        foreach (var (key, value) in dict) copy[key] = value;
        return copy;
    }

    private static BuiltinCallable? BindList(ValueList list, string name)
    {
        if (!list.IsTuple && UnsafeListMethods.Contains(name)) return Bound("list." + name, _ => throw Unsafe(name, "list"));
        return name switch
        {
            "index" => Bound("list.index", a =>
            {
                var item = a.Get(0, "value", null);
                for (int i = 0; i < list.Count; i++)
                    if (PyOps.AreEqual(list[i], item)) return (long)i;
                throw new TemplateException($"{PyOps.Repr(item)} is not in list");
            }),
            "count" => Bound("list.count", a => (long)list.Count(element => PyOps.AreEqual(element, a.Get(0, "value", null)))),
            "copy" when !list.IsTuple => Bound("list.copy", _ => new ValueList(list)),
            _ => null,
        };
    }
}

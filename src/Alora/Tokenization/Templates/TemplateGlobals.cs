namespace Alora.Tokenization.Templates;

/// <summary>Global functions every template sees: Jinja2's range, dict, namespace, cycler, joiner, lipsum
/// aside, plus transformers' raise_exception and strftime_now.</summary>
internal static class TemplateGlobals
{
    /// <summary>The sandbox's cap on range() length, as Jinja2's MAX_RANGE.</summary>
    private const long MaxRange = 100_000;

    public static readonly IReadOnlyDictionary<string, object?> All = new Dictionary<string, object?>(StringComparer.Ordinal)
    {
        ["range"] = new BuiltinCallable("range", (a, _) => Range(a)),
        ["dict"] = new BuiltinCallable("dict", (a, _) => MakeDict(a)),
        ["namespace"] = new BuiltinCallable("namespace", (a, _) => MakeNamespace(a)),
        ["raise_exception"] = new BuiltinCallable("raise_exception", (a, _) =>
            throw new TemplateRaisedException(PyOps.ToStr(a.Get(0, "message", "")))),
        ["strftime_now"] = new BuiltinCallable("strftime_now", (a, state) =>
            Strftime.Format(state.Now, a.Get(0, "format", null) as string
                ?? throw new TemplateException("strftime_now(format) needs a format string such as '%d %B %Y'"))),
        ["cycler"] = new BuiltinCallable("cycler", (a, _) => MakeCycler(a)),
        ["joiner"] = new BuiltinCallable("joiner", (a, _) => MakeJoiner(a)),
    };

    private static ValueList Range(CallArguments arguments)
    {
        if (arguments.Keywords.Count > 0) throw new TemplateException("range() takes no keyword arguments");
        var values = arguments.Positional.Select(v => v is long or bool ? PyOps.ToLong(v)
            : throw new TemplateException($"range() arguments must be integers, found {PyOps.TypeName(v)}")).ToArray();
        var (start, stop, step) = values.Length switch
        {
            1 => (0L, values[0], 1L),
            2 => (values[0], values[1], 1L),
            3 => (values[0], values[1], values[2]),
            _ => throw new TemplateException($"range expected 1 to 3 arguments, got {values.Length}"),
        };
        if (step == 0) throw new TemplateException("range() arg 3 must not be zero");
        long count = step > 0 ? Math.Max(0, (stop - start + step - 1) / step) : Math.Max(0, (start - stop - step - 1) / -step);
        if (count > MaxRange) throw new TemplateException($"range too big: {count} items, the sandbox allows {MaxRange}");
        var result = new ValueList((int)count);
        for (long i = 0; i < count; i++) result.Add(start + i * step);
        return result;
    }

    private static ValueDict MakeDict(CallArguments arguments)
    {
        var dict = new ValueDict();
        if (arguments.Positional.Count > 1) throw new TemplateException("dict expected at most 1 positional argument");
        if (arguments.Positional.Count == 1)
        {
            switch (arguments.Positional[0])
            {
                case ValueDict source:
                    foreach (var (key, value) in source) dict[key] = value;
                    break;
                case var pairs:
                    foreach (var pair in PyOps.Iterate(pairs))
                    {
                        var items = PyOps.Iterate(pair);
                        if (items.Count != 2) throw new TemplateException("dict(): each item must be a (key, value) pair");
                        dict.Put(items[0], items[1]);
                    }
                    break;
            }
        }
        foreach (var (key, value) in arguments.Keywords) dict.Put(key, value);
        return dict;
    }

    private static NamespaceValue MakeNamespace(CallArguments arguments)
    {
        var ns = new NamespaceValue();
        foreach (var positional in arguments.Positional)
        {
            if (positional is not ValueDict dict) throw new TemplateException($"namespace() accepts dicts and keyword arguments, found {PyOps.TypeName(positional)}");
            foreach (var (key, value) in dict) ns.Attributes[PyOps.ToStr(ValueDict.KeyValue(key))] = value;
        }
        foreach (var (key, value) in arguments.Keywords) ns.Attributes[key] = value;
        return ns;
    }

    private static NamespaceValue MakeCycler(CallArguments arguments)
    {
        var items = arguments.Positional.ToList();
        if (items.Count == 0) throw new TemplateException("cycler() needs at least one item");
        var ns = new NamespaceValue();
        int position = 0;
        ns.Attributes["current"] = items[0];
        ns.Attributes["next"] = new BuiltinCallable("cycler.next", (_, _) =>
        {
            var value = items[position];
            position = (position + 1) % items.Count;
            ns.Attributes["current"] = items[position];
            return value;
        });
        ns.Attributes["reset"] = new BuiltinCallable("cycler.reset", (_, _) =>
        {
            position = 0;
            ns.Attributes["current"] = items[0];
            return null;
        });
        return ns;
    }

    private static BuiltinCallable MakeJoiner(CallArguments arguments)
    {
        string separator = PyOps.ToStr(arguments.Get(0, "sep", ", "));
        bool used = false;
        return new BuiltinCallable("joiner", (_, _) =>
        {
            if (!used)
            {
                used = true;
                return "";
            }
            return separator;
        });
    }
}

namespace Alora.Tokenization.Templates;

/// <summary>Attribute and item access with Jinja2's sandboxed-environment rules: <c>obj.name</c> tries the
/// Python attribute (a method) first, then the item; <c>obj[key]</c> tries the item first, then the
/// attribute. A miss is Undefined; the immutable sandbox refuses methods that mutate.</summary>
internal static class Access
{
    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined undefined:
                throw undefined.Fail();
            case ValueDict dict:
                if (Methods.TryBind(dict, name, out var dictMethod)) return dictMethod;
                return dict.TryGet(name, out var value) ? value : new Undefined($"'dict object' has no attribute '{name}'");
            case NamespaceValue ns:
                return ns.Attributes.TryGetValue(name, out var attribute) ? attribute : new Undefined($"'Namespace' object has no attribute '{name}'");
            case LoopContext loop:
                return loop.GetAttribute(name);
            case ValueList { FieldNames: not null } namedTuple when namedTuple.FieldNames.Contains(name):
                return namedTuple[namedTuple.FieldNames.ToList().IndexOf(name)];
            default:
                if (Methods.TryBind(target, name, out var method)) return method;
                return new Undefined($"'{PyOps.TypeName(target)} object' has no attribute '{name}'");
        }
    }

    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case Undefined undefined:
                throw undefined.Fail();
            case ValueDict dict:
                if (dict.TryGet(key, out var value)) return value;
                if (key is string name && Methods.TryBind(dict, name, out var method)) return method;
                return key is string missing
                    ? new Undefined($"'dict object' has no attribute '{missing}'")
                    : new Undefined($"dict object has no element {PyOps.Repr(key)}");
            case ValueList list:
                if (key is long or bool)
                {
                    long index = PyOps.ToLong(key);
                    if (index < 0) index += list.Count;
                    return index >= 0 && index < list.Count ? list[(int)index] : new Undefined($"{PyOps.TypeName(list)} object has no element {PyOps.ToLong(key)}");
                }
                break;
            case string s:
                if (key is long or bool) return PyString.Index(s, PyOps.ToLong(key));
                break;
        }
        if (key is string attributeName) return GetAttribute(target, attributeName);
        return new Undefined($"'{PyOps.TypeName(target)} object' has no attribute {PyOps.Repr(key)}");
    }

    public static object? GetSlice(object? target, object? start, object? stop, object? step)
    {
        long? from = SliceIndex(start), to = SliceIndex(stop), stride = SliceIndex(step);
        switch (target)
        {
            case string s:
                return PyString.Slice(s, from, to, stride);
            case ValueList list:
                var result = new ValueList { IsTuple = list.IsTuple };
                foreach (int i in Slicing.Indices(list.Count, from, to, stride)) result.Add(list[i]);
                return result;
            case Undefined undefined:
                throw undefined.Fail();
            default:
                throw new TemplateException($"'{PyOps.TypeName(target)}' object is not subscriptable");
        }
    }

    private static long? SliceIndex(object? value) => value switch
    {
        null => null,
        long or bool => PyOps.ToLong(value),
        Undefined u => throw u.Fail(),
        _ => throw new TemplateException($"slice indices must be integers or None, found {PyOps.TypeName(value)}"),
    };
}

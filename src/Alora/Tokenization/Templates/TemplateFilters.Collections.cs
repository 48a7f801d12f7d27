namespace Alora.Tokenization.Templates;

/// <summary>Jinja's attribute paths for filters (<c>map(attribute='a.b')</c>, <c>selectattr('0')</c>):
/// dotted parts, digit parts as list indexes, each looked up item-first.</summary>
internal static class AttributePath
{
    public static object? Get(object? item, object? attribute, object? fallback)
    {
        if (attribute is long or bool) return Access.GetItem(item, attribute);
        string path = PyOps.ToStr(attribute);
        object? current = item;
        foreach (string part in path.Split('.'))
        {
            object key = long.TryParse(part, out long index) ? index : part;
            current = Access.GetItem(current, key);
            if (fallback is not null && current is Undefined) current = fallback;
        }
        return current;
    }
}

internal static partial class TemplateFilters
{
    /// <summary>The sort key: the attribute (if any), lower-cased strings unless case-sensitive.</summary>
    private static Func<object?, object?> SortKey(object? attribute, bool caseSensitive)
        => item =>
        {
            var key = attribute is null ? item : AttributePath.Get(item, attribute, null);
            return !caseSensitive && key is string s ? s.ToLowerInvariant() : key;
        };

    private static object? Sort(object? value, CallArguments arguments, RenderState state)
    {
        bool reverse = PyOps.IsTrue(arguments.Get(0, "reverse", false));
        bool caseSensitive = PyOps.IsTrue(arguments.Get(1, "case_sensitive", false));
        var key = SortKey(arguments.Get(2, "attribute", null), caseSensitive);
        return StableSort(PyOps.Iterate(value), key, reverse);
    }

    private static object? DictSort(object? value, CallArguments arguments, RenderState state)
    {
        if (value is not ValueDict dict) throw new TemplateException($"dictsort expects a dict, found {PyOps.TypeName(value)}");
        bool caseSensitive = PyOps.IsTrue(arguments.Get(0, "case_sensitive", false));
        string by = PyOps.ToStr(arguments.Get(1, "by", "key"));
        bool reverse = PyOps.IsTrue(arguments.Get(2, "reverse", false));
        int position = by switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new TemplateException("You can only sort by either 'key' or 'value'"),
        };
        Func<object?, object?> key = pair =>
        {
            var part = ((ValueList)pair!)[position];
            return !caseSensitive && part is string s ? s.ToLowerInvariant() : part;
        };
        return StableSort(Methods.Items(dict), key, reverse);
    }

    /// <summary>Python's sorted(items, key=..., reverse=...): stable (equal keys keep their order, also when
    /// reversed), comparing keys with Python ordering. A merge sort, so a comparison that raises (int vs str)
    /// surfaces as the template error itself.</summary>
    private static ValueList StableSort(IReadOnlyList<object?> items, Func<object?, object?> keySelector, bool reverse)
    {
        var keys = new object?[items.Count];
        var order = new int[items.Count];
        for (int i = 0; i < items.Count; i++)
        {
            keys[i] = keySelector(items[i]);
            order[i] = i;
        }
        var scratch = new int[items.Count];
        MergeSort(order, scratch, 0, order.Length, (a, b) =>
        {
            int c = PyOps.Compare(keys[a], keys[b], "<");
            return reverse ? -c : c;
        });
        var result = new ValueList(items.Count);
        foreach (int index in order) result.Add(items[index]);
        return result;
    }

    private static void MergeSort(int[] order, int[] scratch, int start, int end, Func<int, int, int> compare)
    {
        if (end - start < 2) return;
        int middle = (start + end) / 2;
        MergeSort(order, scratch, start, middle, compare);
        MergeSort(order, scratch, middle, end, compare);
        int left = start, right = middle, target = start;
        while (left < middle && right < end)
            scratch[target++] = compare(order[right], order[left]) < 0 ? order[right++] : order[left++];
        while (left < middle) scratch[target++] = order[left++];
        while (right < end) scratch[target++] = order[right++];
        Array.Copy(scratch, start, order, start, end - start);
    }

    private static object? Unique(object? value, CallArguments arguments, RenderState state)
    {
        var key = SortKey(arguments.Get(1, "attribute", null), PyOps.IsTrue(arguments.Get(0, "case_sensitive", false)));
        var seen = new HashSet<object>(PyKeyComparer.Instance);
        var result = new ValueList();
        foreach (var item in PyOps.Iterate(value))
            if (seen.Add(ValueDict.KeyOf(key(item)))) result.Add(item);
        return result;
    }

    private static object? MinMax(object? value, CallArguments arguments, bool pickMax)
    {
        var key = SortKey(arguments.Get(1, "attribute", null), PyOps.IsTrue(arguments.Get(0, "case_sensitive", false)));
        var items = PyOps.Iterate(value);
        if (items.Count == 0) return new Undefined("No aggregated item, sequence was empty.");
        object? best = items[0];
        foreach (var item in items.Skip(1))
        {
            int order = PyOps.Compare(key(item), key(best), "<");
            if (pickMax ? order > 0 : order < 0) best = item;
        }
        return best;
    }

    private static object? Sum(object? value, CallArguments arguments, RenderState state)
    {
        object? attribute = arguments.Get(0, "attribute", null);
        object? total = arguments.Get(1, "start", 0L);
        foreach (var item in PyOps.Iterate(value))
            total = PyOps.Add(total, attribute is null ? item : AttributePath.Get(item, attribute, null));
        return total;
    }

    private static object? Batch(object? value, CallArguments arguments, RenderState state)
    {
        long size = PyOps.ToLong(arguments.Get(0, "linecount", null));
        if (size <= 0) throw new TemplateException("batch: linecount must be positive");
        bool fill = arguments.Has(1, "fill_with") && arguments.Get(1, "fill_with", null) is not null;
        object? filler = arguments.Get(1, "fill_with", null);
        var result = new ValueList();
        ValueList? current = null;
        foreach (var item in PyOps.Iterate(value))
        {
            if (current is null || current.Count == size)
            {
                current = new ValueList();
                result.Add(current);
            }
            current.Add(item);
        }
        if (fill && current is not null)
            while (current.Count < size) current.Add(filler);
        return result;
    }

    private static object? SliceColumns(object? value, CallArguments arguments, RenderState state)
    {
        long slices = PyOps.ToLong(arguments.Get(0, "slices", null));
        if (slices <= 0) throw new TemplateException("slice: the number of slices must be positive");
        object? filler = arguments.Get(1, "fill_with", null);
        var items = PyOps.Iterate(value);
        long perSlice = items.Count / slices, withExtra = items.Count % slices;
        var result = new ValueList();
        long offset = 0;
        for (long i = 0; i < slices; i++)
        {
            long start = offset + i * perSlice;
            if (i < withExtra) offset++;
            long end = offset + (i + 1) * perSlice;
            var column = new ValueList(items.Skip((int)start).Take((int)(end - start)));
            if (filler is not null && i >= withExtra) column.Add(filler);
            result.Add(column);
        }
        return result;
    }

    private static object? GroupBy(object? value, CallArguments arguments, RenderState state)
    {
        object? attribute = arguments.Get(0, "attribute", null);
        object? fallback = arguments.Get(1, "default", null);
        bool caseSensitive = PyOps.IsTrue(arguments.Get(2, "case_sensitive", false));
        Func<object?, object?> key = item =>
        {
            var k = AttributePath.Get(item, attribute, fallback);
            return !caseSensitive && k is string s ? s.ToLowerInvariant() : k;
        };
        var groups = new ValueList();
        string[] fields = ["grouper", "list"];
        foreach (var item in StableSort(PyOps.Iterate(value), key, reverse: false))
        {
            var k = key(item);
            if (groups.Count > 0 && PyOps.AreEqual(((ValueList)groups[^1]!)[0], k))
            {
                ((ValueList)((ValueList)groups[^1]!)[1]!).Add(item);
                continue;
            }
            groups.Add(new ValueList([k, new ValueList { item }], isTuple: true) { FieldNames = fields });
        }
        if (!caseSensitive)
        {
            // Jinja reports the grouper as first seen, not lower-cased.
            foreach (ValueList group in groups.Cast<ValueList>())
                group[0] = AttributePath.Get(((ValueList)group[1]!)[0], attribute, fallback);
        }
        return groups;
    }
}

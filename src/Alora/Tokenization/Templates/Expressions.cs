namespace Alora.Tokenization.Templates;

/// <summary>A runtime error tagged with the source offset of the node that failed; ChatTemplate turns
/// it into a <see cref="TemplateException"/> with line and column.</summary>
internal sealed class LocatedTemplateError : Exception
{
    public LocatedTemplateError(TemplateException error, int offset) : base(error.Message, error)
    {
        Error = error;
        Offset = offset;
    }

    public LocatedTemplateError() { }
    public LocatedTemplateError(string message) : base(message) { Error = new TemplateException(message); }
    public LocatedTemplateError(string message, Exception inner) : base(message, inner) { Error = new TemplateException(message); }

    public TemplateException Error { get; } = new();
    public int Offset { get; }
}

/// <summary>Deep recursion in a render (a long operator chain, nested calls) ends in a template error, not a
/// stack overflow that would take the process down.</summary>
internal static class StackGuard
{
    public static void Check()
    {
        if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw new TemplateException("the template recursed too deeply to render (nested expressions or calls)");
    }
}

internal abstract class Expression
{
    protected Expression(int offset) { Offset = offset; }

    public int Offset { get; }

    public abstract object? Evaluate(Scope scope, RenderState state);

    /// <summary>Adds the variable names this expression reads (for Jinja2's frame analysis).</summary>
    public virtual void CollectLoads(ICollection<string> names) { }

    protected static void Collect(ICollection<string> names, params Expression?[] expressions)
    {
        foreach (var expression in expressions) expression?.CollectLoads(names);
    }

    /// <summary>Tags an error with this node's position; raise_exception's own error passes through untouched.</summary>
    protected Exception Locate(TemplateException error) => error is TemplateRaisedException ? error : new LocatedTemplateError(error, Offset);
}

internal sealed class LiteralExpression(object? value, int offset) : Expression(offset)
{
    public object? Value { get; } = value;
    public override object? Evaluate(Scope scope, RenderState state) => Value;
}

internal sealed class NameExpression(string name, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        names.Add(Name);
    }

    public string Name { get; } = name;
    public override object? Evaluate(Scope scope, RenderState state) => scope.Get(Name);
}

internal sealed class ListExpression(IReadOnlyList<Expression> items, bool isTuple, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        foreach (var item in Items) item.CollectLoads(names);
    }

    public IReadOnlyList<Expression> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var list = new ValueList(Items.Count) { IsTuple = IsTuple };
        foreach (var item in Items) list.Add(item.Evaluate(scope, state));
        return list;
    }
}

internal sealed class DictExpression(IReadOnlyList<(Expression Key, Expression Value)> pairs, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        foreach (var (key, value) in pairs) Collect(names, key, value);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var dict = new ValueDict();
        try
        {
            foreach (var (key, value) in pairs)
            {
                object? keyValue = key.Evaluate(scope, state);
                if (keyValue is ValueList { IsTuple: false } or ValueDict or Undefined)
                    throw new TemplateException($"unhashable type: '{PyOps.TypeName(keyValue)}'");
                dict.Put(keyValue, value.Evaluate(scope, state));
            }
        }
        catch (TemplateException e) { throw Locate(e); }
        return dict;
    }
}

internal sealed class AttributeExpression(Expression target, string name, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        target.CollectLoads(names);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var value = target.Evaluate(scope, state);
        try { return Access.GetAttribute(value, name); }
        catch (TemplateException e) { throw Locate(e); }
    }
}

internal sealed class ItemExpression(Expression target, Expression key, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        Collect(names, target, key);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var value = target.Evaluate(scope, state);
        var keyValue = key.Evaluate(scope, state);
        try { return Access.GetItem(value, keyValue); }
        catch (TemplateException e) { throw Locate(e); }
    }
}

internal sealed class SliceExpression(Expression target, Expression? start, Expression? stop, Expression? step, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        Collect(names, target, start, stop, step);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var value = target.Evaluate(scope, state);
        try
        {
            return Access.GetSlice(value, start?.Evaluate(scope, state), stop?.Evaluate(scope, state), step?.Evaluate(scope, state));
        }
        catch (TemplateException e) { throw Locate(e); }
    }
}

/// <summary>Call arguments as written: positional, <c>name=value</c>, <c>*list</c> and <c>**dict</c>.</summary>
internal sealed class ArgumentList
{
    public static readonly ArgumentList None = new([], [], null, null);

    public ArgumentList(IReadOnlyList<Expression> positional, IReadOnlyList<(string Name, Expression Value)> keywords,
        Expression? starArguments, Expression? starKeywords)
    {
        Positional = positional;
        Keywords = keywords;
        StarArguments = starArguments;
        StarKeywords = starKeywords;
    }

    public IReadOnlyList<Expression> Positional { get; }
    public IReadOnlyList<(string Name, Expression Value)> Keywords { get; }
    public Expression? StarArguments { get; }
    public Expression? StarKeywords { get; }

    public void CollectLoads(ICollection<string> names)
    {
        foreach (var expression in Positional) expression.CollectLoads(names);
        foreach (var (_, value) in Keywords) value.CollectLoads(names);
        StarArguments?.CollectLoads(names);
        StarKeywords?.CollectLoads(names);
    }

    public CallArguments Evaluate(Scope scope, RenderState state, object? first = null, bool hasFirst = false)
    {
        if (!hasFirst && Positional.Count == 0 && Keywords.Count == 0 && StarArguments is null && StarKeywords is null)
            return CallArguments.Empty;
        var positional = new List<object?>(Positional.Count + 1);
        if (hasFirst) positional.Add(first);
        foreach (var expression in Positional) positional.Add(expression.Evaluate(scope, state));
        if (StarArguments is not null) positional.AddRange(PyOps.Iterate(StarArguments.Evaluate(scope, state)));
        var keywords = new List<KeyValuePair<string, object?>>(Keywords.Count);
        foreach (var (name, value) in Keywords) keywords.Add(new(name, value.Evaluate(scope, state)));
        if (StarKeywords is not null)
        {
            if (StarKeywords.Evaluate(scope, state) is not ValueDict dict)
                throw new TemplateException("argument after ** must be a mapping");
            foreach (var (key, value) in dict) keywords.Add(new(PyOps.ToStr(ValueDict.KeyValue(key)), value));
        }
        return new CallArguments(positional, keywords);
    }
}

internal sealed class CallExpression(Expression callee, ArgumentList arguments, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        Callee.CollectLoads(names);
        Arguments.CollectLoads(names);
    }

    public Expression Callee { get; } = callee;
    public ArgumentList Arguments { get; } = arguments;

    public override object? Evaluate(Scope scope, RenderState state) => Invoke(scope, state, extraCaller: null);

    /// <summary>Calls the callee; a {% call %} block passes its body as <c>caller</c>.</summary>
    public object? Invoke(Scope scope, RenderState state, ITemplateCallable? extraCaller)
    {
        StackGuard.Check();
        var callee = Callee.Evaluate(scope, state);
        try
        {
            var arguments = Arguments.Evaluate(scope, state);
            if (extraCaller is not null)
            {
                var keywords = new List<KeyValuePair<string, object?>>(arguments.Keywords) { new("caller", extraCaller) };
                arguments = new CallArguments(arguments.Positional, keywords);
            }
            return callee switch
            {
                ITemplateCallable callable => callable.Call(arguments, state),
                Undefined undefined => throw undefined.Fail(),
                _ => throw new TemplateException($"'{PyOps.TypeName(callee)}' object is not callable"),
            };
        }
        catch (TemplateException e) { throw Locate(e); }
    }
}

internal sealed class FilterExpression(Expression target, string name, TemplateFilter filter, ArgumentList arguments, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        target.CollectLoads(names);
        arguments.CollectLoads(names);
    }

    public string Name { get; } = name;

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var value = target.Evaluate(scope, state);
        try { return filter(value, arguments.Evaluate(scope, state), state); }
        catch (TemplateRaisedException) { throw; }
        catch (TemplateException e) { throw Locate(new TemplateException($"filter '{Name}': {e.Detail}", e)); }
    }

    /// <summary>Applies the filter to a value computed elsewhere (set blocks, filter blocks).</summary>
    public object? Apply(object? value, Scope scope, RenderState state)
    {
        try { return filter(value, arguments.Evaluate(scope, state), state); }
        catch (TemplateRaisedException) { throw; }
        catch (TemplateException e) { throw Locate(new TemplateException($"filter '{Name}': {e.Detail}", e)); }
    }
}

internal sealed class TestExpression(Expression target, string name, TemplateTest test, ArgumentList arguments, bool negated, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        target.CollectLoads(names);
        arguments.CollectLoads(names);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var value = target.Evaluate(scope, state);
        try { return test(value, arguments.Evaluate(scope, state), state) != negated; }
        catch (TemplateRaisedException) { throw; }
        catch (TemplateException e) { throw Locate(new TemplateException($"test '{name}': {e.Detail}", e)); }
    }
}

internal sealed class NotExpression(Expression operand, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        operand.CollectLoads(names);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        return !PyOps.IsTrue(operand.Evaluate(scope, state));
    }
}

internal sealed class NegateExpression(Expression operand, bool negate, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        operand.CollectLoads(names);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var value = operand.Evaluate(scope, state);
        try
        {
            if (negate) return PyOps.Negate(value);
            if (!PyOps.IsNumber(value)) throw new TemplateException($"bad operand type for unary +: '{PyOps.TypeName(value)}'");
            return value is bool b ? (b ? 1L : 0L) : value;
        }
        catch (TemplateException e) { throw Locate(e); }
    }
}

internal sealed class BinaryExpression(string op, Expression left, Expression right, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        Collect(names, left, right);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var a = left.Evaluate(scope, state);
        var b = right.Evaluate(scope, state);
        try
        {
            return op switch
            {
                "+" => PyOps.Add(a, b),
                "-" => PyOps.Subtract(a, b),
                "*" => PyOps.Multiply(a, b),
                "/" => PyOps.Divide(a, b),
                "//" => PyOps.FloorDivide(a, b),
                "%" => PyOps.Modulo(a, b),
                "**" => PyOps.Power(a, b),
                "~" => PyOps.Concat(PyOps.ToStr(a), PyOps.ToStr(b)),
                _ => throw new TemplateException($"unknown operator '{op}'"),
            };
        }
        catch (TemplateException e) { throw Locate(e); }
    }
}

/// <summary>Python's <c>and</c>/<c>or</c>: short-circuit, yielding the deciding operand itself.</summary>
internal sealed class LogicalExpression(bool isAnd, Expression left, Expression right, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        Collect(names, left, right);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var a = left.Evaluate(scope, state);
        if (PyOps.IsTrue(a) != isAnd) return a;
        return right.Evaluate(scope, state);
    }
}

/// <summary>A comparison chain <c>a &lt; b &lt;= c</c>, true only if every link holds.</summary>
internal sealed class CompareExpression(Expression first, IReadOnlyList<(string Op, Expression Operand)> links, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        first.CollectLoads(names);
        foreach (var (_, operand) in links) operand.CollectLoads(names);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        var left = first.Evaluate(scope, state);
        try
        {
            foreach (var (op, operand) in links)
            {
                var right = operand.Evaluate(scope, state);
                bool holds = op switch
                {
                    "==" => PyOps.AreEqual(left, right),
                    "!=" => !PyOps.AreEqual(left, right),
                    "<" => PyOps.Compare(left, right, op) < 0,
                    "<=" => PyOps.Compare(left, right, op) <= 0,
                    ">" => PyOps.Compare(left, right, op) > 0,
                    ">=" => PyOps.Compare(left, right, op) >= 0,
                    "in" => PyOps.Contains(right, left),
                    "notin" => !PyOps.Contains(right, left),
                    _ => throw new TemplateException($"unknown comparison '{op}'"),
                };
                if (!holds) return false;
                left = right;
            }
            return true;
        }
        catch (TemplateException e) { throw Locate(e); }
    }
}

/// <summary><c>a if condition else b</c>; without else, a false condition yields Undefined.</summary>
internal sealed class ConditionalExpression(Expression condition, Expression whenTrue, Expression? whenFalse, int offset) : Expression(offset)
{
    public override void CollectLoads(ICollection<string> names)
    {
        Collect(names, condition, whenTrue, whenFalse);
    }

    public override object? Evaluate(Scope scope, RenderState state)
    {
        StackGuard.Check();
        if (PyOps.IsTrue(condition.Evaluate(scope, state))) return whenTrue.Evaluate(scope, state);
        return whenFalse is null ? new Undefined("the inline if-expression evaluated to false and has no else branch") : whenFalse.Evaluate(scope, state);
    }
}

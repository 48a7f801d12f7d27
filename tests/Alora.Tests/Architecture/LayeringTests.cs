using System.Reflection;
using System.Reflection.Emit;

namespace Alora.Tests.Architecture;

/// <summary>
/// The library's namespaces depend one way (docs/ARCHITECTURE.md, "Layers"): every type each namespace's code
/// touches — base types, fields, signatures and the members its method bodies call, read from their IL — must
/// come from the namespace itself or one it may depend on.
/// </summary>
public sealed class LayeringTests
{
    /// <summary>What each namespace may use besides itself (System.* is always allowed; the root namespace may use all).</summary>
    public static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Alora.Tensors"] = [],
        ["Alora.Formats"] = ["Alora.Tensors"],
        ["Alora.Kernels"] = ["Alora.Tensors"],
        ["Alora.Tokenization"] = ["Alora.Formats", "Alora.Tensors"],
        ["Alora.Models"] = ["Alora.Formats", "Alora.Kernels", "Alora.Tensors"],
        ["Alora.Structured"] = ["Alora.Tokenization", "Alora.Formats", "Alora.Tensors"],
        ["Alora.Inference"] = ["Alora.Structured", "Alora.Models", "Alora.Tokenization", "Alora.Formats", "Alora.Kernels", "Alora.Tensors"],
        ["Alora.Serving"] = ["Alora.Inference", "Alora.Structured", "Alora.Models", "Alora.Tokenization", "Alora.Formats", "Alora.Kernels", "Alora.Tensors"],
        ["Alora.Adapters"] = ["Alora.Inference", "Alora.Structured", "Alora.Models", "Alora.Tokenization", "Alora.Formats", "Alora.Kernels", "Alora.Tensors"],
        ["Alora.Training"] = ["Alora.Adapters", "Alora.Inference", "Alora.Structured", "Alora.Models", "Alora.Tokenization", "Alora.Formats", "Alora.Kernels", "Alora.Tensors"],
    };

    /// <summary>The top-level namespace of the library a type belongs to ("Alora.Tokenization" for Alora.Tokenization.Templates.X), or null outside it.</summary>
    public static string? Layer(Type type)
    {
        string? ns = (type.IsNested ? type.DeclaringType! : type).Namespace;
        if (ns is null || !(ns == "Alora" || ns.StartsWith("Alora.", StringComparison.Ordinal))) return null;
        if (ns == "Alora") return ns;
        int second = ns.IndexOf('.', "Alora.".Length);
        return second < 0 ? ns : ns[..second];
    }

    [Fact]
    public void NoNamespaceReachesUpward()
    {
        var violations = Violations(typeof(LanguageModel).Assembly);
        Assert.True(violations.Count == 0, "upward references:\n" + string.Join("\n", violations.Take(40)));
    }

    public static List<string> Violations(Assembly assembly)
    {
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var type in assembly.GetTypes())
        {
            string? from = Layer(type);
            if (from is null || !Allowed.TryGetValue(from, out var allowed)) continue;   // the root namespace is the top
            foreach (var (used, where) in References(type))
            {
                string? to = Layer(used);
                if (to is null || to == from || allowed.Contains(to)) continue;
                found.Add($"{from} → {to}: {Name(type)}{where} uses {Name(used)}");
            }
        }
        return [.. found];
    }

    private static string Name(Type t) => t.FullName ?? t.Name;

    private const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static IEnumerable<(Type Used, string Where)> References(Type type)
    {
        if (type.BaseType is { } b) foreach (var t in Expand(b)) yield return (t, " (base)");
        foreach (var i in type.GetInterfaces()) foreach (var t in Expand(i)) yield return (t, " (interface)");
        foreach (var field in type.GetFields(Everything)) foreach (var t in Expand(field.FieldType)) yield return (t, $".{field.Name}");
        foreach (var method in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
        {
            var signature = method.GetParameters().Select(p => p.ParameterType);
            if (method is MethodInfo m) signature = signature.Append(m.ReturnType);
            foreach (var s in signature) foreach (var t in Expand(s)) yield return (t, $".{method.Name}");
            foreach (var t in BodyReferences(method)) foreach (var e in Expand(t)) yield return (e, $".{method.Name} (body)");
        }
    }

    /// <summary>A type with its element type and generic arguments.</summary>
    private static IEnumerable<Type> Expand(Type type)
    {
        if (type.HasElementType) { foreach (var t in Expand(type.GetElementType()!)) yield return t; yield break; }
        if (type.IsGenericParameter) yield break;
        yield return type;
        if (type.IsGenericType) foreach (var a in type.GetGenericArguments()) foreach (var t in Expand(a)) yield return t;
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue =
        typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    /// <summary>The types a method body names: the declaring types of the members it calls or reads, and the types it creates, casts or boxes.</summary>
    private static IEnumerable<Type> BodyReferences(MethodBase method)
    {
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); } catch (InvalidOperationException) { yield break; }
        if (il is null) yield break;
        var module = method.Module;
        Type[]? typeArgs = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        Type[]? methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            var op = OpCodesByValue[value];
            int size = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType is OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok)
            {
                int token = BitConverter.ToInt32(il, i);
                MemberInfo? member = null;
                try { member = module.ResolveMember(token, typeArgs, methodArgs); } catch (ArgumentException) { } catch (BadImageFormatException) { }
                switch (member)
                {
                    case Type t: yield return t; break;
                    case FieldInfo f: yield return f.DeclaringType!; yield return f.FieldType; break;
                    case MethodBase m:
                        yield return m.DeclaringType!;
                        if (m is MethodInfo mi) { yield return mi.ReturnType; foreach (var g in mi.IsGenericMethod ? mi.GetGenericArguments() : []) yield return g; }
                        break;
                }
            }
            i += size;
        }
    }
}

namespace Alora.Structured;

/// <summary>
/// A context-free grammar over bytes in its running form: each rule is a list of alternatives, each alternative a
/// run of elements in one flat array ending with an end mark. An element is a byte set or a reference to a rule.
/// Built from <see cref="GExpr"/> by <see cref="GrammarBuilder"/>; run by <see cref="GrammarAutomaton"/>.
/// </summary>
internal sealed class ByteGrammar
{
    public const byte EndKind = 0, BytesKind = 1, RuleKind = 2;

    /// <summary>[elements] kind of each element.</summary>
    public required byte[] Kinds { get; init; }
    /// <summary>[elements] the byte-set index (bytes) or the rule index (rule); unused for an end mark.</summary>
    public required int[] Values { get; init; }
    /// <summary>[sets] the byte sets elements refer to.</summary>
    public required ByteSet[] Sets { get; init; }
    /// <summary>[rules][alternatives] the element index where each alternative starts.</summary>
    public required int[][] Alternatives { get; init; }
    /// <summary>[rules] names, for messages.</summary>
    public required string[] RuleNames { get; init; }
    public required int Root { get; init; }
}

/// <summary>
/// Collects named rules as expressions and lowers them to a <see cref="ByteGrammar"/>: nested alternatives and
/// repetitions become helper rules; an unbounded repetition is a right-recursive rule (X R | ε), which the
/// automaton runs without growing its stack. Left recursion is refused (a byte-level top-down matcher cannot run it).
/// </summary>
internal sealed class GrammarBuilder
{
    /// <summary>Above this many elements a grammar is refused (a schema with huge bounds, say).</summary>
    public const int MaxElements = 2_000_000;

    private readonly List<string> _names = [];
    private readonly List<GExpr?> _bodies = [];

    public int Declare(string name)
    {
        _names.Add(name);
        _bodies.Add(null);
        return _names.Count - 1;
    }

    public void Define(int rule, GExpr body)
    {
        if (_bodies[rule] is not null) throw new InvalidOperationException($"rule '{_names[rule]}' is defined twice");
        _bodies[rule] = body;
    }

    public bool IsDefined(int rule) => _bodies[rule] is not null;

    public int Add(string name, GExpr body)
    {
        int rule = Declare(name);
        Define(rule, body);
        return rule;
    }

    public ByteGrammar Build(int root)
    {
        var lowering = new Lowering();
        for (int r = 0; r < _bodies.Count; r++)
            if (_bodies[r] is null) throw new StructuredOutputException($"rule '{_names[r]}' is used but never defined", _names[r]);
        int initialRules = _bodies.Count;
        var ruleAlternatives = new List<List<List<(byte Kind, int Value)>>>();
        for (int r = 0; r < initialRules; r++) ruleAlternatives.Add(null!);
        for (int r = 0; r < initialRules; r++) ruleAlternatives[r] = lowering.Alternatives(_bodies[r]!, ruleAlternatives);

        var kinds = new List<byte>();
        var values = new List<int>();
        var alternatives = new int[ruleAlternatives.Count][];
        for (int r = 0; r < ruleAlternatives.Count; r++)
        {
            alternatives[r] = new int[ruleAlternatives[r].Count];
            for (int a = 0; a < ruleAlternatives[r].Count; a++)
            {
                alternatives[r][a] = kinds.Count;
                foreach (var (kind, value) in ruleAlternatives[r][a]) { kinds.Add(kind); values.Add(value); }
                kinds.Add(ByteGrammar.EndKind);
                values.Add(0);
                if (kinds.Count > MaxElements)
                    throw new StructuredOutputException($"the grammar is too large (over {MaxElements:N0} elements); lower the bounds (maxLength, maxItems, repetition counts)", null);
            }
        }
        var names = new string[ruleAlternatives.Count];
        for (int r = 0; r < names.Length; r++) names[r] = r < _names.Count ? _names[r] : lowering.HelperName(r);
        var grammar = new ByteGrammar
        {
            Kinds = [.. kinds], Values = [.. values], Sets = [.. lowering.Sets], Alternatives = alternatives, RuleNames = names, Root = root,
        };
        RefuseLeftRecursion(grammar);
        return grammar;
    }

    private sealed class Lowering
    {
        private readonly Dictionary<ByteSet, int> _setIds = [];
        private readonly Dictionary<int, string> _helperNames = [];
        public List<ByteSet> Sets { get; } = [];

        public string HelperName(int rule) => _helperNames.GetValueOrDefault(rule, $"rule{rule}");

        public List<List<(byte, int)>> Alternatives(GExpr body, List<List<List<(byte, int)>>> rules)
        {
            var output = new List<List<(byte, int)>>();
            if (body is GAlt alt)
                foreach (var item in alt.Items) AddAlternatives(item, rules, output);
            else AddAlternatives(body, rules, output);
            return output;
        }

        private void AddAlternatives(GExpr item, List<List<List<(byte, int)>>> rules, List<List<(byte, int)>> output)
        {
            if (item is GAlt nested) { foreach (var inner in nested.Items) AddAlternatives(inner, rules, output); return; }
            var sequence = new List<(byte, int)>();
            AppendSequence(item, rules, sequence);
            output.Add(sequence);
        }

        private void AppendSequence(GExpr item, List<List<List<(byte, int)>>> rules, List<(byte, int)> sequence)
        {
            switch (item)
            {
                case GByte b:
                    sequence.Add((ByteGrammar.BytesKind, SetId(b.Set)));
                    break;
                case GSeq seq:
                    foreach (var inner in seq.Items) AppendSequence(inner, rules, sequence);
                    break;
                case GRef r:
                    sequence.Add((ByteGrammar.RuleKind, r.Rule));
                    break;
                case GAlt alt:
                    sequence.Add((ByteGrammar.RuleKind, Helper("alt", alt, rules)));
                    break;
                case GRepeat rep:
                    AppendRepeat(rep, rules, sequence);
                    break;
                default:
                    throw new InvalidOperationException($"unknown grammar expression {item.GetType().Name}");
            }
        }

        private void AppendRepeat(GRepeat rep, List<List<List<(byte, int)>>> rules, List<(byte, int)> sequence)
        {
            if (rep.Min < 0 || (rep.Max >= 0 && rep.Max < rep.Min)) throw new StructuredOutputException($"a repetition needs 0 <= min <= max, found {{{rep.Min},{rep.Max}}}", null);
            long total = (long)Math.Max(rep.Min, rep.Max) * 2;
            if (total > MaxElements) throw new StructuredOutputException($"a repetition of up to {Math.Max(rep.Min, rep.Max):N0} items is too large", null);
            // The item as one element: itself when it is a byte set or a rule, else a helper rule.
            (byte, int) unit = rep.Item switch
            {
                GByte b => (ByteGrammar.BytesKind, SetId(b.Set)),
                GRef r => (ByteGrammar.RuleKind, r.Rule),
                _ => (ByteGrammar.RuleKind, Helper("item", rep.Item, rules)),
            };
            for (int i = 0; i < rep.Min; i++) sequence.Add(unit);
            if (rep.Max < 0)
            {
                // R ::= unit R | ε   (tail recursive: the automaton does not grow its stack)
                int star = NewRule("star", rules);
                rules[star] = [[unit, (ByteGrammar.RuleKind, star)], []];
                sequence.Add((ByteGrammar.RuleKind, star));
            }
            else if (rep.Max > rep.Min)
            {
                // O1 ::= unit | ε ; Ok ::= unit O(k-1) | ε
                int previous = -1;
                for (int k = 1; k <= rep.Max - rep.Min; k++)
                {
                    int optional = NewRule("opt", rules);
                    rules[optional] = previous < 0 ? [[unit], []] : [[unit, (ByteGrammar.RuleKind, previous)], []];
                    previous = optional;
                }
                sequence.Add((ByteGrammar.RuleKind, previous));
            }
        }

        private int Helper(string kind, GExpr body, List<List<List<(byte, int)>>> rules)
        {
            int rule = NewRule(kind, rules);
            rules[rule] = Alternatives(body, rules);
            return rule;
        }

        private int NewRule(string kind, List<List<List<(byte, int)>>> rules)
        {
            rules.Add(null!);
            int rule = rules.Count - 1;
            _helperNames[rule] = $"{kind}{rule}";
            return rule;
        }

        private int SetId(ByteSet set)
        {
            if (set.IsEmpty) throw new StructuredOutputException("an empty byte set matches nothing", null);
            if (!_setIds.TryGetValue(set, out int id))
            {
                id = Sets.Count;
                Sets.Add(set);
                _setIds[set] = id;
            }
            return id;
        }
    }

    /// <summary>Refuses a rule that can reach itself before consuming a byte.</summary>
    private static void RefuseLeftRecursion(ByteGrammar g)
    {
        int rules = g.Alternatives.Length;
        var nullable = new bool[rules];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < rules; r++)
            {
                if (nullable[r]) continue;
                foreach (int start in g.Alternatives[r])
                {
                    int p = start;
                    while (g.Kinds[p] == ByteGrammar.RuleKind && nullable[g.Values[p]]) p++;
                    if (g.Kinds[p] == ByteGrammar.EndKind) { nullable[r] = changed = true; break; }
                }
            }
        }
        // Edges r → s when s can come first in r; look for a cycle.
        var first = new List<int>[rules];
        for (int r = 0; r < rules; r++)
        {
            first[r] = [];
            foreach (int start in g.Alternatives[r])
                for (int p = start; g.Kinds[p] == ByteGrammar.RuleKind; p++)
                {
                    first[r].Add(g.Values[p]);
                    if (!nullable[g.Values[p]]) break;
                }
        }
        var color = new byte[rules];   // 0 new, 1 on the path, 2 done
        var stack = new Stack<(int Rule, int Next)>();
        for (int root = 0; root < rules; root++)
        {
            if (color[root] != 0) continue;
            stack.Push((root, 0));
            color[root] = 1;
            while (stack.Count > 0)
            {
                var (r, next) = stack.Pop();
                if (next < first[r].Count)
                {
                    stack.Push((r, next + 1));
                    int s = first[r][next];
                    if (color[s] == 1)
                        throw new StructuredOutputException($"rule '{g.RuleNames[s]}' is left-recursive (it can reach itself before matching any character); rewrite it with repetition, e.g. x ::= y (\"+\" y)*", g.RuleNames[s]);
                    if (color[s] == 0) { color[s] = 1; stack.Push((s, 0)); }
                }
                else color[r] = 2;
            }
        }
    }
}

/// <summary>A constraint that cannot be compiled: an unsupported keyword, a malformed schema, regex or grammar.</summary>
public sealed class StructuredOutputException(string message, string? where) : Exception(message)
{
    /// <summary>Where in the constraint: a JSON pointer into the schema, a rule name, or a position; null when not one place.</summary>
    public string? Where { get; } = where;
}

namespace Alora.Structured;

/// <summary>
/// Runs a <see cref="ByteGrammar"/> byte by byte as a pushdown automaton whose configurations are interned, so
/// that it acts like a lazily built DFA: a <em>stack</em> is a chain of grammar positions (the element to match
/// next, then where to return when its alternative ends), hash-consed to an id; a <em>state</em> is the set of
/// stacks the bytes so far allow (ambiguity is a set, not backtracking), interned to an id; and each
/// (state, byte) transition is computed once and kept in a table. A stack's top is always a byte-set element:
/// rule references are expanded when a stack is made, and a reference in tail position returns straight to its
/// caller's caller, so repetitions (right recursion) run in constant stack depth.
/// Not thread-safe: <see cref="TokenConstraint"/> serializes access.
/// </summary>
internal sealed class GrammarAutomaton
{
    public const int Dead = -1;
    private const int Unknown = -2;
    /// <summary>The stack id of "nothing left": the grammar is complete.</summary>
    private const int Complete = -1;
    /// <summary>Above this many states or stacks the constraint is refused as too ambiguous.</summary>
    public const int MaxStates = 1 << 20;

    private readonly ByteGrammar _g;
    // Stacks: node = (position, parent stack id).
    private readonly List<(int Position, int Parent)> _stacks = [];
    private readonly Dictionary<(int, int), int> _stackIds = [];
    // States: sorted stack ids (Complete = -1 first when the grammar may end here).
    private readonly List<int[]> _states = [];
    private readonly Dictionary<int[], int> _stateIds = new(new IntArrayComparer());
    private int[] _next = [];    // [states × 256] transition table, Unknown until computed
    // Scratch for closures.
    private readonly HashSet<(int, int)> _visited = [];
    private readonly SortedSet<int> _collect = [];

    public GrammarAutomaton(ByteGrammar grammar)
    {
        _g = grammar;
        _collect.Clear();
        _visited.Clear();
        foreach (int start in _g.Alternatives[_g.Root]) Expand(start, Complete);
        Initial = Intern();
        if (_states[Initial].Length == 0) throw new StructuredOutputException("the grammar matches nothing", null);
    }

    public int Initial { get; }

    /// <summary>Whether the bytes so far form a complete match.</summary>
    public bool IsAccepting(int state) => _states[state].Length > 0 && _states[state][0] == Complete;

    /// <summary>Whether the match is complete and nothing may follow.</summary>
    public bool IsFinal(int state) => _states[state] is [Complete];

    /// <summary>The state after one more byte, or <see cref="Dead"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public int Next(int state, byte b)
    {
        int slot = state * 256 + b;
        int next = _next[slot];
        return next != Unknown ? next : Compute(state, b, slot);
    }

    private int Compute(int state, byte b, int slot)
    {
        int next;
        _collect.Clear();
        _visited.Clear();
        foreach (int stack in _states[state])
        {
            if (stack == Complete) continue;
            var (position, parent) = _stacks[stack];
            if (_g.Sets[_g.Values[position]].Contains(b)) Expand(position + 1, parent);
        }
        next = _collect.Count == 0 ? Dead : Intern();
        _next[slot] = next;   // Intern may have grown the table; index it afresh
        return next;
    }

    /// <summary>The state after a run of bytes, or <see cref="Dead"/>.</summary>
    public int Advance(int state, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            state = Next(state, b);
            if (state == Dead) return Dead;
        }
        return state;
    }

    /// <summary>Adds to <see cref="_collect"/> the stacks (with byte-set tops) that position-then-parent reaches without consuming a byte.</summary>
    private void Expand(int position, int parent)
    {
        if (!_visited.Add((position, parent))) return;
        switch (_g.Kinds[position])
        {
            case ByteGrammar.EndKind:
                if (parent == Complete) _collect.Add(Complete);
                else
                {
                    var (returnTo, below) = _stacks[parent];
                    Expand(returnTo, below);
                }
                break;
            case ByteGrammar.BytesKind:
                _collect.Add(StackId(position, parent));
                break;
            default:
                int continuation = position + 1;
                int caller = _g.Kinds[continuation] == ByteGrammar.EndKind ? parent : StackId(continuation, parent);
                foreach (int start in _g.Alternatives[_g.Values[position]]) Expand(start, caller);
                break;
        }
    }

    private int StackId(int position, int parent)
    {
        if (_stackIds.TryGetValue((position, parent), out int id)) return id;
        if (_stacks.Count >= MaxStates) throw new StructuredOutputException($"the constraint needs more than {MaxStates:N0} parser stacks (too deeply nested or too ambiguous)", null);
        id = _stacks.Count;
        _stacks.Add((position, parent));
        _stackIds[(position, parent)] = id;
        return id;
    }

    private int Intern()
    {
        int[] key = [.. _collect];
        if (_stateIds.TryGetValue(key, out int id)) return id;
        if (_states.Count >= MaxStates) throw new StructuredOutputException($"the constraint needs more than {MaxStates:N0} parser states (too deeply nested or too ambiguous)", null);
        id = _states.Count;
        _states.Add(key);
        _stateIds[key] = id;
        if (_next.Length < _states.Count * 256)
        {
            int old = _next.Length;
            Array.Resize(ref _next, Math.Max(_states.Count * 256, old * 2));
            _next.AsSpan(old).Fill(Unknown);
        }
        return id;
    }

    private sealed class IntArrayComparer : IEqualityComparer<int[]>
    {
        public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(int[] a)
        {
            var h = new HashCode();
            foreach (int v in a) h.Add(v);
            return h.ToHashCode();
        }
    }
}

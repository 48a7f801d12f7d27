using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Structured;

/// <summary>
/// A compiled constraint bound to a vocabulary: the grammar's automaton and a cache of token masks per automaton
/// state. A state's mask is computed once by walking the vocabulary trie (a rejected prefix skips its subtree) and
/// reused by every request with the same constraint, so the usual step costs a table lookup and a pass over the
/// logits. Compiled constraints are cached per vocabulary by their text. Thread-safe (one lock per constraint).
/// </summary>
public sealed class TokenConstraint
{
    private const long MaskCacheBytes = 64L << 20;
    private static readonly ConditionalWeakTable<TokenVocabulary, CompiledCache> Compiled = new();

    private readonly GrammarAutomaton _automaton;
    private readonly Dictionary<int, ulong[]> _masks = [];
    private readonly int[] _walkStates;    // [max token bytes + 1] the automaton state at each trie depth
    private readonly object _lock = new();

    internal TokenConstraint(ByteGrammar grammar, TokenVocabulary vocabulary)
    {
        _automaton = new GrammarAutomaton(grammar);
        Vocabulary = vocabulary;
        _walkStates = new int[vocabulary.MaxDepth + 1];
    }

    public TokenVocabulary Vocabulary { get; }

    /// <summary>Masks computed (each one trie walk) and served from the cache, since the constraint was compiled.</summary>
    public long MasksComputed { get; private set; }
    public long MasksReused { get; private set; }

    /// <summary>Compiles a constraint for a vocabulary, or returns the one compiled before for the same text.</summary>
    /// <exception cref="StructuredOutputException">The constraint is malformed or uses what is not supported; the message names it.</exception>
    public static TokenConstraint Compile(OutputConstraint constraint, TokenVocabulary vocabulary)
    {
        var cache = Compiled.GetValue(vocabulary, _ => new CompiledCache());
        string key = Key(constraint);
        lock (cache)
            if (cache.TryGet(key, out var found)) return found;
        var compiled = new TokenConstraint(ConstraintGrammar.Build(constraint), vocabulary);
        lock (cache) cache.Add(key, compiled);
        return compiled;
    }

    /// <summary>A new cursor at the start of the output.</summary>
    public ConstraintMatcher Start() => new(this, _automaton.Initial);

    internal static string Key(OutputConstraint c) => c.Kind switch
    {
        ConstraintKind.JsonSchema => (c.JsonWhitespace ? "schema:" : "compact schema:") + c.Schema!.ToJsonString(),
        ConstraintKind.Choice => "choice:" + JsonSerializer.Serialize(c.Choices),
        ConstraintKind.JsonObject => c.JsonWhitespace ? "object" : "compact object",
        _ => $"{c.Kind}:{c.Text}",
    };

    internal bool IsAccepting(int state) { lock (_lock) return _automaton.IsAccepting(state); }

    internal bool IsFinal(int state) { lock (_lock) return _automaton.IsFinal(state); }

    internal int Advance(int state, ReadOnlySpan<byte> bytes) { lock (_lock) return _automaton.Advance(state, bytes); }

    /// <summary>[ceil(size / 64)] bit i set when token i may come next in this state (end-of-sequence not included).</summary>
    internal ulong[] Mask(int state)
    {
        lock (_lock)
        {
            if (_masks.TryGetValue(state, out var mask)) { MasksReused++; return mask; }
            mask = Walk(state);
            MasksComputed++;
            if ((long)(_masks.Count + 1) * mask.Length * sizeof(ulong) > MaskCacheBytes) _masks.Clear();
            _masks[state] = mask;
            return mask;
        }
    }

    private ulong[] Walk(int state)
    {
        var v = Vocabulary;
        var mask = new ulong[(v.Size + 63) >> 6];
        var states = _walkStates;
        byte[] label = v.Label;
        int[] depth = v.Depth, subtreeEnd = v.SubtreeEnd, tokenStart = v.TokenStart, tokenIds = v.TokenIds;
        states[0] = state;
        int nodes = label.Length;
        for (int n = 1; n < nodes;)
        {
            int d = depth[n];
            int next = _automaton.Next(states[d - 1], label[n]);
            if (next == GrammarAutomaton.Dead) { n = subtreeEnd[n]; continue; }
            states[d] = next;
            for (int t = tokenStart[n]; t < tokenStart[n + 1]; t++)
            {
                int id = tokenIds[t];
                mask[id >> 6] |= 1UL << (id & 63);
            }
            n++;
        }
        return mask;
    }

    /// <summary>The last few compiled constraints of one vocabulary, most recent kept.</summary>
    private sealed class CompiledCache
    {
        private const int Capacity = 32;
        private readonly LinkedList<(string Key, TokenConstraint Value)> _order = new();
        private readonly Dictionary<string, LinkedListNode<(string, TokenConstraint)>> _byKey = [];

        public bool TryGet(string key, out TokenConstraint value)
        {
            if (_byKey.TryGetValue(key, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                value = node.Value.Item2;
                return true;
            }
            value = null!;
            return false;
        }

        public void Add(string key, TokenConstraint value)
        {
            if (_byKey.ContainsKey(key)) return;
            _byKey[key] = _order.AddFirst((key, value));
            if (_order.Count > Capacity)
            {
                _byKey.Remove(_order.Last!.Value.Key);
                _order.RemoveLast();
            }
        }
    }
}

/// <summary>
/// One request's position in its constraint: masks the logits of the next token and follows the tokens drawn.
/// End-of-sequence ids are allowed exactly where the output may end.
/// </summary>
public sealed class ConstraintMatcher
{
    private readonly TokenConstraint _constraint;
    private int _state;

    internal ConstraintMatcher(TokenConstraint constraint, int state)
    {
        _constraint = constraint;
        _state = state;
    }

    /// <summary>Computes the first token mask now (it is cached), so the thread that samples finds it ready.</summary>
    public void Prepare() => _constraint.Mask(_state);

    /// <summary>The output so far is a complete match (it may still go on).</summary>
    public bool IsAccepting => _constraint.IsAccepting(_state);

    /// <summary>The output is complete and nothing may follow: the request is done.</summary>
    public bool IsFinal => _constraint.IsFinal(_state);

    /// <summary>Sets the logit of every token that may not come next to −∞ ([V]; ids past the vocabulary are never allowed).</summary>
    public void MaskLogits(Span<float> logits, ReadOnlySpan<int> endOfSequenceIds)
    {
        ulong[] mask = _constraint.Mask(_state);
        int known = Math.Min(logits.Length, _constraint.Vocabulary.Size);
        bool accepting = IsAccepting;
        Span<float> saved = stackalloc float[Math.Min(endOfSequenceIds.Length, 16)];
        for (int i = 0; i < saved.Length; i++) saved[i] = (uint)endOfSequenceIds[i] < (uint)logits.Length ? logits[endOfSequenceIds[i]] : 0;
        for (int w = 0; w < mask.Length; w++)
        {
            ulong bits = mask[w];
            if (bits == ulong.MaxValue) continue;
            int end = Math.Min(known, (w + 1) << 6);
            for (int id = w << 6; id < end; id++)
                if ((bits >> (id & 63) & 1) == 0) logits[id] = float.NegativeInfinity;
        }
        logits[known..].Fill(float.NegativeInfinity);
        for (int i = 0; i < saved.Length; i++)
        {
            int eos = endOfSequenceIds[i];
            if ((uint)eos < (uint)logits.Length) logits[eos] = accepting ? saved[i] : float.NegativeInfinity;
        }
    }

    /// <summary>Follows a drawn token (not end-of-sequence); throws if the constraint does not allow it.</summary>
    public void Accept(int token)
    {
        var bytes = (uint)token < (uint)_constraint.Vocabulary.Size ? _constraint.Vocabulary.Bytes[token] : null;
        int next = bytes is null ? GrammarAutomaton.Dead : _constraint.Advance(_state, bytes);
        if (next == GrammarAutomaton.Dead) throw new InvalidOperationException($"token {token} does not continue the constrained output");
        _state = next;
    }
}

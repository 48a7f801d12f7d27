using System.Runtime.CompilerServices;
using Alora.Tokenization;

namespace Alora.Structured;

/// <summary>
/// The vocabulary as a byte trie, for computing token masks: every token's mid-sequence bytes
/// (<see cref="Tokenizer.TokenBytes"/>) are a path from the root, and the nodes are stored in preorder with
/// their subtree sizes, so a walk is one pass over flat arrays that skips a whole subtree when the grammar
/// rejects its prefix (the token-trie walk of llguidance and XGrammar). Special tokens are not in it: a
/// constraint never allows them, except end-of-sequence where the grammar may end.
/// </summary>
public sealed class TokenVocabulary
{
    private static readonly ConditionalWeakTable<Tokenizer, TokenVocabulary> Cache = new();

    // Preorder nodes; node 0 is the root (the empty prefix).
    internal readonly byte[] Label;        // [nodes] the byte on the edge into the node
    internal readonly int[] Depth;         // [nodes] bytes from the root
    internal readonly int[] SubtreeEnd;    // [nodes] the first node after the node's subtree
    internal readonly int[] TokenStart;    // [nodes + 1] the node's tokens are TokenIds[TokenStart[n]..TokenStart[n+1]]
    internal readonly int[] TokenIds;      // [tokens in the trie]
    internal readonly byte[]?[] Bytes;     // [size] each id's bytes (null: not in the trie)

    public int Size { get; }
    public int MaxDepth { get; }

    /// <summary>The vocabulary of a tokenizer (built once per tokenizer).</summary>
    public static TokenVocabulary For(Tokenizer tokenizer) => Cache.GetValue(tokenizer, t => new TokenVocabulary(t.TokenBytes()));

    /// <param name="tokenBytes">[ids] each id's bytes, null for ids a constraint never allows.</param>
    public TokenVocabulary(IReadOnlyList<byte[]?> tokenBytes)
    {
        Size = tokenBytes.Count;
        Bytes = [.. tokenBytes];
        // Sort ids by their bytes: preorder of the trie is lexicographic order of the paths.
        var ids = Enumerable.Range(0, Size).Where(id => Bytes[id] is { Length: > 0 }).ToArray();
        Array.Sort(ids, (a, b) => { int c = Bytes[a].AsSpan().SequenceCompareTo(Bytes[b]); return c != 0 ? c : a.CompareTo(b); });

        var label = new List<byte> { 0 };
        var depth = new List<int> { 0 };
        var tokenStart = new List<int> { 0 };
        var tokenIds = new List<int>(ids.Length);
        byte[] previous = [];
        foreach (int id in ids)
        {
            byte[] bytes = Bytes[id]!;
            int common = 0;
            while (common < previous.Length && common < bytes.Length && previous[common] == bytes[common]) common++;
            for (int d = common; d < bytes.Length; d++)
            {
                label.Add(bytes[d]);
                depth.Add(d + 1);
                tokenStart.Add(tokenIds.Count);
            }
            tokenIds.Add(id);
            previous = bytes;
        }
        tokenStart.Add(tokenIds.Count);
        Label = [.. label];
        Depth = [.. depth];
        TokenStart = [.. tokenStart];   // a node's tokens were appended right after it was made (ids sorted by bytes)
        TokenIds = [.. tokenIds];
        SubtreeEnd = new int[Label.Length];
        // A node's subtree ends at the next node whose depth is not greater.
        var open = new Stack<int>();
        for (int n = 0; n < Label.Length; n++)
        {
            while (open.Count > 0 && Depth[open.Peek()] >= Depth[n]) SubtreeEnd[open.Pop()] = n;
            open.Push(n);
        }
        while (open.Count > 0) SubtreeEnd[open.Pop()] = Label.Length;
        MaxDepth = Depth.Length == 0 ? 0 : Depth.Max();
    }
}

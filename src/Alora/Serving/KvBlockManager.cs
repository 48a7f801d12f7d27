using Alora.Models;

namespace Alora.Serving;

// Legend: N = blocks in the pool, B = tokens per block.

/// <summary>
/// What computed the keys and values of one full block, besides its tokens and its prefix: the base model
/// (<see cref="Base"/>), or an adapter from a slot of the block on. A block wholly before a request's adapter
/// activation start is the base model's, whichever request computed it; a block that holds the activation
/// start records where in the block the adapter took over, because two requests with the same tokens and
/// adapter but different starts (a later invocation) compute different keys there.
/// </summary>
public readonly record struct BlockLineage(long AdapterId, int FirstAdaptedSlot)
{
    public static BlockLineage Base => default;
    public bool IsBase => AdapterId == 0;

    /// <summary>The lineage of block <paramref name="blockIndex"/> of a request whose adapter (id 0: none) applies from <paramref name="adapterStart"/>.</summary>
    public static BlockLineage Of(int blockIndex, int blockSize, long adapterId, int adapterStart)
    {
        long blockStart = (long)blockIndex * blockSize;
        if (adapterId == 0 || adapterStart >= blockStart + blockSize) return Base;
        return new BlockLineage(adapterId, (int)Math.Max(0, adapterStart - blockStart));
    }
}

/// <summary>
/// The engine's KV block allocator and prefix cache. It owns every block of a <see cref="KvPool"/>:
/// <list type="bullet">
/// <item>a block in use has a reference count (requests sharing a cached prefix share its blocks);</item>
/// <item>a full block is content-addressed by a chained hash of (parent hash, its token ids, its
/// <see cref="BlockLineage"/>), so a request finds the blocks of its prompt that any earlier request computed
/// the same way; a hit is confirmed by comparing the token ids, the lineage and the parent block (id and
/// allocation generation), never by the hash alone;</item>
/// <item>a freed block keeps its contents and stays findable until the pool needs it: free blocks form one
/// queue, evicted from the head; cached blocks join at the tail (least recently used first out), blocks
/// with nothing findable join at the head.</item>
/// </list>
/// Single-owner: only the engine thread calls it.
/// </summary>
public sealed class KvBlockManager
{
    private readonly int[] _referenceCounts;   // [N]
    private readonly int[] _generations;       // [N] bumped each time a block is handed out anew
    private readonly int[] _tokens;            // [N, B] token ids of a registered block
    private readonly BlockLineage[] _lineages; // [N]
    private readonly int[] _parents;           // [N] parent block id, -1 for a first block
    private readonly int[] _parentGenerations; // [N]
    private readonly ulong[] _hashes;          // [N]
    private readonly bool[] _registered;       // [N] findable through _byHash
    private readonly Dictionary<ulong, int> _byHash = [];
    // The free queue: a doubly linked list over block ids (-1 ends it); head is evicted first.
    private readonly int[] _next, _previous;   // [N]
    private readonly bool[] _inFreeQueue;      // [N]
    private int _head = -1, _tail = -1;

    public KvBlockManager(KvPool pool, bool prefixCaching = true)
    {
        Pool = pool;
        PrefixCaching = prefixCaching;
        int n = pool.BlockCount, b = pool.BlockSize;
        _referenceCounts = new int[n];
        _generations = new int[n];
        _tokens = new int[(long)n * b];
        _lineages = new BlockLineage[n];
        _parents = new int[n];
        _parentGenerations = new int[n];
        _hashes = new ulong[n];
        _registered = new bool[n];
        _next = new int[n];
        _previous = new int[n];
        _inFreeQueue = new bool[n];
        for (int i = 0; i < n; i++) PushTail(i);   // lowest id first out
    }

    public KvPool Pool { get; }
    public bool PrefixCaching { get; }
    public int BlockSize => Pool.BlockSize;
    public int BlockCount => Pool.BlockCount;
    /// <summary>Blocks that can be handed out now: free ones, cached or not.</summary>
    public int FreeBlockCount { get; private set; }
    /// <summary>Free blocks that are still findable in the prefix cache.</summary>
    public int CachedFreeBlockCount { get; private set; }
    public int UsedBlockCount => BlockCount - FreeBlockCount;
    /// <summary>Blocks findable in the prefix cache, in use or not.</summary>
    public int RegisteredBlockCount => _byHash.Count;
    /// <summary>Cached blocks reclaimed for other contents.</summary>
    public long Evictions { get; private set; }

    /// <summary>Replaces the block hash, so tests can force collisions. Null: the built-in 64-bit hash.</summary>
    internal Func<ulong, ReadOnlyMemory<int>, BlockLineage, ulong>? HashOverride { get; set; }

    public int ReferenceCount(int block) => _referenceCounts[block];
    public bool IsRegistered(int block) => _registered[block];

    /// <summary>Free blocks in eviction order (head first), for tests.</summary>
    public IReadOnlyList<int> FreeQueue()
    {
        var order = new List<int>(FreeBlockCount);
        for (int b = _head; b >= 0; b = _next[b]) order.Add(b);
        return order;
    }

    /// <summary>The chained hash of a full block.</summary>
    public ulong Hash(ulong parentHash, ReadOnlySpan<int> tokens, BlockLineage lineage)
    {
        if (HashOverride is { } custom) return custom(parentHash, tokens.ToArray(), lineage);
        // 64-bit multiply-xorshift mixing (splitmix64's finalizer) over every input word.
        ulong h = Mix(parentHash ^ 0x9E3779B97F4A7C15UL);
        h = Mix(h ^ (ulong)lineage.AdapterId);
        h = Mix(h ^ (uint)lineage.FirstAdaptedSlot);
        foreach (int t in tokens) h = Mix(h ^ (uint)t);
        return h;
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// The longest run of leading full blocks of <paramref name="tokens"/> that the cache holds, computed as a
    /// request with this adapter and activation start would compute them, up to <paramref name="maxTokens"/>
    /// tokens. Takes nothing: <see cref="Acquire"/> does. Hashes of the hit blocks go to <paramref name="hashes"/>.
    /// </summary>
    public int FindCachedPrefix(ReadOnlySpan<int> tokens, int maxTokens, long adapterId, int adapterStart, List<int> blocks, List<ulong> hashes)
    {
        blocks.Clear();
        hashes.Clear();
        if (!PrefixCaching) return 0;
        int b = BlockSize;
        ulong parentHash = 0;
        int parent = -1;
        for (int index = 0; (long)(index + 1) * b <= Math.Min(maxTokens, tokens.Length); index++)
        {
            var blockTokens = tokens.Slice(index * b, b);
            var lineage = BlockLineage.Of(index, b, adapterId, adapterStart);
            ulong hash = Hash(parentHash, blockTokens, lineage);
            if (!_byHash.TryGetValue(hash, out int block) || !Confirms(block, blockTokens, lineage, parent)) break;
            blocks.Add(block);
            hashes.Add(hash);
            parentHash = hash;
            parent = block;
        }
        return blocks.Count * b;
    }

    private bool Confirms(int block, ReadOnlySpan<int> tokens, BlockLineage lineage, int parent)
        => _lineages[block] == lineage && _parents[block] == parent
            && (parent < 0 || _parentGenerations[block] == _generations[parent])
            && tokens.SequenceEqual(_tokens.AsSpan(block * BlockSize, BlockSize));

    /// <summary>How many blocks taking <paramref name="cachedBlocks"/> and then <paramref name="newBlocks"/> fresh ones would consume from the free queue.</summary>
    public int BlocksNeeded(List<int> cachedBlocks, int newBlocks)
    {
        int fromQueue = newBlocks;
        foreach (int block in cachedBlocks) if (_referenceCounts[block] == 0) fromQueue++;
        return fromQueue;
    }

    /// <summary>Takes a reference on cached blocks found by <see cref="FindCachedPrefix"/>.</summary>
    public void Acquire(List<int> cachedBlocks)
    {
        foreach (int block in cachedBlocks)
        {
            if (_referenceCounts[block] == 0) RemoveFromQueue(block);
            _referenceCounts[block]++;
        }
    }

    /// <summary>Hands out a fresh block (evicting the least recently used cached one if that is what is free).</summary>
    public int Allocate()
    {
        if (_head < 0) throw new InvalidOperationException("no free KV block: the scheduler must check FreeBlockCount first");
        int block = _head;
        RemoveFromQueue(block);
        if (_registered[block])
        {
            _byHash.Remove(_hashes[block]);
            _registered[block] = false;
            Evictions++;
        }
        _generations[block]++;
        _referenceCounts[block] = 1;
        return block;
    }

    /// <summary>
    /// Records a full block's contents and makes it findable, unless another block already answers to its
    /// hash (the same contents computed twice at once, or a collision): then this one stays private.
    /// </summary>
    public void Register(int block, ulong hash, ReadOnlySpan<int> tokens, BlockLineage lineage, int parent)
    {
        if (!PrefixCaching || _registered[block] || _byHash.ContainsKey(hash)) return;
        tokens.CopyTo(_tokens.AsSpan(block * BlockSize, BlockSize));
        _lineages[block] = lineage;
        _parents[block] = parent;
        _parentGenerations[block] = parent < 0 ? 0 : _generations[parent];
        _hashes[block] = hash;
        _registered[block] = true;
        _byHash[hash] = block;
    }

    /// <summary>Drops one reference to each block, last block first, so a request's tail is evicted before its shared head.</summary>
    public void Release(ReadOnlySpan<int> blocks)
    {
        for (int i = blocks.Length - 1; i >= 0; i--)
        {
            int block = blocks[i];
            if (_referenceCounts[block] <= 0) throw new InvalidOperationException($"KV block {block} is already free");
            if (--_referenceCounts[block] > 0) continue;
            if (_registered[block]) PushTail(block); else PushHead(block);
        }
    }

    /// <summary>Forgets every cached block that <paramref name="adapterId"/> computed (an unloaded adapter's).</summary>
    public int Evict(long adapterId)
    {
        int evicted = 0;
        for (int block = 0; block < BlockCount; block++)
        {
            if (!_registered[block] || _lineages[block].AdapterId != adapterId) continue;
            bool free = _inFreeQueue[block];
            if (free) RemoveFromQueue(block);
            _byHash.Remove(_hashes[block]);
            _registered[block] = false;
            evicted++;
            if (free) PushHead(block);
        }
        return evicted;
    }

    private void PushTail(int block)
    {
        _previous[block] = _tail;
        _next[block] = -1;
        if (_tail >= 0) _next[_tail] = block; else _head = block;
        _tail = block;
        Enqueued(block);
    }

    private void PushHead(int block)
    {
        _next[block] = _head;
        _previous[block] = -1;
        if (_head >= 0) _previous[_head] = block; else _tail = block;
        _head = block;
        Enqueued(block);
    }

    private void Enqueued(int block)
    {
        _inFreeQueue[block] = true;
        FreeBlockCount++;
        if (_registered[block]) CachedFreeBlockCount++;
    }

    private void RemoveFromQueue(int block)
    {
        int p = _previous[block], n = _next[block];
        if (p >= 0) _next[p] = n; else _head = n;
        if (n >= 0) _previous[n] = p; else _tail = p;
        _inFreeQueue[block] = false;
        FreeBlockCount--;
        if (_registered[block]) CachedFreeBlockCount--;
    }
}

using Alora.Models;

namespace Alora.Inference;

/// <summary>
/// One sequence's view of the paged KV cache: a block table, the token ids whose keys/values are cached,
/// and what computed them. Forks share blocks; a write into a shared block copies it first (copy-on-write).
/// </summary>
public sealed class KvSequence : IDisposable
{
    private int[] _blockTable = new int[4];
    private readonly List<int> _tokens = [];
    private readonly List<ForwardAdapter?> _computedBy = [];   // per position: null = the base model

    public KvSequence(PagedKvCache cache) => Cache = cache;

    public PagedKvCache Cache { get; }
    /// <summary>Tokens whose keys and values are in the cache (positions 0..Length-1).</summary>
    public int Length => _tokens.Count;
    public int BlockCount { get; private set; }
    public IReadOnlyList<int> Tokens => _tokens;
    public ReadOnlySpan<int> BlockTable => _blockTable.AsSpan(0, BlockCount);
    /// <summary>The block table as the forward pass takes it (valid until the next append or truncation).</summary>
    public ReadOnlyMemory<int> BlockTableMemory => _blockTable.AsMemory(0, BlockCount);
    private bool _disposed;

    /// <summary>
    /// Makes positions [Length, Length + count) writable: allocates blocks as needed and un-shares a
    /// shared last block. Call before a forward pass that appends <paramref name="count"/> tokens.
    /// </summary>
    public void PrepareAppend(int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int blockSize = Cache.BlockSize;
        int needed = (Length + count + blockSize - 1) / blockSize;
        bool copyLast = Length % blockSize != 0 && count > 0 && Cache.ReferenceCount(_blockTable[Length / blockSize]) > 1;
        // All or nothing: a request the pool cannot hold changes nothing.
        int newBlocks = Math.Max(0, needed - BlockCount) + (copyLast ? 1 : 0);
        if (newBlocks > Cache.FreeBlockCount)
            throw new KvCacheFullException(
                $"the KV cache is full: {newBlocks} more blocks of {blockSize} tokens needed, {Cache.FreeBlockCount} of {Cache.BlockCount} free; raise the cache size or shorten the context");
        if (copyLast)
        {
            int lastIndex = Length / blockSize;
            int last = _blockTable[lastIndex];
            {
                int copy = Cache.Allocate();
                Cache.CopyBlock(last, copy);
                Cache.Release(last);
                _blockTable[lastIndex] = copy;
            }
        }
        if (needed > _blockTable.Length) Array.Resize(ref _blockTable, Math.Max(needed, _blockTable.Length * 2));
        while (BlockCount < needed)
        {
            int block = Cache.Allocate();
            _blockTable[BlockCount++] = block;
        }
    }

    /// <summary>Sizes the bookkeeping for <paramref name="tokens"/> positions, so appends up to it allocate nothing.</summary>
    public void Reserve(int tokens)
    {
        _tokens.EnsureCapacity(tokens);
        _computedBy.EnsureCapacity(tokens);
        int blocks = (tokens + Cache.BlockSize - 1) / Cache.BlockSize;
        if (blocks > _blockTable.Length) Array.Resize(ref _blockTable, blocks);
    }

    /// <summary>
    /// Records tokens whose keys/values a forward pass has just written, and what computed each: the adapter
    /// for positions ≥ <paramref name="adapterStart"/>, the base model before.
    /// </summary>
    public void CommitAppend(ReadOnlySpan<int> tokenIds, ForwardAdapter? adapter = null, int adapterStart = 0)
    {
        if ((Length + tokenIds.Length + Cache.BlockSize - 1) / Cache.BlockSize > BlockCount)
            throw new InvalidOperationException("CommitAppend without PrepareAppend");
        foreach (int id in tokenIds)
        {
            _computedBy.Add(adapter is not null && _tokens.Count >= adapterStart ? adapter : null);
            _tokens.Add(id);
        }
    }

    /// <summary>What computed the cached keys/values at a position: null for the base model.</summary>
    public ForwardAdapter? ComputedBy(int position) => _computedBy[position];

    /// <summary>
    /// How many leading positions a request may reuse: the token ids must agree, and each position must have
    /// been computed exactly as the request would compute it (the base model before its adapter's start, the
    /// same adapter from there on). KV computed by an adapter is never served to the base model or to
    /// another adapter.
    /// </summary>
    public int ReusablePrefix(ReadOnlySpan<int> tokenIds, ForwardAdapter? adapter, int adapterStart)
    {
        int n = Math.Min(Length, tokenIds.Length), i = 0;
        while (i < n && _tokens[i] == tokenIds[i] && ReferenceEquals(_computedBy[i], adapter is not null && i >= adapterStart ? adapter : null)) i++;
        return i;
    }

    /// <summary>Drops cached positions from <paramref name="newLength"/> on, releasing blocks no longer needed.</summary>
    public void Truncate(int newLength)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(newLength, Length);
        ArgumentOutOfRangeException.ThrowIfNegative(newLength);
        _tokens.RemoveRange(newLength, _tokens.Count - newLength);
        _computedBy.RemoveRange(newLength, _computedBy.Count - newLength);
        int needed = (newLength + Cache.BlockSize - 1) / Cache.BlockSize;
        while (BlockCount > needed) Cache.Release(_blockTable[--BlockCount]);
    }

    /// <summary>A new sequence sharing this one's cached positions (copy-on-write).</summary>
    public KvSequence Fork()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var fork = new KvSequence(Cache) { _blockTable = (int[])_blockTable.Clone(), BlockCount = BlockCount };
        for (int i = 0; i < BlockCount; i++) Cache.Retain(_blockTable[i]);
        fork._tokens.AddRange(_tokens);
        fork._computedBy.AddRange(_computedBy);
        return fork;
    }

    public void Dispose()
    {
        if (_disposed) return;
        for (int i = 0; i < BlockCount; i++) Cache.Release(_blockTable[i]);
        BlockCount = 0;
        _tokens.Clear();
        _computedBy.Clear();
        _disposed = true;
    }
}

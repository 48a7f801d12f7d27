using Alora.Models;

namespace Alora.Inference;

/// <summary>
/// A reference-counted allocator over a <see cref="KvPool"/> for caller-held sequences (<see cref="KvSequence"/>):
/// sequences can share blocks (forks, prefix reuse); a block is free when its count drops to 0, and its
/// contents are then forgotten. Free blocks are handed out lowest id first, so tests can assert exact block
/// ids. The serving engine has its own allocator with a prefix cache (<c>Serving.KvBlockManager</c>).
/// </summary>
public sealed unsafe class PagedKvCache : IDisposable
{
    private readonly int[] _referenceCounts;
    private readonly SortedSet<int> _free = [];

    public PagedKvCache(int layerCount, int keyValueHeads, int headDim, int blockCount, int blockSize = 16)
        : this(new KvPool(layerCount, keyValueHeads, headDim, blockCount, blockSize)) { }

    public PagedKvCache(KvPool pool)
    {
        Pool = pool;
        _referenceCounts = new int[pool.BlockCount];
        for (int i = 0; i < pool.BlockCount; i++) _free.Add(i);
    }

    /// <summary>The block memory the forward pass reads and writes.</summary>
    public KvPool Pool { get; }
    public int LayerCount => Pool.LayerCount;
    public int KeyValueDim => Pool.KeyValueDim;
    public int BlockCount => Pool.BlockCount;
    public int BlockSize => Pool.BlockSize;
    public int FreeBlockCount => _free.Count;
    public long ByteCount => Pool.ByteCount;
    public long BytesPerBlock => Pool.BytesPerBlock;

    /// <summary>[N, Hkv, Dh, B] keys of one layer.</summary>
    public float* KeyBlocks(int layer) => Pool.KeyBlocks(layer);

    /// <summary>[N, Hkv, B, Dh] values of one layer.</summary>
    public float* ValueBlocks(int layer) => Pool.ValueBlocks(layer);

    public int ReferenceCount(int block) => _referenceCounts[block];

    public int Allocate()
    {
        if (_free.Count == 0)
            throw new KvCacheFullException($"the KV cache is full: all {BlockCount} blocks of {BlockSize} tokens are in use; raise the cache size or shorten the context");
        int block = _free.Min;
        _free.Remove(block);
        _referenceCounts[block] = 1;
        return block;
    }

    public void Retain(int block)
    {
        if (_referenceCounts[block] <= 0) throw new InvalidOperationException($"block {block} is free and cannot be retained");
        _referenceCounts[block]++;
    }

    public void Release(int block)
    {
        if (_referenceCounts[block] <= 0) throw new InvalidOperationException($"block {block} is already free");
        if (--_referenceCounts[block] == 0) _free.Add(block);
    }

    /// <summary>Copies every layer's keys and values of a block.</summary>
    public void CopyBlock(int source, int destination) => Pool.CopyBlock(source, destination);

    public void Dispose() => Pool.Dispose();
}

public sealed class KvCacheFullException(string message) : Exception(message);

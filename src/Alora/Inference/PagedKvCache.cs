using Alora.Tensors;

namespace Alora.Inference;

// Legend: L = layers, N = blocks in the pool, B = tokens per block, Dkv = Hkv·Dh.

/// <summary>
/// The KV pool: fixed-size blocks in one slab, [L, 2 (key, value), N, B·Dkv] f32; inside a block, keys are
/// [Hkv, Dh, B] (transposed) and values [Hkv, B, Dh] (see Kernels.Attention). Blocks are reference
/// counted so sequences can share them (forks, prefix reuse); a block is free when its count drops to 0.
/// Free blocks are handed out lowest id first, so tests can assert exact block ids.
/// </summary>
public sealed unsafe class PagedKvCache : IDisposable
{
    private readonly NativeSlab _slab;
    private readonly float* _base;
    private readonly int[] _referenceCounts;
    private readonly SortedSet<int> _free = [];

    public PagedKvCache(int layerCount, int keyValueDim, int blockCount, int blockSize = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        LayerCount = layerCount;
        KeyValueDim = keyValueDim;
        BlockCount = blockCount;
        BlockSize = blockSize;
        long floats = (long)layerCount * 2 * blockCount * blockSize * keyValueDim;
        _slab = new NativeSlab(floats * sizeof(float), "kv pool");
        _base = _slab.TakeFloats(floats, "kv blocks");
        _referenceCounts = new int[blockCount];
        for (int i = 0; i < blockCount; i++) _free.Add(i);
    }

    public int LayerCount { get; }
    public int KeyValueDim { get; }
    public int BlockCount { get; }
    public int BlockSize { get; }
    public int FreeBlockCount => _free.Count;
    public long ByteCount => _slab.ByteCount;

    /// <summary>Bytes one block holds across all layers (keys and values).</summary>
    public long BytesPerBlock => (long)LayerCount * 2 * BlockSize * KeyValueDim * sizeof(float);

    /// <summary>[N, Hkv, Dh, B] keys of one layer.</summary>
    public float* KeyBlocks(int layer) => _base + (long)layer * 2 * BlockCount * BlockSize * KeyValueDim;

    /// <summary>[N, Hkv, B, Dh] values of one layer.</summary>
    public float* ValueBlocks(int layer) => KeyBlocks(layer) + (long)BlockCount * BlockSize * KeyValueDim;

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

    /// <summary>Copies every layer's keys and values of a block (whole blocks: keys are stored transposed).</summary>
    public void CopyBlock(int source, int destination)
    {
        long bytes = (long)BlockSize * KeyValueDim * sizeof(float);
        for (int layer = 0; layer < LayerCount; layer++)
        {
            for (int kind = 0; kind < 2; kind++)
            {
                float* pool = kind == 0 ? KeyBlocks(layer) : ValueBlocks(layer);
                float* from = pool + (long)source * BlockSize * KeyValueDim;
                float* to = pool + (long)destination * BlockSize * KeyValueDim;
                Buffer.MemoryCopy(from, to, bytes, bytes);
            }
        }
    }

    public void Dispose() => _slab.Dispose();
}

public sealed class KvCacheFullException(string message) : Exception(message);

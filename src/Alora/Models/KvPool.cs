using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Models;

// Legend: L = layers, N = blocks in the pool, B = tokens per block, Dkv = Hkv·Dh.

/// <summary>
/// The memory of a paged KV cache: N fixed-size blocks in one slab, [L, 2 (key, value), N, B·Dkv] f32, each
/// block laid out as <see cref="KvBlockLayout"/> says. It only stores: which block belongs to which sequence,
/// and which blocks are free, cached or shared, is the business of an allocator above it (the engine's block
/// manager, or <c>PagedKvCache</c> for a caller-held sequence). The forward pass reads block tables and
/// writes the slots it is told to.
/// </summary>
public sealed unsafe class KvPool : IDisposable
{
    private readonly NativeSlab _slab;
    private readonly float* _base;

    public KvPool(int layerCount, int keyValueHeads, int headDim, int blockCount, int blockSize = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        LayerCount = layerCount;
        Layout = new KvBlockLayout(keyValueHeads, headDim, blockSize);
        BlockCount = blockCount;
        long floats = (long)layerCount * 2 * blockCount * Layout.BlockFloats;
        _slab = new NativeSlab(floats * sizeof(float), "kv pool");
        _base = _slab.TakeFloats(floats, "kv blocks");   // [L, 2, N, B·Dkv]
    }

    /// <summary>A pool able to hold <paramref name="tokenCapacity"/> tokens of <paramref name="config"/>'s model.</summary>
    public static KvPool ForModel(ModelConfig config, int tokenCapacity, int blockSize = 16)
        => new(config.LayerCount, config.KeyValueHeadCount, config.HeadDim, Math.Max(1, (tokenCapacity + blockSize - 1) / blockSize), blockSize);

    public int LayerCount { get; }
    public KvBlockLayout Layout { get; }
    public int BlockCount { get; }
    public int BlockSize => Layout.BlockSize;
    public int KeyValueDim => Layout.KeyValueHeads * Layout.HeadDim;
    public long ByteCount => _slab.ByteCount;

    /// <summary>Bytes one block holds across all layers (keys and values).</summary>
    public long BytesPerBlock => (long)LayerCount * 2 * Layout.BlockFloats * sizeof(float);

    /// <summary>[N, Hkv, Dh, B] keys of one layer.</summary>
    public float* KeyBlocks(int layer) => _base + (long)layer * 2 * BlockCount * Layout.BlockFloats;

    /// <summary>[N, Hkv, B, Dh] values of one layer.</summary>
    public float* ValueBlocks(int layer) => KeyBlocks(layer) + BlockCount * Layout.BlockFloats;

    /// <summary>Copies every layer's keys and values of a block (whole blocks: keys are stored transposed).</summary>
    public void CopyBlock(int source, int destination)
    {
        long bytes = Layout.BlockFloats * sizeof(float);
        for (int layer = 0; layer < LayerCount; layer++)
        {
            for (int kind = 0; kind < 2; kind++)
            {
                float* pool = kind == 0 ? KeyBlocks(layer) : ValueBlocks(layer);
                Buffer.MemoryCopy(pool + source * Layout.BlockFloats, pool + destination * Layout.BlockFloats, bytes, bytes);
            }
        }
    }

    public void Dispose() => _slab.Dispose();
}

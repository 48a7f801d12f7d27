namespace Alora.Kernels;

// Legend: Hkv = key-value heads, Dh = head size, B = tokens per block.

/// <summary>
/// Where one token's key and value live inside a KV block: keys [Hkv, Dh, B] (transposed, so one query's
/// scores against B keys are Dh broadcast-FMAs over a B-wide vector) and values [Hkv, B, Dh] (each value row
/// contiguous for the weighted sum). The pool, the attention kernel and the forward pass's scatter all use
/// this one definition.
/// </summary>
public readonly unsafe struct KvBlockLayout(int keyValueHeads, int headDim, int blockSize)
{
    public int KeyValueHeads { get; } = keyValueHeads;
    public int HeadDim { get; } = headDim;
    public int BlockSize { get; } = blockSize;

    /// <summary>Floats of one block's keys (and, separately, of its values) in one layer: B·Hkv·Dh.</summary>
    public long BlockFloats => (long)BlockSize * KeyValueHeads * HeadDim;

    /// <summary>Offset of (slot, kvHead, d) in a key block.</summary>
    public long KeyOffset(int slot, int kvHead, int d) => ((long)kvHead * HeadDim + d) * BlockSize + slot;

    /// <summary>Offset of (slot, kvHead, d) in a value block.</summary>
    public long ValueOffset(int slot, int kvHead, int d) => ((long)kvHead * BlockSize + slot) * HeadDim + d;

    /// <summary>Offset of the [Dh, B] key tile of one KV head in a block.</summary>
    public long KeyTileOffset(int kvHead) => (long)kvHead * HeadDim * BlockSize;

    /// <summary>Offset of the [B, Dh] value tile of one KV head in a block.</summary>
    public long ValueTileOffset(int kvHead) => (long)kvHead * BlockSize * HeadDim;

    /// <summary>Writes one token's key [Hkv·Dh] and value [Hkv·Dh] into slot <paramref name="slot"/> of a block.</summary>
    public void Write(float* keyBlock, float* valueBlock, int slot, float* key, float* value)
    {
        long rowBytes = (long)HeadDim * sizeof(float);
        for (int h = 0; h < KeyValueHeads; h++)
        {
            float* keyColumn = keyBlock + KeyOffset(slot, h, 0);
            float* headKey = key + (long)h * HeadDim;
            for (int d = 0; d < HeadDim; d++) keyColumn[(long)d * BlockSize] = headKey[d];
            Buffer.MemoryCopy(value + (long)h * HeadDim, valueBlock + ValueOffset(slot, h, 0), rowBytes, rowBytes);
        }
    }
}

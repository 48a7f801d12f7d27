using System.Runtime.InteropServices;

namespace Alora.Tensors;

/// <summary>
/// One 64-byte-aligned native allocation for one lifetime class (weights, activations, KV pool),
/// carved into named views by a bump allocator. Views never outlive the slab.
/// </summary>
public sealed unsafe class NativeSlab : IDisposable
{
    public const int Alignment = 64;
    private byte* _base;
    private long _used;

    public NativeSlab(long byteCount, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        Name = name;
        ByteCount = byteCount;
        s_allocatedOnThread += byteCount;
        _base = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(byteCount, Alignment), Alignment);
        NativeMemory.Clear(_base, (nuint)Math.Max(byteCount, Alignment));
    }

    [ThreadStatic] private static long s_allocatedOnThread;

    /// <summary>Bytes of every slab this thread has created (never decreases): the fuzz harnesses bound what one
    /// input may make a loader allocate, as GC.GetAllocatedBytesForCurrentThread does for managed memory.</summary>
    public static long AllocatedBytesForCurrentThread => s_allocatedOnThread;

    public string Name { get; }
    public long ByteCount { get; }
    public long UsedBytes => _used;
    public byte* Base => _base != null ? _base : throw new ObjectDisposedException(Name);

    /// <summary>Carves the next aligned region of <paramref name="elementCount"/> floats.</summary>
    public float* TakeFloats(long elementCount, string viewName) => (float*)Take(elementCount * sizeof(float), viewName);

    public byte* Take(long byteCount, string viewName)
    {
        long start = (_used + Alignment - 1) / Alignment * Alignment;
        if (start + byteCount > ByteCount)
            throw new InvalidOperationException(
                $"slab '{Name}' is full: view '{viewName}' needs {byteCount} bytes at offset {start}, capacity {ByteCount}");
        _used = start + byteCount;
        return Base + start;
    }

    /// <summary>Bytes a sequence of views will need, each rounded up to the alignment.</summary>
    public static long Align(long byteCount) => (byteCount + Alignment - 1) / Alignment * Alignment;

    public void Dispose()
    {
        if (_base != null)
        {
            NativeMemory.AlignedFree(_base);
            _base = null;
        }
        GC.SuppressFinalize(this);
    }

    ~NativeSlab() => Dispose();
}

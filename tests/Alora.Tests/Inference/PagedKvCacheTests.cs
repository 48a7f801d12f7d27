using Alora.Inference;

namespace Alora.Tests.Inference;

/// <summary>Exact block ids, reference counts and copy-on-write behaviour on a small pool.</summary>
public sealed unsafe class PagedKvCacheTests
{
    [Fact]
    public void BlocksAreHandedOutLowestFirstAndFreedOnRelease()
    {
        using var cache = new PagedKvCache(layerCount: 2, keyValueHeads: 1, headDim: 4, blockCount: 4, blockSize: 2);
        using var a = new KvSequence(cache);
        a.PrepareAppend(3);
        a.CommitAppend([10, 11, 12]);
        Assert.Equal([0, 1], a.BlockTable.ToArray());
        using var b = new KvSequence(cache);
        b.PrepareAppend(1);
        b.CommitAppend([20]);
        Assert.Equal([2], b.BlockTable.ToArray());
        Assert.Equal(1, cache.FreeBlockCount);

        a.Truncate(2);                      // block 1 no longer needed
        Assert.Equal([0], a.BlockTable.ToArray());
        Assert.Equal(2, cache.FreeBlockCount);
        a.PrepareAppend(2);                 // positions 2, 3 → block 1 again (lowest free)
        a.CommitAppend([13, 14]);
        Assert.Equal([0, 1], a.BlockTable.ToArray());
        Assert.Equal([10, 11, 13, 14], a.Tokens);
    }

    [Fact]
    public void ForkSharesBlocksAndCopiesTheSharedPartialBlockOnWrite()
    {
        using var cache = new PagedKvCache(layerCount: 1, keyValueHeads: 1, headDim: 2, blockCount: 6, blockSize: 2);
        using var parent = new KvSequence(cache);
        parent.PrepareAppend(3);
        parent.CommitAppend([1, 2, 3]);
        // Mark position 2 (block 1, slot 0) so the copy can be checked.
        cache.KeyBlocks(0)[(1 * 2 + 0) * 2] = 42f;
        cache.ValueBlocks(0)[(1 * 2 + 0) * 2 + 1] = -7f;

        using var child = parent.Fork();
        Assert.Equal([0, 1], child.BlockTable.ToArray());
        Assert.Equal(2, cache.ReferenceCount(0));
        Assert.Equal(2, cache.ReferenceCount(1));

        child.PrepareAppend(1);             // writes position 3, inside shared block 1 → copy it to block 2
        child.CommitAppend([4]);
        Assert.Equal([0, 2], child.BlockTable.ToArray());
        Assert.Equal([0, 1], parent.BlockTable.ToArray());
        Assert.Equal(1, cache.ReferenceCount(1));
        Assert.Equal(42f, cache.KeyBlocks(0)[(2 * 2 + 0) * 2]);
        Assert.Equal(-7f, cache.ValueBlocks(0)[(2 * 2 + 0) * 2 + 1]);

        parent.PrepareAppend(1);            // block 1 is no longer shared: written in place
        parent.CommitAppend([5]);
        Assert.Equal([0, 1], parent.BlockTable.ToArray());
        Assert.Equal(2, cache.ReferenceCount(0));

        child.Dispose();
        Assert.Equal(1, cache.ReferenceCount(0));
        Assert.Equal(0, cache.ReferenceCount(2));
        Assert.Equal(4, cache.FreeBlockCount);
    }

    [Fact]
    public void AFullPoolGivesAClearError()
    {
        using var cache = new PagedKvCache(layerCount: 1, keyValueHeads: 1, headDim: 2, blockCount: 2, blockSize: 4);
        using var s = new KvSequence(cache);
        var e = Assert.Throws<KvCacheFullException>(() => s.PrepareAppend(9));
        Assert.Contains("3 more blocks of 4 tokens needed, 2 of 2 free", e.Message);
        Assert.Equal(0, s.BlockCount);          // nothing half done
        Assert.Equal(2, cache.FreeBlockCount);
    }
}

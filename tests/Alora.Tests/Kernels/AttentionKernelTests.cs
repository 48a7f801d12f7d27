using Alora.Kernels;

namespace Alora.Tests.Kernels;

/// <summary>The paged online-softmax attention equals its two-pass scalar twin.</summary>
public sealed unsafe class AttentionKernelTests
{
    [Theory]
    [InlineData(1, 1, 8, 4, 1, 0)]
    [InlineData(8, 4, 8, 16, 37, 0)]
    [InlineData(9, 3, 64, 16, 100, 0)]
    [InlineData(14, 2, 64, 16, 65, 0)]
    [InlineData(4, 4, 16, 3, 50, 7)]     // odd block size, sliding window
    [InlineData(6, 2, 12, 5, 257, 0)]
    [InlineData(8, 2, 64, 16, 300, 37)]  // vector path with a window that starts mid-chunk
    [InlineData(4, 1, 32, 32, 70, 0)]
    [InlineData(4, 2, 24, 8, 90, 11)]    // 256-bit path block size, window
    public void MatchesReference(int heads, int kvHeads, int headDim, int blockSize, int contextLength, int window)
    {
        var random = new Random(heads * 131 + contextLength);
        int sequences = 2, dkv = kvHeads * headDim;
        int blocksPerSequence = (contextLength + blockSize - 1) / blockSize;
        int blockCount = sequences * blocksPerSequence + 3;
        // Block tables use shuffled block ids so the paging is exercised.
        var ids = Enumerable.Range(0, blockCount).OrderBy(_ => random.Next()).ToArray();
        var tables = new int[sequences * blocksPerSequence];
        Array.Copy(ids, tables, tables.Length);
        var keys = RandomArray(random, blockCount * blockSize * dkv);
        var values = RandomArray(random, blockCount * blockSize * dkv);
        // Rows: a few positions of each sequence, the last ones included.
        var rowSeq = new List<int>();
        var rowPos = new List<int>();
        for (int s = 0; s < sequences; s++)
            foreach (int p in new[] { 0, contextLength / 2, contextLength - 2, contextLength - 1 }.Where(p => p >= 0).Distinct())
            { rowSeq.Add(s); rowPos.Add(p); }
        int m = rowSeq.Count;
        var query = RandomArray(random, m * heads * headDim);
        var actual = new float[m * heads * headDim];
        var expected = new float[m * heads * headDim];
        fixed (float* q = query, k = keys, v = values, o1 = actual, o2 = expected)
        fixed (int* t = tables, rs = rowSeq.ToArray(), rp = rowPos.ToArray())
        {
            var problem = new Attention.Problem
            {
                Output = o1, Query = q, KeyBlocks = k, ValueBlocks = v, BlockTables = t, MaxBlocksPerSequence = blocksPerSequence,
                RowSequence = rs, RowPosition = rp, RowCount = m, HeadCount = heads, KeyValueHeadCount = kvHeads,
                HeadDim = headDim, BlockSize = blockSize, Scale = 1f / MathF.Sqrt(headDim), SlidingWindow = window,
            };
            Attention.Forward(problem);
            Attention.ForwardReference(problem with { Output = o2 });
        }
        for (int i = 0; i < actual.Length; i++)
            Assert.True(MathF.Abs(actual[i] - expected[i]) <= 1e-5f, $"element {i}: {actual[i]} vs {expected[i]}");
    }

    private static float[] RandomArray(Random random, int n)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(random.NextDouble() * 4 - 2);
        return a;
    }
}

using Alora.Kernels;

namespace Alora.Tests.Kernels;

public unsafe class RopeKernelTests
{
    [Theory]
    [InlineData(2, 1, 1)]
    [InlineData(6, 3, 5)]
    [InlineData(34, 2, 3)]
    [InlineData(64, 9, 7)]
    [InlineData(64, 2, 1)]
    [InlineData(128, 4, 4)]
    [InlineData(98, 3, 2)]
    public void Apply_IsBitIdenticalToReference(int headDim, int heads, int rows)
    {
        var table = RopeTable.Create(headDim, 10000.0);
        // Positions: small, beyond the first cache size, beyond the cache limit, and negative.
        int[] positions = new int[rows];
        int[] pool = [0, 1, 5, 255, 256, 4097, RopeTable.MaxCachedPositions - 1, RopeTable.MaxCachedPositions + 3, 131_071, -3];
        for (int i = 0; i < rows; i++) positions[i] = pool[(i * 3 + headDim) % pool.Length];
        float[] x = KernelTestData.Random(rows * heads * headDim, headDim * 31 + heads, 2f);
        float[] expected = (float[])x.Clone(), actual = (float[])x.Clone();
        fixed (int* pp = positions) fixed (float* pe = expected) fixed (float* pa = actual)
        {
            Rope.ApplyReference(pe, pp, rows, heads, table);
            Rope.Apply(pa, pp, rows, heads, table);
        }
        Assert.Equal(expected, actual);
    }

    public static TheoryData<int> EvenHeadDims()
    {
        var data = new TheoryData<int>();
        for (int headDim = 2; headDim <= 256; headDim += 2) data.Add(headDim);
        return data;
    }

    [Theory]
    [MemberData(nameof(EvenHeadDims))]
    public void Apply_IsBitIdenticalToReference_ForEveryEvenHeadSize(int headDim)
    {
        var table = RopeTable.Create(headDim, 1e6);
        int[] positions = [3, 0, 1000, 77];
        float[] x = KernelTestData.Random(positions.Length * 3 * headDim, headDim, 3f);
        float[] expected = (float[])x.Clone(), actual = (float[])x.Clone();
        fixed (int* pp = positions) fixed (float* pe = expected) fixed (float* pa = actual)
        {
            Rope.ApplyReference(pe, pp, positions.Length, 3, table);
            Rope.Apply(pa, pp, positions.Length, 3, table);
        }
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Apply_WithLlama3Scaling_MatchesReference()
    {
        var table = RopeTable.Create(64, 500000.0, new RopeScaling(8, 1, 4, 8192));
        int[] positions = [0, 17, 9000, 300];
        float[] x = KernelTestData.Random(positions.Length * 2 * 64, 7);
        float[] expected = (float[])x.Clone(), actual = (float[])x.Clone();
        fixed (int* pp = positions) fixed (float* pe = expected) fixed (float* pa = actual)
        {
            Rope.ApplyReference(pe, pp, positions.Length, 2, table);
            Rope.Apply(pa, pp, positions.Length, 2, table);
        }
        Assert.Equal(expected, actual);
    }
}

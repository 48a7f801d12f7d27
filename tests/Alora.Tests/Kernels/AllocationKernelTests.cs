using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Tests.Kernels;

/// <summary>A decode step must not allocate: the kernels and the pool dispatch allocate nothing per call.</summary>
public unsafe class AllocationKernelTests
{
    private struct NoOpTask : IParallelTask
    {
        public void Execute(int index) { }
    }

    private static void RunStep(float* y, float* x, float* gamma, float* q, int* positions, WeightMatrix weight, RopeTable rope,
        WorkerPool pool, ref NoOpTask noOp, int rows, int k, int n, int heads)
    {
        Gemm.MatMul(y, x, weight, 1);          // GEMV path
        Gemm.MatMul(y, x, weight, rows);       // packed path
        Elementwise.RmsNorm(x, x, gamma, rows, k, 1e-6f);
        Elementwise.SiluMul(y, y, rows * n);
        Elementwise.Softmax(y, n);
        Rope.Apply(q, positions, rows, heads, rope);
        pool.For(4, ref noOp);
    }

    [Fact]
    public void KernelsAndPoolDispatch_AllocateNothingPerCall_AfterWarmUp()
    {
        const int k = 64, n = 96, rows = 8, heads = 2, headDim = 32;
        float[] x = KernelTestData.Random(rows * k, 1), w = KernelTestData.Random(n * k, 2), y = new float[rows * n];
        float[] gamma = KernelTestData.Random(k, 3), q = KernelTestData.Random(rows * heads * headDim, 4);
        int[] positions = [0, 1, 2, 3, 4, 5, 6, 7];
        var rope = RopeTable.Create(headDim, 10000);
        using var pool = new WorkerPool(2);
        fixed (float* px = x) fixed (float* pw = w) fixed (float* py = y) fixed (float* pg = gamma) fixed (float* pq = q) fixed (int* pp = positions)
        {
            var weight = new WeightMatrix(pw, DType.F32, n, k);
            var noOp = new NoOpTask();
            nint yp = (nint)py, xp = (nint)px, gp = (nint)pg, qp = (nint)pq, posp = (nint)pp;
            void Step() => RunStep((float*)yp, (float*)xp, (float*)gp, (float*)qp, (int*)posp, weight, rope, pool, ref noOp, rows, k, n, heads);
            Step(); // warm-up: JIT, the pack buffer of this thread, the RoPE cache
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100; i++) Step();
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated == 0, $"100 steps allocated {allocated} bytes on the calling thread");
        }
    }
}

using System.Runtime.InteropServices;
using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>Dispatch cost of WorkerPool.For against Parallel.For at decode sizes.</summary>
internal static unsafe class PoolBench
{
    private struct EmptyTask : IParallelTask
    {
        public void Execute(int index) { }
    }

    /// <summary>Busy for a fixed time: both threads must take part for the call to take one period.</summary>
    private struct BusyTask : IParallelTask
    {
        public long Ticks;

        public void Execute(int index)
        {
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + Ticks;
            while (System.Diagnostics.Stopwatch.GetTimestamp() < until) { }
        }
    }

    public static void Run()
    {
        WorkerPool pool = WorkerPool.Shared;
        int threads = pool.ThreadCount;
        Console.WriteLine($"threads: {threads}");

        var empty = new EmptyTask();
        double poolEmpty = BenchTimer.BestPerCall(calls => { for (int i = 0; i < calls; i++) pool.For(threads, ref empty); }, 20_000);
        double parallelEmpty = BenchTimer.BestPerCall(calls => { for (int i = 0; i < calls; i++) Parallel.For(0, threads, _ => { }); }, 20_000);
        Console.WriteLine($"empty For({threads}):        WorkerPool {poolEmpty * 1e6,7:F2} µs   Parallel.For {parallelEmpty * 1e6,7:F2} µs   ratio {parallelEmpty / poolEmpty:F1}x");

        // Items long enough that the caller cannot finish them all before a spinning worker joins in:
        // ideal = one period per call when every thread takes one item.
        var busy = new BusyTask { Ticks = System.Diagnostics.Stopwatch.Frequency * 5 / 1_000_000 };
        double poolBusy = BenchTimer.BestPerCall(calls => { for (int i = 0; i < calls; i++) pool.For(threads, ref busy); }, 5_000);
        double parallelBusy = BenchTimer.BestPerCall(calls => { for (int i = 0; i < calls; i++) { var copy = busy; Parallel.For(0, threads, t => copy.Execute(t)); } }, 5_000);
        Console.WriteLine($"For({threads}) of 5 µs items: WorkerPool {poolBusy * 1e6,7:F2} µs   Parallel.For {parallelBusy * 1e6,7:F2} µs   (ideal 5.00 µs)");

        // A decode-sized GEMV, y[1,576] = x[1,576]·W[576,576]ᵀ: the same kernel split the same way, dispatched
        // by the pool or by Parallel.For (each chunk then runs on a 1-thread pool, i.e. inline).
        const int k = 576, n = 576;
        float* x = (float*)NativeMemory.AlignedAlloc(k * sizeof(float), 64);
        float* w = (float*)NativeMemory.AlignedAlloc((nuint)(n * k * sizeof(float)), 64);
        float* y = (float*)NativeMemory.AlignedAlloc(n * sizeof(float), 64);
        using var inline = new WorkerPool(1);
        try
        {
            for (int i = 0; i < k; i++) x[i] = i * 1e-3f;
            for (int i = 0; i < n * k; i++) w[i] = (i % 7) * 1e-2f;
            var weight = new WeightMatrix(w, DType.F32, n, k);
            nint xp = (nint)x, wp = (nint)w, yp = (nint)y;
            double single = BenchTimer.BestPerCall(calls => { for (int i = 0; i < calls; i++) Gemm.MatMul(y, x, weight, 1, false, inline); }, 2_000);
            double pooled = BenchTimer.BestPerCall(calls => { for (int i = 0; i < calls; i++) Gemm.MatMul(y, x, weight, 1); }, 2_000);
            double parallel = BenchTimer.BestPerCall(calls =>
            {
                for (int i = 0; i < calls; i++)
                {
                    Parallel.For(0, threads, t =>
                    {
                        int j0 = n * t / threads, j1 = n * (t + 1) / threads;
                        var part = new WeightMatrix((float*)wp + (long)j0 * k, DType.F32, j1 - j0, k);
                        Gemm.MatMul((float*)yp + j0, (float*)xp, part, 1, false, inline);
                    });
                }
            }, 2_000);
            Console.WriteLine($"GEMV 1x576x576 f32:    1 thread {single * 1e6,7:F2} µs   WorkerPool {pooled * 1e6,7:F2} µs   Parallel.For {parallel * 1e6,7:F2} µs   ratio {parallel / pooled:F2}x");
        }
        finally
        {
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(w); NativeMemory.AlignedFree(y);
        }
    }
}

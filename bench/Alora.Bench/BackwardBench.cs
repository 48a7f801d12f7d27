using System.Runtime.InteropServices;
using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>The backward-pass products (dX = dY·W, dW = dYᵀ·X) against OpenBLAS, M = 512 rows.</summary>
internal static unsafe class BackwardBench
{
    public static void Run()
    {
        int threads = WorkerPool.Shared.ThreadCount;
        bool haveBlas = OpenBlas.TryLoad(out string blasInfo);
        Console.WriteLine($"threads: {threads}; OpenBLAS: {blasInfo}");
        if (haveBlas) OpenBlas.UseThreads(threads);
        Console.WriteLine("product                 M      N      K |   ours GF/s | OpenBLAS GF/s | ratio");
        (string Name, int N, int K)[] shapes = [("SmolLM2 gate/up", 1536, 576), ("SmolLM2 down", 576, 1536), ("Qwen2.5 q/o", 896, 896), ("Qwen2.5 gate/up", 4864, 896)];
        const int m = 512;
        foreach (var (name, n, k) in shapes)
        {
            float* dy = Alloc((long)m * n), x = Alloc((long)m * k), w = Alloc((long)n * k), dx = Alloc((long)m * k), dw = Alloc((long)n * k);
            try
            {
                var random = new Random(1);
                for (long i = 0; i < (long)m * n; i++) dy[i] = random.NextSingle() - 0.5f;
                for (long i = 0; i < (long)m * k; i++) x[i] = random.NextSingle() - 0.5f;
                for (long i = 0; i < (long)n * k; i++) w[i] = random.NextSingle() - 0.5f;
                var weight = new WeightMatrix(w, DType.F32, n, k);
                double flops = 2.0 * m * n * k;
                double oursDx = BenchTimer.Best(() => Gemm.MatMulNoTranspose(dx, dy, weight, m));
                double oursDw = BenchTimer.Best(() => Gemm.MatMulTransposeA(dw, dy, x, m, n, k));
                Thread.Sleep(100);
                double blasDx = haveBlas ? BenchTimer.Best(() => OpenBlas.MatMulNoTranspose(dx, dy, w, m, n, k)) : double.NaN;
                double blasDw = haveBlas ? BenchTimer.Best(() => OpenBlas.MatMulTransposeA(dw, dy, x, m, n, k)) : double.NaN;
                Thread.Sleep(300);
                Console.WriteLine($"dX {name,-19} {m,4} {n,6} {k,6} | {flops / oursDx / 1e9,11:F1} | {flops / blasDx / 1e9,13:F1} | {blasDx / oursDx:F2}");
                Console.WriteLine($"dW {name,-19} {m,4} {n,6} {k,6} | {flops / oursDw / 1e9,11:F1} | {flops / blasDw / 1e9,13:F1} | {blasDw / oursDw:F2}");
            }
            finally
            {
                NativeMemory.AlignedFree(dy); NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(w);
                NativeMemory.AlignedFree(dx); NativeMemory.AlignedFree(dw);
            }
        }
    }

    private static float* Alloc(long count) => (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
}

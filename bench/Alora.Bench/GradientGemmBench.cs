using System.Globalization;
using System.Runtime.InteropServices;
using Alora.Kernels;
using Alora.Tensors;
using Alora.Training;

namespace Alora.Bench;

/// <summary>The backward products (dx = dy·W, dW += dyᵀ·x) against the forward GEMM y = x·Wᵀ of the same size.</summary>
internal static unsafe class GradientGemmBench
{
    public static void Run(int m)
    {
        Console.WriteLine("| product | M | N | K | GFLOP/s | forward y = x·Wᵀ GFLOP/s | ratio |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- |");
        foreach (var (n, k) in new[] { (1536, 576), (576, 1536), (49152, 576) })
        {
            float* x = (float*)NativeMemory.AlignedAlloc((nuint)(m * k * 4), 64), y = (float*)NativeMemory.AlignedAlloc((nuint)(m * n * 4), 64);
            float* dx = (float*)NativeMemory.AlignedAlloc((nuint)(m * k * 4), 64), dw = (float*)NativeMemory.AlignedAlloc((nuint)((long)n * k * 4), 64);
            ushort* w = (ushort*)NativeMemory.AlignedAlloc((nuint)((long)n * k * 2), 64);
            new Span<float>(x, m * k).Fill(0.5f);
            new Span<float>(y, m * n).Fill(0.25f);
            new Span<ushort>(w, n * k).Fill(0x3f00);
            var weight = new WeightMatrix(w, DType.BF16, n, k);
            double flops = 2.0 * m * n * k;
            double forward = BenchTimer.Best(() => Gemm.MatMul(y, x, weight, m));
            double input = BenchTimer.Best(() => GradientGemm.InputGradient(dx, y, weight, m, accumulate: false));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| dx = dy·W (bf16 W) | {m} | {n} | {k} | {flops / input / 1e9:F1} | {flops / forward / 1e9:F1} | {forward / input:F2}x |"));
            if (n < 10000)
            {
                double weightGradient = BenchTimer.Best(() => GradientGemm.WeightGradient(dw, y, x, m, n, k));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| dW += dyᵀ·x (f32) | {m} | {n} | {k} | {flops / weightGradient / 1e9:F1} | {flops / forward / 1e9:F1} | {forward / weightGradient:F2}x |"));
            }
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y); NativeMemory.AlignedFree(dx); NativeMemory.AlignedFree(dw); NativeMemory.AlignedFree(w);
        }
    }
}

using System.Runtime.InteropServices;
using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Bench;

// Legend: M = activation rows, K = input features, N = output features (rows of W).

/// <summary>
/// quant-gemv: the decode GEMV (M = 1) and a prefill GEMM (M = 512) on one Llama-3.2-1B-shaped matrix (gate/up:
/// [8192, 2048]) stored as f32, bf16 and each ggml block type, with the stored bytes per second read (the decode
/// roofline is the machine's read bandwidth, measured in the same run) and the multiply-adds per second.
/// </summary>
internal static unsafe class QuantBench
{
    public static void Run(int n = 8192, int k = 2048)
    {
        double bandwidth = MemoryBandwidth.MeasureReadGBps();
        Console.WriteLine($"read bandwidth {bandwidth:F1} GB/s, {WorkerPool.Shared.ThreadCount} threads; W [{n}, {k}]");
        Console.WriteLine("dtype   bytes/w  decode µs  GB/s  ×roofline  GMAC/s | prefill M=512 ms  GMAC/s");
        var random = new Random(1);
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)(512L * k * 4), 64);   // [512, K]
        float* y = (float*)NativeMemory.AlignedAlloc((nuint)(512L * n * 4), 64);   // [512, N]
        for (long i = 0; i < 512L * k; i++) x[i] = (float)(random.NextDouble() * 2 - 1);
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.Q8_0, DType.Q4_0, DType.Q4_1, DType.Q5_0, DType.Q4_K, DType.Q5_K, DType.Q6_K })
        {
            long bytes = dtype.ByteCount((long)n * k);
            byte* w = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
            Fill(w, bytes, dtype, random);
            var matrix = new WeightMatrix(w, dtype, n, k);
            double decode = BenchTimer.Best(() => Gemm.MatMul(y, x, matrix, 1), minSeconds: 0.5, minRuns: 10);
            double prefill = BenchTimer.Best(() => Gemm.MatMul(y, x, matrix, 512), minSeconds: 0.5, minRuns: 2);
            double gbps = bytes / decode / 1e9;
            Console.WriteLine($"{dtype,-6} {bytes / ((double)n * k),7:F3} {decode * 1e6,10:F0} {gbps,5:F1} {gbps / bandwidth,9:F2} {(double)n * k / decode / 1e9,7:F1} | {prefill * 1e3,15:F1} {512.0 * n * k / prefill / 1e9,7:F1}");
            NativeMemory.AlignedFree(w);
        }
        NativeMemory.AlignedFree(x);
        NativeMemory.AlignedFree(y);
    }

    /// <summary>Random stored values with moderate scales (blocks: random bytes, f16 scale fields set small).</summary>
    private static void Fill(byte* w, long bytes, DType dtype, Random random)
    {
        var span = new Span<byte>(w, (int)bytes);
        random.NextBytes(span);
        if (dtype == DType.F32) { for (long i = 0; i < bytes / 4; i++) ((float*)w)[i] = (float)(random.NextDouble() - 0.5) * 0.05f; return; }
        if (!dtype.IsQuantized()) { for (long i = 0; i < bytes / 2; i++) ((ushort*)w)[i] = Half16.SingleToBFloat16((float)(random.NextDouble() - 0.5) * 0.05f); return; }
        ushort small = Half16.SingleToHalf(0.001f);
        int[] scaleOffsets = dtype switch
        {
            DType.Q6_K => [208],
            DType.Q4_1 or DType.Q5_1 or DType.Q4_K or DType.Q5_K => [0, 2],
            _ => [0],
        };
        for (long b = 0; b < bytes; b += dtype.BlockBytes())
            foreach (int o in scaleOffsets) *(ushort*)(w + b + o) = small;
    }
}

using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Alora.Kernels;

namespace Alora.Bench;

/// <summary>Streaming read bandwidth of this machine: the ceiling for memory-bound decode GEMVs.</summary>
public static unsafe class MemoryBandwidth
{
    /// <summary>
    /// Reads a buffer of <paramref name="bytes"/> (default 1 GiB, far larger than any cache) with all pool
    /// threads, each summing its own contiguous part with wide vector loads; returns the best of
    /// <paramref name="repeats"/> passes in GB/s (10⁹ bytes per second).
    /// </summary>
    public static double MeasureReadGBps(long bytes = 1L << 30, int repeats = 5)
    {
        long floats = bytes / sizeof(float);
        float* buffer = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        try
        {
            // Touch every page first so the timing sees memory, not page faults.
            new Span<byte>(buffer, (int)Math.Min(bytes, int.MaxValue)).Fill(1);
            for (long done = int.MaxValue; done < bytes; done += int.MaxValue)
                new Span<byte>((byte*)buffer + done, (int)Math.Min(bytes - done, int.MaxValue)).Fill(1);
            // Many 1/16-per-thread pieces, not one per thread: with one each, a caller that starts before the other
            // thread wakes takes both, and the "2-thread" figure is one core's (it read 36 instead of 67 GB/s).
            var task = new ReadTask { Data = buffer, Length = floats, TaskCount = WorkerPool.Shared.ThreadCount * 16 };
            double best = 0;
            for (int r = 0; r < repeats; r++)
            {
                long start = Stopwatch.GetTimestamp();
                WorkerPool.Shared.For(task.TaskCount, ref task);
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                best = Math.Max(best, bytes / seconds / 1e9);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private struct ReadTask : IParallelTask
    {
        public float* Data;
        public long Length;
        public int TaskCount;
        public float Sink;

        public void Execute(int index)
        {
            long start = Length * index / TaskCount, end = Length * (index + 1) / TaskCount;
            float* p = Data + start;
            long n = end - start, i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                Vector512<float> a = default, b = default, c = default, d = default;
                for (; i + 64 <= n; i += 64)
                {
                    a += Vector512.Load(p + i); b += Vector512.Load(p + i + 16);
                    c += Vector512.Load(p + i + 32); d += Vector512.Load(p + i + 48);
                }
                Sink += Vector512.Sum(a + b + c + d);
            }
            else
            {
                Vector256<float> a = default, b = default;
                for (; i + 16 <= n; i += 16) { a += Vector256.Load(p + i); b += Vector256.Load(p + i + 8); }
                Sink += Vector256.Sum(a + b);
            }
            for (; i < n; i++) Sink += p[i];
        }
    }
}

/// <summary>
/// GEMV streaming from DRAM against the plain read bandwidth, alternated in one process: a 1 × K · Wᵀ over a
/// W far larger than L3 (what a decode step streams, as one call), in bf16 and f32.
/// </summary>
internal static unsafe class GemvStream
{
    public static void Run(int rounds = 4)
    {
        const int k = 576;
        const int n = 229_376;   // 264 MB in bf16, the size of SmolLM2-135M's weights
        long count = (long)n * k;
        ushort* bf16 = (ushort*)NativeMemory.AlignedAlloc((nuint)(count * 2), 64);
        float* f32 = (float*)NativeMemory.AlignedAlloc((nuint)(count * 4), 64);
        float* x = (float*)NativeMemory.AlignedAlloc(k * 4, 64), y = (float*)NativeMemory.AlignedAlloc((nuint)n * 4, 64);
        try
        {
            for (long i = 0; i < count; i++) { bf16[i] = 0x3c00; f32[i] = 0.01f; }
            for (int i = 0; i < k; i++) x[i] = 1;
            var wBf16 = new Alora.Kernels.WeightMatrix(bf16, Alora.Tensors.DType.BF16, n, k);
            var wF32 = new Alora.Kernels.WeightMatrix(f32, Alora.Tensors.DType.F32, n, k);
            for (int round = 0; round < rounds; round++)
            {
                double read = MemoryBandwidth.MeasureReadGBps(repeats: 3);
                double b = count * 2 / BenchTimer.Best(() => Alora.Kernels.Gemm.MatMul(y, x, wBf16, 1), 0, 5) / 1e9;
                double f = count * 4 / BenchTimer.Best(() => Alora.Kernels.Gemm.MatMul(y, x, wF32, 1), 0, 5) / 1e9;
                Console.WriteLine($"read {read,5:F1} GB/s | GEMV bf16 {b,5:F1} GB/s ({b / read:F2}x) | GEMV f32 {f,5:F1} GB/s ({f / read:F2}x)");
            }
        }
        finally
        {
            NativeMemory.AlignedFree(bf16); NativeMemory.AlignedFree(f32); NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y);
        }
    }
}

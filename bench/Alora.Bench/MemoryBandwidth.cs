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
            var task = new ReadTask { Data = buffer, Length = floats, TaskCount = WorkerPool.Shared.ThreadCount };
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

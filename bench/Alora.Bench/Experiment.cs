using System.Diagnostics;
using Alora.Kernels;
namespace Alora.Bench;
internal static class Experiment
{
    private struct SpinTask : IParallelTask
    {
        public int[] Who;
        public void Execute(int index)
        {
            Who[index] = Environment.CurrentManagedThreadId;
            long until = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 100_000; // 10 µs
            while (Stopwatch.GetTimestamp() < until) { }
        }
    }
    public static void Run()
    {
        var t = new SpinTask { Who = new int[2] };
        int caller = Environment.CurrentManagedThreadId, shared = 0;
        for (int r = 0; r < 20000; r++) { WorkerPool.Shared.For(2, ref t); if (t.Who[0] != t.Who[1]) shared++; }
        var sw = Stopwatch.StartNew();
        for (int r = 0; r < 20000; r++) { WorkerPool.Shared.For(2, ref t); if (t.Who[0] != t.Who[1]) shared++; }
        Console.WriteLine($"2x10us tasks: {sw.Elapsed.TotalMilliseconds * 1000 / 20000:F2} us/call, split across threads {shared} of 40000");
    }
}

using Alora.Kernels;

namespace Alora.Tests.Kernels;

public class WorkerPoolKernelTests
{
    private struct CountingTask : IParallelTask
    {
        public int[] Hits;
        public int Spin;

        public void Execute(int index)
        {
            Interlocked.Increment(ref Hits[index]);
            for (int i = 0; i < Spin; i++) Thread.SpinWait(1);
        }
    }

    private struct ThrowingTask : IParallelTask
    {
        public void Execute(int index)
        {
            if (index == 3) throw new InvalidOperationException("task 3 failed");
        }
    }

    [Fact]
    public void For_RunsEveryIndexExactlyOnce_AcrossManyBackToBackCalls()
    {
        // Many short jobs of varying size, so workers wake late, race the caller and see stale jobs.
        using var pool = new WorkerPool(3);
        var random = new Random(5);
        for (int call = 0; call < 20_000; call++)
        {
            int count = random.Next(0, 9);
            var task = new CountingTask { Hits = new int[count], Spin = random.Next(0, 3) * 20 };
            pool.For(count, ref task);
            for (int i = 0; i < count; i++)
                Assert.True(task.Hits[i] == 1, $"call {call}: index {i} of {count} ran {task.Hits[i]} times");
        }
    }

    [Fact]
    public void For_AfterWorkersFallAsleep_StillRunsEverything()
    {
        using var pool = new WorkerPool(2);
        for (int call = 0; call < 3; call++)
        {
            Thread.Sleep(20); // longer than the spin phase: the worker is blocked when the job arrives
            var task = new CountingTask { Hits = new int[64], Spin = 10 };
            pool.For(64, ref task);
            Assert.All(task.Hits, hits => Assert.Equal(1, hits));
        }
    }

    [Fact]
    public void For_RethrowsATaskException_AndStaysUsable()
    {
        using var pool = new WorkerPool(2);
        var failing = new ThrowingTask();
        var error = Assert.Throws<InvalidOperationException>(() => pool.For(8, ref failing));
        Assert.Equal("task 3 failed", error.Message);
        var task = new CountingTask { Hits = new int[8] };
        pool.For(8, ref task);
        Assert.All(task.Hits, hits => Assert.Equal(1, hits));
    }
}

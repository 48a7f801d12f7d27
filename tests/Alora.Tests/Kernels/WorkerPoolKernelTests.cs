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
        // Many tiny jobs on more threads than cores, so workers get preempted between seeing a job and
        // claiming an index, wake late, race the caller and see stale jobs. A lost index would hang the
        // caller, so the loop runs on its own thread with a deadline.
        using var pool = new WorkerPool(Math.Max(6, Environment.ProcessorCount * 3));
        string? failure = null;
        var runner = new Thread(() =>
        {
            var random = new Random(5);
            for (int call = 0; call < 50_000 && failure is null; call++)
            {
                int count = random.Next(2, 9);
                var task = new CountingTask { Hits = new int[count], Spin = random.Next(0, 4) * 10 };
                pool.For(count, ref task);
                for (int i = 0; i < count; i++)
                    if (task.Hits[i] != 1) failure = $"call {call}: index {i} of {count} ran {task.Hits[i]} times";
            }
        }) { IsBackground = true };
        runner.Start();
        Assert.True(runner.Join(TimeSpan.FromSeconds(60)), "WorkerPool.For hung: an index was never run");
        Assert.Null(failure);
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

public class WorkerPoolNestingKernelTests
{
    private struct InnerTask : IParallelTask
    {
        public int[] Hits;
        public int Offset;
        public void Execute(int index) => Interlocked.Increment(ref Hits[Offset + index]);
    }

    private struct OuterTask : IParallelTask
    {
        public WorkerPool Pool;
        public int[] Hits;

        public void Execute(int index)
        {
            // A kernel that itself calls For (as Gemm does) from inside a task: runs inline.
            var inner = new InnerTask { Hits = Hits, Offset = index * 4 };
            Pool.For(4, ref inner);
        }
    }

    [Fact]
    public void For_CalledFromInsideATask_RunsInline()
    {
        using var pool = new WorkerPool(2);
        var outer = new OuterTask { Pool = pool, Hits = new int[8 * 4] };
        var runner = new Thread(() => pool.For(8, ref outer)) { IsBackground = true };
        runner.Start();
        Assert.True(runner.Join(TimeSpan.FromSeconds(30)), "nested For deadlocked");
        Assert.All(outer.Hits, hits => Assert.Equal(1, hits));
    }

    [Fact]
    public void For_FromSeveralThreadsAtOnce_RunsEveryJobCompletely()
    {
        using var pool = new WorkerPool(2);
        int failures = 0;
        Parallel.For(0, 4, _ =>
        {
            for (int call = 0; call < 2_000; call++)
            {
                var task = new InnerTask { Hits = new int[6] };
                pool.For(6, ref task);
                if (task.Hits.Any(hits => hits != 1)) Interlocked.Increment(ref failures);
            }
        });
        Assert.Equal(0, failures);
    }
}

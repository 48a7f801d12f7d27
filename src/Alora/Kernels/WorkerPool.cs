using System.Runtime.CompilerServices;

namespace Alora.Kernels;

/// <summary>A unit of parallel work: <see cref="Execute"/> runs once for each index in [0, count).</summary>
public interface IParallelTask
{
    void Execute(int index);
}

/// <summary>
/// A small persistent pool sized to the cores. The caller thread takes part, indices are handed out
/// with one interlocked counter, and idle workers spin briefly before they block, because decode-sized
/// work (tens of microseconds) is too small for Parallel.For's per-call cost.
/// Calls must not nest; one caller at a time (the engine loop owns it).
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    private static readonly Lazy<WorkerPool> s_shared = new(() => new WorkerPool(Environment.ProcessorCount));
    public static WorkerPool Shared => s_shared.Value;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly object _gate = new();
    private volatile int _generation;
    private volatile bool _stopping;

    // The job in flight.
    private void* _task;
    private delegate*<void*, int, void> _invoke;
    private int _count;
    private int _next;
    private int _pending;

    public WorkerPool(int threadCount)
    {
        ThreadCount = Math.Max(1, threadCount);
        _threads = new Thread[ThreadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"alora-worker-{i + 1}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run tasks, the caller included.</summary>
    public int ThreadCount { get; }

    public void For<T>(int count, ref T task) where T : struct, IParallelTask
    {
        if (count <= 0) return;
        if (count == 1 || _threads.Length == 0)
        {
            for (int i = 0; i < count; i++) task.Execute(i);
            return;
        }
        lock (_gate)
        {
            _task = Unsafe.AsPointer(ref task);
            _invoke = &Invoke<T>;
            _count = count;
            _next = 0;
            _pending = _threads.Length;
            Interlocked.Increment(ref _generation);
            _wake.Release(_threads.Length);
            Drain();
            SpinWait spin = default;
            while (Volatile.Read(ref _pending) != 0) spin.SpinOnce(-1);
            _task = null;
        }
    }

    private static void Invoke<T>(void* task, int index) where T : struct, IParallelTask
        => Unsafe.AsRef<T>(task).Execute(index);

    private void Drain()
    {
        int count = _count;
        var invoke = _invoke;
        void* task = _task;
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < count) invoke(task, i);
    }

    private void WorkerLoop()
    {
        while (true)
        {
            _wake.Wait();
            if (_stopping) return;
            Drain();
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _wake.Release(_threads.Length);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace Alora.Kernels;

/// <summary>A unit of parallel work: <see cref="Execute"/> runs once for each index in [0, count).</summary>
public interface IParallelTask
{
    void Execute(int index);
}

/// <summary>
/// A small persistent pool sized to the cores. The caller thread takes part, indices are handed out
/// with one interlocked counter, and idle workers spin briefly before they block, because decode-sized
/// work (about a hundred microseconds) is too small for Parallel.For's per-call cost.
/// Calls from several threads are serialised. A call made from inside a task (from the caller while it
/// runs its share, or from a worker) runs inline on that thread: nesting would otherwise overwrite the
/// job in flight or deadlock on it.
/// </summary>
/// <remarks>
/// A job is published as (task pointer, invoke pointer, count) plus a 64-bit ticket whose high half is
/// the job's generation and low half the next index. A worker claims an index by compare-and-swap on the
/// ticket, and only while the ticket's generation is the one whose fields it read, so a worker that wakes
/// late can neither run an index of a job that has already finished (whose task struct is gone) nor
/// consume an index of a newer job. When a job
/// is done the caller closes its ticket (index = int.MaxValue) before it writes the next job.
/// The caller waits only for the items to complete, not for every worker to wake: a worker still
/// asleep when the job is published simply finds nothing left to do.
/// </remarks>
public sealed unsafe class WorkerPool : IDisposable
{
    private static readonly Lazy<WorkerPool> s_shared = new(() => new WorkerPool(Environment.ProcessorCount));
    public static WorkerPool Shared => s_shared.Value;

    /// <summary>Spin iterations a worker waits for the next job before it blocks (about a hundred microseconds).</summary>
    private const int SpinIterationsBeforeSleep = 5_000;
    private const long ClosedIndex = int.MaxValue;

    /// <summary>
    /// Below about this many multiply-adds a kernel runs on the calling thread: the work takes less time than
    /// handing half of it to another core (stories260K decode, whose largest product is 512 × 64, gains ~1.3×).
    /// </summary>
    public const long InlineMultiplyAdds = 64 * 1024;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly object _callerGate = new();
    private volatile bool _stopping;

    // The job in flight; written by the caller before it publishes _generation.
    private void* _task;
    private delegate*<void*, int, void> _invoke;
    private int _count;
    private long _ticket;          // (generation << 32) | next index
    private int _completed;        // items finished in the current job
    private volatile int _generation;
    private int _sleepers;         // workers blocked (or about to block) on _wake
    private Exception? _failure;

    /// <summary>True on a thread that is running pool tasks (any pool's worker, or a caller inside For).</summary>
    [ThreadStatic] private static bool t_insideTasks;

    public WorkerPool(int threadCount)
    {
        ThreadCount = Math.Max(1, threadCount);
        _threads = new Thread[ThreadCount - 1];
        Interlocked.Exchange(ref _ticket, ClosedIndex);
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(WorkerLoop) { IsBackground = true, Name = $"alora-worker-{i + 1}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run tasks, the caller included.</summary>
    public int ThreadCount { get; }

    /// <summary>Runs task.Execute(i) for every i in [0, count) on the pool and the caller; returns when all are done.</summary>
    public void For<T>(int count, ref T task) where T : struct, IParallelTask
    {
        if (count <= 0) return;
        if (count == 1 || _threads.Length == 0 || t_insideTasks)
        {
            for (int i = 0; i < count; i++) task.Execute(i);
            return;
        }
        lock (_callerGate)
        {
            t_insideTasks = true;
            try
            {
                RunJob(count, ref task);
            }
            finally
            {
                t_insideTasks = false;
            }
        }
    }

    private void RunJob<T>(int count, ref T task) where T : struct, IParallelTask
    {
        int generation = _generation + 1;
        _task = Unsafe.AsPointer(ref task);
        _invoke = &Invoke<T>;
        _count = count;
        _completed = 0;
        _failure = null;
        Interlocked.Exchange(ref _ticket, (long)generation << 32);
        _generation = generation; // volatile write: publishes the fields above
        // Full fence between publishing the generation and reading the sleeper count (see WorkerLoop).
        Interlocked.MemoryBarrier();
        int sleepers = Volatile.Read(ref _sleepers);
        if (sleepers > 0) _wake.Release(sleepers);

        Drain(generation, _task, _invoke, count);
        SpinWait spin = default;
        while (Volatile.Read(ref _completed) < count) spin.SpinOnce(-1);
        Interlocked.Exchange(ref _ticket, ((long)generation << 32) | ClosedIndex);
        _task = null;
        if (_failure is { } failure)
        {
            _failure = null;
            ExceptionDispatchInfo.Capture(failure).Throw();
        }
    }

    private static void Invoke<T>(void* task, int index) where T : struct, IParallelTask
        => Unsafe.AsRef<T>(task).Execute(index);

    /// <summary>Claims and runs indices of job <paramref name="generation"/> until none is left.</summary>
    private void Drain(int generation, void* task, delegate*<void*, int, void> invoke, int count)
    {
        int ran = 0;
        while (true)
        {
            // Compare-and-swap, not a blind increment: a stale worker must not consume an index of a
            // newer job (that index would then never run and the caller would wait forever).
            long ticket = Volatile.Read(ref _ticket);
            if ((int)(ticket >> 32) != generation) break;
            long index = ticket & 0xFFFFFFFFL;
            if (index >= count) break;
            if (Interlocked.CompareExchange(ref _ticket, ticket + 1, ticket) != ticket) continue;
            try
            {
                invoke(task, (int)index);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            ran++;
        }
        if (ran > 0) Interlocked.Add(ref _completed, ran);
    }

    private void WorkerLoop()
    {
        t_insideTasks = true;
        int seen = 0;
        while (true)
        {
            int generation = WaitForJob(seen);
            if (_stopping) return;
            seen = generation;
            // These reads may be of a newer job than `generation`; Drain's ticket check then rejects them.
            Drain(generation, _task, _invoke, Volatile.Read(ref _count));
        }
    }

    /// <summary>Spins, then blocks, until a generation other than <paramref name="seen"/> is published.</summary>
    private int WaitForJob(int seen)
    {
        for (int spin = 0; spin < SpinIterationsBeforeSleep; spin++)
        {
            int generation = _generation;
            if (generation != seen || _stopping) return generation;
            Thread.SpinWait(1);
        }
        while (true)
        {
            // Announce the sleep, then re-check: the caller publishes then reads _sleepers, we count then
            // read _generation, so at least one of us sees the other (no lost wake-up).
            Interlocked.Increment(ref _sleepers);
            int generation = _generation;
            if (generation != seen || _stopping)
            {
                Interlocked.Decrement(ref _sleepers);
                return generation;
            }
            _wake.Wait();
            Interlocked.Decrement(ref _sleepers);
            generation = _generation;
            if (generation != seen || _stopping) return generation;
            // A spare permit from an earlier release: sleep again.
        }
    }

    public void Dispose()
    {
        _stopping = true;
        if (_threads.Length > 0) _wake.Release(_threads.Length);
    }
}

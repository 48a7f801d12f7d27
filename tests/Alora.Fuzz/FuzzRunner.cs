using Alora.Tensors;

namespace Alora.Fuzz;

/// <summary>What one input did to a parser when it broke the rule.</summary>
public sealed record FuzzFailure(string Kind, string Detail)
{
    public override string ToString() => $"{Kind}: {Detail}";
}

/// <summary>
/// Runs one input through a target and checks the rule every harness asserts: the parser returns, or throws one
/// of the target's format exceptions; within a time bound; allocating (managed and native slab bytes) no more than
/// the target's bound for the input's real size.
/// </summary>
public static class FuzzRunner
{
    /// <summary>Runs <paramref name="input"/> on a thread of its own (the runtime's default stack, as a thread-pool
    /// thread has); null when the rule held.</summary>
    public static FuzzFailure? Check(FuzzTarget target, byte[] input, string work, TimeSpan timeout)
    {
        FuzzFailure? failure = null;
        long managed = 0, native = 0;
        var thread = new Thread(() =>
        {
            long managedBefore = GC.GetAllocatedBytesForCurrentThread();
            long nativeBefore = NativeSlab.AllocatedBytesForCurrentThread;
            try
            {
                target.Run(input, work);
            }
            catch (Exception e) when (target.IsAllowed(e))
            {
                if (string.IsNullOrWhiteSpace(e.Message)) failure = new FuzzFailure("empty message", e.GetType().Name);
                else if (target.NamesFile && !e.Message.Contains(work, StringComparison.Ordinal))
                    failure = new FuzzFailure("unnamed file", $"{e.GetType().Name} does not name the file: {e.Message}");
            }
            catch (Exception e)
            {
                failure = new FuzzFailure("crash", $"{e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
            }
            managed = GC.GetAllocatedBytesForCurrentThread() - managedBefore;
            native = NativeSlab.AllocatedBytesForCurrentThread - nativeBefore;
        })
        { IsBackground = true, Name = "fuzz " + target.Name };
        thread.Start();
        if (!thread.Join(timeout)) return new FuzzFailure("hang", $"no result after {timeout.TotalSeconds:0.#} s");
        if (failure is not null) return failure;
        long bound = target.AllocationBound(input.Length);
        if (managed > bound) return new FuzzFailure("allocation", $"{managed:N0} managed bytes for a {input.Length:N0}-byte input (bound {bound:N0})");
        if (native > bound) return new FuzzFailure("allocation", $"{native:N0} native bytes for a {input.Length:N0}-byte input (bound {bound:N0})");
        return null;
    }

    /// <summary>Shrinks a failing input (delta debugging over byte chunks) while it still fails the same way
    /// (same kind and, for crashes, the same exception type), within <paramref name="budget"/>.</summary>
    public static byte[] Minimise(FuzzTarget target, byte[] input, FuzzFailure failure, string work, TimeSpan timeout, TimeSpan budget)
    {
        string Signature(FuzzFailure f) => f.Kind == "crash" ? f.Detail.Split(':')[0] : f.Kind;
        string wanted = Signature(failure);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var current = input;
        int chunks = 2;
        while (current.Length > 1 && clock.Elapsed < budget)
        {
            int size = Math.Max(1, current.Length / chunks);
            bool reduced = false;
            for (int start = 0; start < current.Length && clock.Elapsed < budget; start += size)
            {
                var candidate = new byte[current.Length - Math.Min(size, current.Length - start)];
                current.AsSpan(0, start).CopyTo(candidate);
                current.AsSpan(Math.Min(start + size, current.Length)).CopyTo(candidate.AsSpan(start));
                if (Check(target, candidate, work, timeout) is { } f && Signature(f) == wanted)
                {
                    current = candidate;
                    reduced = true;
                    break;
                }
            }
            if (reduced) chunks = Math.Max(chunks - 1, 2);
            else if (size == 1) break;
            else chunks = Math.Min(chunks * 2, current.Length);
        }
        return current;
    }
}

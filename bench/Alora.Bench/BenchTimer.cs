using System.Diagnostics;

namespace Alora.Bench;

internal static class BenchTimer
{
    /// <summary>
    /// Best-of timing in seconds per call: after one warm-up call, repeats the action until at least
    /// <paramref name="minSeconds"/> have passed (and at least <paramref name="minRuns"/> runs). The
    /// minimum is the least disturbed by the other processes sharing this machine.
    /// </summary>
    public static double Best(Action action, double minSeconds = 0.3, int minRuns = 3)
    {
        action();
        double best = double.MaxValue, total = 0;
        for (int run = 0; run < minRuns || total < minSeconds; run++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            best = Math.Min(best, seconds);
            total += seconds;
        }
        return best;
    }

    /// <summary>Best-of timing of <paramref name="innerCalls"/> calls per sample, in seconds per call.</summary>
    public static double BestPerCall(Action<int> calls, int innerCalls, int samples = 7)
    {
        calls(innerCalls);
        double best = double.MaxValue;
        for (int s = 0; s < samples; s++)
        {
            long start = Stopwatch.GetTimestamp();
            calls(innerCalls);
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds / innerCalls);
        }
        return best;
    }
}

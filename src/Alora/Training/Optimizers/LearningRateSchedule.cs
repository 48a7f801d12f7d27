namespace Alora.Training.Optimizers;

/// <summary>
/// Learning-rate multipliers by step, as transformers' schedules applied through LambdaLR: step k (0-based, the
/// number of scheduler steps taken before the optimizer step) runs at baseRate · Factor(k).
/// </summary>
public abstract class LearningRateSchedule
{
    protected LearningRateSchedule(int warmupSteps, int totalSteps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(warmupSteps);
        ArgumentOutOfRangeException.ThrowIfNegative(totalSteps);
        WarmupSteps = warmupSteps;
        TotalSteps = totalSteps;
    }

    public int WarmupSteps { get; }
    public int TotalSteps { get; }

    public abstract double Factor(int step);

    public double LearningRate(double baseRate, int step) => baseRate * Factor(step);

    /// <summary>Linear warmup from 0: step / max(1, warmup) while step &lt; warmup.</summary>
    protected double Warmup(int step) => (double)step / Math.Max(1, WarmupSteps);
}

/// <summary>get_linear_schedule_with_warmup: linear warmup, then linear decay to 0 at <c>totalSteps</c>.</summary>
public sealed class LinearSchedule(int warmupSteps, int totalSteps) : LearningRateSchedule(warmupSteps, totalSteps)
{
    public override double Factor(int step)
    {
        if (step < WarmupSteps) return Warmup(step);
        return Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
    }
}

/// <summary>
/// get_cosine_schedule_with_warmup: linear warmup, then 0.5·(1 + cos(π·cycles·2·progress)), floored at 0;
/// cycles 0.5 (the default) is one half-cosine from 1 down to 0. As in transformers the progress is not clamped,
/// so steps past <c>totalSteps</c> climb the cosine again.
/// </summary>
public sealed class CosineSchedule(int warmupSteps, int totalSteps, double cycles = 0.5) : LearningRateSchedule(warmupSteps, totalSteps)
{
    public double Cycles { get; } = cycles;

    public override double Factor(int step)
    {
        if (step < WarmupSteps) return Warmup(step);
        double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * Cycles * 2.0 * progress)));
    }
}

/// <summary>A constant rate after a linear warmup (get_constant_schedule_with_warmup).</summary>
public sealed class ConstantSchedule(int warmupSteps = 0) : LearningRateSchedule(warmupSteps, 0)
{
    public override double Factor(int step) => step < WarmupSteps ? Warmup(step) : 1.0;
}

using Alora.Training.Optimization;

namespace Alora.Tests.Training;

/// <summary>Optimizers, clipping and schedules against torch 1.13 (values from tools/reference/optimizer_reference.py).</summary>
public sealed unsafe class OptimizerTests
{
    private static readonly float[][] Gradients = [[0.1f, -0.2f, 0.3f], [-0.05f, 0.4f, 0.1f], [0.2f, 0.2f, -0.6f]];

    /// <summary>Runs three steps on a (plain) and b (a LoRA B factor, gradient × 2) and returns both.</summary>
    private static (float[] A, float[] B) Run(OptimizerOptions options)
    {
        float[] a = [0.5f, -1.0f, 2.0f], b = [0.25f, 0.0f, -0.75f];
        float[] ga = new float[3], gb = new float[3];
        fixed (float* pa = a, pb = b, pga = ga, pgb = gb)
        {
            var optimizer = Optimizer.Create([new TrainableTensor("a", pa, pga, 3, false), new TrainableTensor("b", pb, pgb, 3, true)], options);
            foreach (var g in Gradients)
            {
                for (int i = 0; i < 3; i++) { ga[i] = g[i]; gb[i] = 2 * g[i]; }
                optimizer.Apply(options.LearningRate);
            }
        }
        return (a, b);
    }

    /// <summary>Within a few float ulps: torch's vectorized kernels may fuse a multiply-add where we round twice.</summary>
    private static void Near(double[] expected, float[] actual)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 4e-7 * Math.Max(1, Math.Abs(expected[i])), $"[{i}] expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void AdamWMatchesTorch()
    {
        var (a, b) = Run(new OptimizerOptions { LearningRate = 0.01, WeightDecay = 0.1 });
        Near([0.47927966713905334, -0.9958728551864624, 1.977839469909668], a);
        Near([0.2300289273262024, 0.0011302279308438301, -0.7639188766479492], b);
    }

    [Fact]
    public void LoraPlusGivesBItsOwnRate()
    {
        var (a, b) = Run(new OptimizerOptions { LearningRate = 0.01, WeightDecay = 0.1, LoraPlusRatio = 16 });
        Near([0.47927966713905334, -0.9958728551864624, 1.977839469909668], a);
        Near([-0.06395990401506424, 0.014203101396560669, -0.9663888216018677], b);
    }

    [Fact]
    public void SgdMatchesTorch()
    {
        var (a, b) = Run(new OptimizerOptions { Kind = "sgd", LearningRate = 0.1, WeightDecay = 0.01 });
        Near([0.47351646423339844, -1.0370029211044312, 2.014075994491577], a);
        Near([0.19928070902824402, -0.07999996095895767, -0.7076122760772705], b);
    }

    [Fact]
    public void ClippingByGlobalNormMatchesTorch()
    {
        float[] p = [0, 0], g = [3, 4];
        fixed (float* pp = p, pg = g)
        {
            var tensors = new[] { new TrainableTensor("p", pp, pg, 2, false) };
            Assert.Equal(5.0, GradientClipping.ClipByGlobalNorm(tensors, 1.0), 6);
            Near([0.5999999046325684, 0.7999998331069946], g);
            Assert.Equal(1.0, GradientClipping.ClipByGlobalNorm(tensors, 0), 5);   // off: the norm only
        }
    }

    [Theory]
    [InlineData("linear", new[] { 0.0, 0.5, 1.0, 0.5, 0.011111111111111112, 0.0 })]
    [InlineData("cosine", new[] { 0.0, 0.5, 1.0, 0.5, 0.00030458649045211894, 0.0 })]
    public void SchedulesMatchTransformers(string kind, double[] expected)
    {
        long[] steps = [0, 5, 10, 55, 99, 100];
        for (int i = 0; i < steps.Length; i++)
            Assert.Equal(expected[i], LearningRateSchedule.Multiplier(kind, steps[i], totalSteps: 100, warmupSteps: 10), 12);
    }

    [Fact]
    public void StateRoundTripsForResume()
    {
        float[] a = [1, 2], g = [0.5f, -0.5f], a2 = [1, 2];
        fixed (float* pa = a, pg = g, pa2 = a2)
        {
            var options = new OptimizerOptions { LearningRate = 0.1 };
            var first = Optimizer.Create([new TrainableTensor("a", pa, pg, 2, false)], options);
            var second = Optimizer.Create([new TrainableTensor("a", pa2, pg, 2, false)], options);
            first.Apply(0.1);
            second.Apply(0.1);
            var resumed = Optimizer.Create([new TrainableTensor("a", pa2, pg, 2, false)], options);
            resumed.LoadState(second.State().ToDictionary(s => s.Name, s => s.Values.ToArray()), second.Step);
            first.Apply(0.1);
            resumed.Apply(0.1);
            Assert.Equal(a, a2);
        }
        Assert.Throws<ArgumentException>(() => Optimizer.Create([], new OptimizerOptions { Kind = "lion" }));
    }
}

using Alora.Training;
using Alora.Training.Optimizers;

namespace Alora.Tests.Training;

/// <summary>Optimizers, clipping and schedules against steps computed by hand (and in double from torch's formulas).</summary>
public sealed unsafe class OptimizerTests
{
    /// <summary>Pinned values and gradients for optimizer parameters made from plain arrays.</summary>
    private sealed class Tensors : IDisposable
    {
        private readonly List<System.Runtime.InteropServices.GCHandle> _handles = [];
        public OptimizerParameter Add(string name, float[] values, float[] gradients, float multiplier = 1f)
        {
            var v = System.Runtime.InteropServices.GCHandle.Alloc(values, System.Runtime.InteropServices.GCHandleType.Pinned);
            var g = System.Runtime.InteropServices.GCHandle.Alloc(gradients, System.Runtime.InteropServices.GCHandleType.Pinned);
            _handles.Add(v);
            _handles.Add(g);
            return new OptimizerParameter(name, (float*)v.AddrOfPinnedObject(), (float*)g.AddrOfPinnedObject(), values.Length, multiplier);
        }
        public void Dispose() => _handles.ForEach(h => h.Free());
    }

    [Fact]
    public void AdamWFirstStepMatchesTheHandComputedValue()
    {
        // p = 0.999·p (decay 1 − 0.1·0.01); m̂ = g, v̂ = g² after bias correction; p −= 0.1·g / (|g| + 1e-8).
        float[] values = [1f, -2f], gradients = [0.5f, -0.25f];
        using var tensors = new Tensors();
        var adam = new AdamW([tensors.Add("p", values, gradients)]);
        adam.Step(0.1);
        Assert.Equal(0.999 - 0.1 * 0.5 / (0.5 + 1e-8), values[0], 6);
        Assert.Equal(-1.998 + 0.1 * 0.25 / (0.25 + 1e-8), values[1], 6);
        Assert.Equal(1, adam.StepCount);
    }

    [Fact]
    public void AdamWFollowsTorchsUpdateOverSeveralStepsWithLoraPlusRates()
    {
        var options = new AdamWOptions { Beta1 = 0.8, Beta2 = 0.95, Epsilon = 1e-6, WeightDecay = 0.1 };
        var random = new Random(3);
        float[] a = [0.3f, -0.7f, 1.1f], b = [0.05f, -0.02f];
        float[] da = new float[3], db = new float[2];
        using var tensors = new Tensors();
        var adam = new AdamW([tensors.Add("A", a, da), tensors.Add("B", b, db, 4f)], options);
        double[] pa = [.. a.Select(x => (double)x)], pb = [.. b.Select(x => (double)x)];
        double[] ma = new double[3], va = new double[3], mb = new double[2], vb = new double[2];
        double[] rates = [1e-2, 5e-3, 2e-3, 1e-3];
        for (int step = 1; step <= rates.Length; step++)
        {
            for (int i = 0; i < 3; i++) da[i] = (float)(random.NextDouble() - 0.5);
            for (int i = 0; i < 2; i++) db[i] = (float)(random.NextDouble() - 0.5);
            adam.Step(rates[step - 1]);
            Reference(pa, ma, va, da, rates[step - 1], step);
            Reference(pb, mb, vb, db, rates[step - 1] * 4, step);
            for (int i = 0; i < 3; i++) Assert.Equal(pa[i], a[i], 5);
            for (int i = 0; i < 2; i++) Assert.Equal(pb[i], b[i], 5);
        }

        void Reference(double[] p, double[] m, double[] v, float[] g, double lr, int t)
        {
            for (int i = 0; i < p.Length; i++)
            {
                p[i] *= 1 - lr * options.WeightDecay;
                m[i] = options.Beta1 * m[i] + (1 - options.Beta1) * g[i];
                v[i] = options.Beta2 * v[i] + (1 - options.Beta2) * g[i] * g[i];
                double denominator = Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(options.Beta2, t)) + options.Epsilon;
                p[i] -= lr / (1 - Math.Pow(options.Beta1, t)) * m[i] / denominator;
            }
        }
    }

    [Theory]
    [InlineData(false, 0.94, 0.8266)]
    [InlineData(true, 0.886, 0.725566)]
    public void SgdWithMomentumAndWeightDecayMatchesHandComputedSteps(bool nesterov, double afterOne, double afterTwo)
    {
        // g' = g + 0.1·p; b = g' then 0.9·b + g'; p −= 0.1·(Nesterov ? g' + 0.9·b : b).
        float[] values = [1f], gradients = [0.5f];
        using var tensors = new Tensors();
        var sgd = new Sgd([tensors.Add("p", values, gradients)], new SgdOptions { Momentum = 0.9, WeightDecay = 0.1, Nesterov = nesterov });
        sgd.Step(0.1);
        Assert.Equal(afterOne, values[0], 6);
        sgd.Step(0.1);
        Assert.Equal(afterTwo, values[0], 6);
    }

    [Fact]
    public void LoraPlusGivesBItsRatioOfTheLearningRate()
    {
        var config = TinyModel.Config();
        using var lora = new TrainableLora(config, ["q_proj"], 2, 1f);
        foreach (var m in lora.Modules)
        {
            m.AGradient.Fill(1f);
            m.BGradient.Fill(1f);
        }
        var parameters = OptimizerParameter.FromAdapter(lora, loraPlusRatio: 16);
        Assert.Equal(2 * config.LayerCount, parameters.Length);
        Assert.Equal("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", parameters[1].Name);
        new Sgd(parameters).Step(0.01);
        Assert.All(lora.Modules, m =>
        {
            Assert.All(m.AValues.ToArray(), v => Assert.Equal(-0.01f, v));
            Assert.All(m.BValues.ToArray(), v => Assert.Equal(-0.16f, v));
        });
        Assert.Throws<ArgumentOutOfRangeException>(() => OptimizerParameter.FromAdapter(lora, 0));
    }

    [Fact]
    public void ClippingScalesEveryGradientByTheGlobalNorm()
    {
        float[] g1 = [3f, 4f], g2 = [12f];
        using var tensors = new Tensors();
        OptimizerParameter[] parameters = [tensors.Add("a", new float[2], g1), tensors.Add("b", new float[1], g2)];
        Assert.Equal(13.0, GradientClipping.ClipByGlobalNorm(parameters, 100), 6);   // below the limit: unchanged
        Assert.Equal([3f, 4f, 12f], [.. g1, .. g2]);
        Assert.Equal(13.0, GradientClipping.ClipByGlobalNorm(parameters, 6.5), 6);
        double coefficient = 6.5 / (13 + 1e-6);
        Assert.Equal(3 * coefficient, g1[0], 6);
        Assert.Equal(4 * coefficient, g1[1], 6);
        Assert.Equal(12 * coefficient, g2[0], 6);
        g2[0] = float.NaN;
        var error = Assert.Throws<ArithmeticException>(() => GradientClipping.ClipByGlobalNorm(parameters, 1));
        Assert.Contains("'b'", error.Message);
    }

    [Fact]
    public void SchedulesFollowTransformersFormulas()
    {
        var linear = new LinearSchedule(warmupSteps: 2, totalSteps: 10);
        double[] expectedLinear = [0, 0.5, 1, 7 / 8.0, 6 / 8.0, 5 / 8.0, 4 / 8.0, 3 / 8.0, 2 / 8.0, 1 / 8.0, 0, 0];
        for (int step = 0; step < expectedLinear.Length; step++) Assert.Equal(expectedLinear[step], linear.Factor(step), 12);

        var cosine = new CosineSchedule(warmupSteps: 2, totalSteps: 10);
        Assert.Equal(0, cosine.Factor(0), 12);
        Assert.Equal(0.5, cosine.Factor(1), 12);
        Assert.Equal(1, cosine.Factor(2), 12);
        Assert.Equal(0.5 * (1 + Math.Cos(Math.PI / 4)), cosine.Factor(4), 12);
        Assert.Equal(0.5, cosine.Factor(6), 12);
        Assert.Equal(0, cosine.Factor(10), 12);
        // Past the end transformers does not clamp the progress: the cosine rises again (0.5·(1 + cos 1.25π)).
        Assert.Equal(0.5 * (1 + Math.Cos(1.25 * Math.PI)), cosine.Factor(12), 12);
        Assert.Equal(2e-4 * 0.5, cosine.LearningRate(2e-4, 6), 15);

        var constant = new ConstantSchedule(warmupSteps: 4);
        Assert.Equal(0.25, constant.Factor(1), 12);
        Assert.Equal(1, constant.Factor(100), 12);
    }

    [Fact]
    public void AdamWStepsLowerTheTinyModelsLoss()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config);
        int[] ids = TinyModel.Tokens(12, 21);
        var rows = new List<TrainingRow> { new(ids, ids, 0) };
        using var trainer = new DecoderTrainer(weights, lora, 1, 12);
        var parameters = OptimizerParameter.FromAdapter(lora);
        var adam = new AdamW(parameters, new AdamWOptions { WeightDecay = 0 });
        var schedule = new LinearSchedule(2, 20);
        double first = trainer.ForwardBackward(rows), last = first;
        for (int step = 0; step < 20; step++)
        {
            GradientClipping.ClipByGlobalNorm(parameters, 1.0);
            adam.Step(schedule.LearningRate(5e-2, step));
            last = trainer.ForwardBackward(rows);
        }
        Assert.True(last < 0.8 * first, $"loss went from {first} to {last}");
    }
}

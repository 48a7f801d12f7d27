using Alora.Training;
using Xunit.Abstractions;

namespace Alora.Tests.Training;

/// <summary>PEFT's lora_dropout in the training step: mask statistics, gradients through a fixed mask, determinism, eval mode.</summary>
public sealed class LoraDropoutTests(ITestOutputHelper output)
{
    private static readonly int[] Invocation = TinyModel.Invocation;

    private static List<TrainingRow> Batch(TrainableLora lora) => TinyModel.TwoRowBatch(lora, 5, 3);

    private static (float[] A, float[] B)[] Gradients(TrainableLora lora) => TinyModel.Gradients(lora);

    private static void AssertSameGradients((float[] A, float[] B)[] expected, (float[] A, float[] B)[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].A, actual[i].A);
            Assert.Equal(expected[i].B, actual[i].B);
        }
    }

    private static double MaxDifference((float[] A, float[] B)[] x, (float[] A, float[] B)[] y)
    {
        double worst = 0;
        for (int i = 0; i < x.Length; i++)
        {
            for (int j = 0; j < x[i].A.Length; j++) worst = Math.Max(worst, Math.Abs(x[i].A[j] - y[i].A[j]));
            for (int j = 0; j < x[i].B.Length; j++) worst = Math.Max(worst, Math.Abs(x[i].B[j] - y[i].B[j]));
        }
        return worst;
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    public unsafe void MaskDropsAFractionPAndScalesTheKeptValues(float p)
    {
        var dropout = new LoraDropout(p, 17);
        const int Rows = 64, Width = 256;
        var x = new float[Rows * Width];
        var dropped = new float[Rows * Width];
        var mask = new byte[Rows * Width];
        var dx = new float[Rows * Width];
        for (int i = 0; i < x.Length; i++) x[i] = 1f + i % 7;
        ulong key = dropout.ModuleKey(3, 1, 4);
        fixed (float* xp = x, dp = dropped, dxp = dx)
        fixed (byte* mp = mask)
        {
            dropout.Apply(dp, xp, key, 10, Rows, Width, mp);
            dropout.AddBackward(dxp, xp, mp, Rows, Width);   // dx += mask ⊙ x / (1 − p) = dropped
        }
        int zeros = 0;
        for (int i = 0; i < x.Length; i++)
        {
            if (dropped[i] == 0f) zeros++;
            else Assert.Equal(x[i] / (1f - p), dropped[i], 5);
            bool kept = dropout.Keeps(key, 10 + i / Width, i % Width, Width);
            Assert.Equal(dropped[i] != 0f, kept);
            Assert.Equal(kept ? 1 : 0, mask[i]);
            Assert.Equal(dropped[i], dx[i]);
        }
        double fraction = (double)zeros / x.Length;
        output.WriteLine($"p {p}: dropped fraction {fraction:F4}");
        Assert.InRange(fraction, p - 0.02, p + 0.02);
        // Another module, stream or seed draws another mask.
        Assert.NotEqual(key, dropout.ModuleKey(3, 1, 5));
        Assert.NotEqual(key, dropout.ModuleKey(4, 1, 4));
        Assert.NotEqual(key, new LoraDropout(p, 18).ModuleKey(3, 1, 4));
    }

    [Fact]
    public void RejectsProbabilitiesOutsideZeroToOne()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraDropout(1f, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraDropout(-0.1f, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LoraDropout(float.NaN, 0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ZeroProbabilityIsBitIdenticalToNoDropout(bool activated)
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config, activated ? Invocation : null);
        var rows = Batch(lora);
        using var plain = new DecoderTrainer(weights, lora, 2, 16);
        double lossPlain = plain.ForwardBackward(rows);
        var gradientsPlain = Gradients(lora);
        using var zero = new DecoderTrainer(weights, lora, 2, 16, dropout: new LoraDropout(0f, 9));
        double lossZero = zero.ForwardBackward(rows, dropoutStream: 123);
        Assert.Equal(lossPlain, lossZero);
        AssertSameGradients(gradientsPlain, Gradients(lora));
    }

    [Theory]
    [InlineData(false, false, "llama")]
    [InlineData(true, false, "llama")]
    [InlineData(false, true, "granite")]
    public void GradientsMatchFiniteDifferencesThroughAFixedMask(bool activated, bool checkpointing, string family)
    {
        using var weights = TinyModel.Weights(family: family);
        using var lora = TinyModel.Adapter(weights.Config, activated ? Invocation : null);
        var rows = Batch(lora);
        using var trainer = new DecoderTrainer(weights, lora, 2, 16, checkpointing, new LoraDropout(0.3f, 7));
        const long Stream = 5;
        double loss = trainer.ForwardBackward(rows, dropoutStream: Stream);
        var analytic = Gradients(lora);

        // The loss with dropout differs from the eval loss: the mask really changes the side path.
        Assert.NotEqual(trainer.Loss(rows), loss);

        const float Step = 2e-3f;
        var random = new Random(13);
        for (int moduleIndex = 0; moduleIndex < lora.Modules.Count; moduleIndex++)
        {
            var module = lora.Modules[moduleIndex];
            foreach (bool isA in new[] { true, false })
            {
                float[] gradient = isA ? analytic[moduleIndex].A : analytic[moduleIndex].B;
                double scale = gradient.Max(MathF.Abs);
                for (int probe = 0; probe < 2; probe++)
                {
                    int index = random.Next(gradient.Length);
                    Span<float> values = isA ? module.AValues : module.BValues;
                    float saved = values[index];
                    values[index] = saved + Step;
                    double plus = trainer.ForwardBackward(rows, dropoutStream: Stream);
                    values = isA ? module.AValues : module.BValues;
                    values[index] = saved - Step;
                    double minus = trainer.ForwardBackward(rows, dropoutStream: Stream);
                    values[index] = saved;
                    double numeric = (plus - minus) / (2 * Step);
                    double diff = Math.Abs(numeric - gradient[index]);
                    string what = $"layer {module.Layer} {module.Module} {(isA ? "A" : "B")}[{index}]: analytic {gradient[index]:E4}, numeric {numeric:E4}";
                    output.WriteLine(what);
                    Assert.True(diff <= 2e-4 + 1e-2 * scale, what + $" (|diff| {diff:E2}, tensor max |g| {scale:E2})");
                }
            }
        }
    }

    [Fact]
    public void SameSeedAndStreamGiveTheSameGradientsOthersDoNot()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config);
        var rows = Batch(lora);
        (double Loss, (float[] A, float[] B)[] Gradients) Run(int seed, long stream, bool checkpointing)
        {
            using var trainer = new DecoderTrainer(weights, lora, 2, 16, checkpointing, new LoraDropout(0.25f, seed));
            double loss = trainer.ForwardBackward(rows, dropoutStream: stream);
            return (loss, Gradients(lora));
        }

        var first = Run(1, 0, false);
        var again = Run(1, 0, false);
        Assert.Equal(first.Loss, again.Loss);
        AssertSameGradients(first.Gradients, again.Gradients);
        // Checkpointing runs each layer's forward again: it must draw the identical mask.
        var checkpointed = Run(1, 0, true);
        Assert.Equal(first.Loss, checkpointed.Loss);
        AssertSameGradients(first.Gradients, checkpointed.Gradients);

        var otherSeed = Run(2, 0, false);
        var otherStream = Run(1, 1, false);
        Assert.True(MaxDifference(first.Gradients, otherSeed.Gradients) > 1e-6, "another seed must draw another mask");
        Assert.True(MaxDifference(first.Gradients, otherStream.Gradients) > 1e-6, "another stream must draw another mask");
    }

    [Fact]
    public void LossIsEvaluationModeAndIgnoresDropout()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config);
        var rows = Batch(lora);
        using var plain = new DecoderTrainer(weights, lora, 2, 16);
        using var dropped = new DecoderTrainer(weights, lora, 2, 16, dropout: new LoraDropout(0.5f, 3));
        double expected = plain.Loss(rows);
        Assert.Equal(expected, dropped.Loss(rows));
        // Also right after a training forward on the same trainer.
        double trainingLoss = dropped.ForwardBackward(rows, dropoutStream: 4);
        Assert.NotEqual(expected, trainingLoss);
        Assert.Equal(expected, dropped.Loss(rows));
    }
}

using Alora.Models;
using Alora.Tests.Models;
using Alora.Training;
using Xunit.Abstractions;

namespace Alora.Tests.Training;

/// <summary>The whole training step: finite differences, aLoRA masking, checkpointing, padding, memory.</summary>
public sealed class DecoderTrainerTests(BatchingTests.Stories stories, ITestOutputHelper output) : IClassFixture<BatchingTests.Stories>
{
    private static readonly int[] Invocation = TinyModel.Invocation;

    /// <summary>Two rows of different lengths; labels on the second half of each; an invocation in the aLoRA rows.</summary>
    private static List<TrainingRow> TinyBatch(TrainableLora lora) => TinyModel.TwoRowBatch(lora, 7, 4);

    private static int[] LabelsFrom(int[] ids, int from) => TinyModel.LabelsFrom(ids, from);

    private static (float[] A, float[] B)[] Gradients(TrainableLora lora) => TinyModel.Gradients(lora);

    [Theory]
    [InlineData(false, "llama")]
    [InlineData(true, "llama")]
    [InlineData(true, "granite")]
    [InlineData(false, "qwen2")]
    [InlineData(true, "mistral")]
    public void TinyModelGradientsMatchFiniteDifferencesOfTheInferenceForward(bool activated, string family)
    {
        using var weights = TinyModel.Weights(family: family);
        using var lora = TinyModel.Adapter(weights.Config, activated ? Invocation : null);
        var rows = TinyBatch(lora);
        Assert.Equal(activated ? [6, 3] : new int?[] { 0, 0 }, rows.Select(r => r.AdapterStart).ToArray());
        using var trainer = new DecoderTrainer(weights, lora, 2, 16);
        double loss = trainer.ForwardBackward(rows);
        var forward = lora.ToForwardAdapter("tiny");
        double inferenceLoss = InferenceLoss.Compute(weights, forward, rows);
        Assert.True(Math.Abs(loss - inferenceLoss) <= 1e-5 * inferenceLoss, $"trainer loss {loss:R} vs inference forward {inferenceLoss:R}");

        const float Step = 2e-3f;
        var random = new Random(11);
        int checkedEntries = 0;
        foreach (var module in lora.Modules)
        {
            foreach (bool isA in new[] { true, false })
            {
                Span<float> values = isA ? module.AValues : module.BValues;
                float[] gradient = (isA ? module.AGradient : module.BGradient).ToArray();
                double scale = gradient.Max(MathF.Abs);
                for (int probe = 0; probe < 2; probe++)
                {
                    int index = random.Next(values.Length);
                    float saved = values[index];
                    values[index] = saved + Step;
                    double plus = InferenceLoss.Compute(weights, forward, rows);
                    values = isA ? module.AValues : module.BValues;
                    values[index] = saved - Step;
                    double minus = InferenceLoss.Compute(weights, forward, rows);
                    values[index] = saved;
                    double numeric = (plus - minus) / (2 * Step);
                    double diff = Math.Abs(numeric - gradient[index]);
                    string what = $"layer {module.Layer} {module.Module} {(isA ? "A" : "B")}[{index}]: analytic {gradient[index]:E4}, numeric {numeric:E4}";
                    output.WriteLine(what);
                    Assert.True(diff <= 2e-4 + 1e-2 * scale, what + $" (|diff| {diff:E2}, tensor max |g| {scale:E2})");
                    checkedEntries++;
                }
            }
        }
        Assert.Equal(56, checkedEntries);
    }

    [Fact]
    public void LossEqualsTheInferenceForwardOnStories260K()
    {
        using var fixture = new GradientFixtureTests.FixtureLora(stories.Weights.Config);
        var lora = fixture.Lora;
        var (rows, expected, _) = GradientFixtureTests.LoadBatch(lora);
        using var trainer = new DecoderTrainer(stories.Weights, null, 2, 64);
        using var withAdapter = new DecoderTrainer(stories.Weights, lora, 2, 64);
        double baseLoss = trainer.Loss(rows.Select(r => r with { AdapterStart = null }).ToList());
        double adapted = withAdapter.Loss(rows);
        double inferenceBase = InferenceLoss.Compute(stories.Weights, null, rows.Select(r => r with { AdapterStart = null }).ToList());
        Assert.True(Math.Abs(baseLoss - inferenceBase) <= 1e-5 * inferenceBase, $"base loss {baseLoss:R} vs inference forward {inferenceBase:R}");
        Assert.True(Math.Abs(adapted - expected) <= 1e-5 * expected, $"adapted loss {adapted:R} vs reference {expected:R}");
        Assert.True(Math.Abs(baseLoss - adapted) > 1e-3, $"the adapter should change the loss: base {baseLoss:R}, adapted {adapted:R}");
    }

    [Fact]
    public void Stories260KLoraOnEveryProjectionMatchesFiniteDifferences()
    {
        using var adapter = Alora.Adapters.LoraAdapter.Load(SharedPaths.Path("fixtures", "stories260K", "lora-all"), stories.Weights.Config);
        using var lora = new TrainableLora(adapter);
        using var aloraFixture = new GradientFixtureTests.FixtureLora(stories.Weights.Config);
        var rows = GradientFixtureTests.LoadBatch(aloraFixture.Lora).Rows.Select(r => r with { AdapterStart = 0 }).ToList();
        using var trainer = new DecoderTrainer(stories.Weights, lora, 2, 64);
        double loss = trainer.ForwardBackward(rows);
        var forward = adapter.AsForwardAdapter();
        double inference = InferenceLoss.Compute(stories.Weights, forward, rows);
        Assert.True(Math.Abs(loss - inference) <= 1e-5 * inference, $"trainer loss {loss:R} vs inference forward {inference:R}");
        foreach (int layer in new[] { 0, 4 })
            foreach (var module in lora.Modules.Where(m => m.Layer == layer))
                foreach (bool isA in new[] { true, false })
                {
                    float[] gradient = (isA ? module.AGradient : module.BGradient).ToArray();
                    int index = Array.IndexOf(gradient, gradient.MaxBy(MathF.Abs));   // the largest entry: well above FD noise
                    float step = isA ? 1e-2f : 1e-3f;   // B enters scaled by 8 (rsLoRA, r 4): a smaller step keeps the curvature term small
                    Span<float> values = isA ? module.AValues : module.BValues;
                    float saved = values[index];
                    values[index] = saved + step;
                    double plus = InferenceLoss.Compute(stories.Weights, forward, rows);
                    values = isA ? module.AValues : module.BValues;
                    values[index] = saved - step;
                    double minus = InferenceLoss.Compute(stories.Weights, forward, rows);
                    values[index] = saved;
                    double numeric = (plus - minus) / (2 * step);
                    string what = $"layer {layer} {module.Module} {(isA ? "A" : "B")}[{index}]: analytic {gradient[index]:E4}, numeric {numeric:E4}";
                    output.WriteLine(what);
                    Assert.True(Math.Abs(numeric - gradient[index]) <= 5e-4 + 2e-2 * Math.Abs(gradient[index]), what);
                }
    }

    [Fact]
    public void LabelsBeforeTheActivationStartGiveZeroAdapterGradient()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config, Invocation);
        using var trainer = new DecoderTrainer(weights, lora, 2, 16);
        var rows = TinyBatch(lora);
        // Logits at t < s come from base rows that never see an adapted row (causal attention): labels up to
        // position s (predicted from t = s − 1) cannot depend on the adapter, so its gradient is exactly zero.
        var early = rows.Select(r => r with { Labels = LabelsUpTo(r.InputIds, r.AdapterStart!.Value) }).ToList();
        trainer.ForwardBackward(early);
        Assert.All(lora.Modules, m =>
        {
            Assert.All(m.AGradient.ToArray(), g => Assert.Equal(0f, g));
            Assert.All(m.BGradient.ToArray(), g => Assert.Equal(0f, g));
        });
        // One label more (predicted from the first adapted row) and the gradient appears.
        var oneMore = rows.Select(r => r with { Labels = LabelsUpTo(r.InputIds, r.AdapterStart!.Value + 1) }).ToList();
        trainer.ForwardBackward(oneMore);
        Assert.Contains(lora.Modules, m => m.BGradient.ToArray().Any(g => g != 0));
    }

    private static int[] LabelsUpTo(int[] ids, int last) => ids.Select((id, t) => t >= 1 && t <= last ? id : TrainingRow.IgnoreLabel).ToArray();

    [Fact]
    public void ARowWithoutTheInvocationContributesNoAdapterGradient()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config, Invocation);
        using var trainer = new DecoderTrainer(weights, lora, 2, 16);
        var withInvocation = TinyBatch(lora)[0];
        int[] plain = TinyModel.Tokens(10, 9).Select(t => t is >= 7 and <= 9 ? 20 : t).ToArray();
        var withoutInvocation = TrainingRow.For(plain, LabelsFrom(plain, 2), lora);
        Assert.Null(withoutInvocation.AdapterStart);

        trainer.ForwardBackward([withInvocation]);
        int aloneCount = trainer.LabelCount;
        var alone = Gradients(lora);
        trainer.ForwardBackward([withInvocation, withoutInvocation]);
        int pooledCount = trainer.LabelCount;
        var pooled = Gradients(lora);
        // The pooled mean divides by every label of the batch; the second row adds labels but no gradient.
        for (int i = 0; i < alone.Length; i++)
        {
            GradientCheck.AssertClose(alone[i].A.Select(g => (double)g * aloneCount / pooledCount).ToArray(), pooled[i].A, 1e-5, 1e-9, $"module {i} dA");
            GradientCheck.AssertClose(alone[i].B.Select(g => (double)g * aloneCount / pooledCount).ToArray(), pooled[i].B, 1e-5, 1e-9, $"module {i} dB");
        }
    }

    [Fact]
    public void CheckpointingGivesTheSameLossAndGradients()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config, Invocation);
        var rows = TinyBatch(lora);
        using var plain = new DecoderTrainer(weights, lora, 2, 16, checkpointing: false);
        using var checkpointed = new DecoderTrainer(weights, lora, 2, 16, checkpointing: true);
        double lossPlain = plain.ForwardBackward(rows);
        var gradientsPlain = Gradients(lora);
        double lossCheckpointed = checkpointed.ForwardBackward(rows);
        var gradientsCheckpointed = Gradients(lora);
        Assert.Equal(lossPlain, lossCheckpointed);
        for (int i = 0; i < gradientsPlain.Length; i++)
        {
            Assert.Equal(gradientsPlain[i].A, gradientsCheckpointed[i].A);
            Assert.Equal(gradientsPlain[i].B, gradientsCheckpointed[i].B);
        }
        Assert.True(checkpointed.ActivationBytes < plain.ActivationBytes,
            $"checkpointing keeps {checkpointed.ActivationBytes} bytes, without {plain.ActivationBytes}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RightPaddingWithIgnoredLabelsChangesNothing(bool activated)
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config, activated ? Invocation : null);
        var rows = TinyBatch(lora);
        using var trainer = new DecoderTrainer(weights, lora, 2, 20);
        double loss = trainer.ForwardBackward(rows);
        var gradients = Gradients(lora);
        // Pad both rows to 20 with an arbitrary token and label −100; keep each row's activation start.
        var padded = rows.Select(r => r with
        {
            InputIds = [.. r.InputIds, .. Enumerable.Repeat(3, 20 - r.InputIds.Length)],
            Labels = [.. r.Labels, .. Enumerable.Repeat(TrainingRow.IgnoreLabel, 20 - r.Labels.Length)],
        }).ToList();
        double paddedLoss = trainer.ForwardBackward(padded);
        Assert.Equal(loss, paddedLoss, 6);
        var paddedGradients = Gradients(lora);
        for (int i = 0; i < gradients.Length; i++)
        {
            GradientCheck.AssertClose(gradients[i].A, paddedGradients[i].A, 1e-5, 1e-8, $"module {i} dA");
            GradientCheck.AssertClose(gradients[i].B, paddedGradients[i].B, 1e-5, 1e-8, $"module {i} dB");
        }
    }

    [Fact]
    public void AccumulatedMicroBatchesEqualOneBatch()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config, Invocation);
        var rows = TinyBatch(lora);
        using var trainer = new DecoderTrainer(weights, lora, 2, 16);
        double whole = trainer.ForwardBackward(rows);
        int total = trainer.LabelCount;
        var expected = Gradients(lora);
        double first = trainer.ForwardBackward([rows[0]], meanOver: total);
        double second = trainer.ForwardBackward([rows[1]], accumulateGradients: true, meanOver: total);
        Assert.True(Math.Abs(first + second - whole) <= 1e-6 * whole, $"micro-batch losses {first} + {second} vs {whole}");
        var unlabelled = rows[0] with { Labels = [.. rows[0].Labels.Select(_ => TrainingRow.IgnoreLabel)] };
        Assert.Equal(0, trainer.ForwardBackward([unlabelled], accumulateGradients: true, meanOver: total));
        var accumulated = Gradients(lora);
        for (int i = 0; i < expected.Length; i++)
        {
            GradientCheck.AssertClose(expected[i].A, accumulated[i].A, 1e-5, 1e-8, $"module {i} dA");
            GradientCheck.AssertClose(expected[i].B, accumulated[i].B, 1e-5, 1e-8, $"module {i} dB");
        }
    }

    [Fact]
    public void AnAdapterForAnotherModelIsRefused()
    {
        using var weights = TinyModel.Weights();
        using var wide = new TrainableLora(TinyModel.Config() with { IntermediateSize = 32 }, ["up_proj"], 2, 1f);
        var error = Assert.Throws<ArgumentException>(() => new DecoderTrainer(weights, wide, 1, 8));
        Assert.Contains("layers.0.mlp.up_proj is [32, 16]", error.Message);
        Assert.Contains("[24, 16]", error.Message);
    }

    [Fact]
    public void BadBatchesAreRefusedWithTheRowNamed()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config);
        using var trainer = new DecoderTrainer(weights, lora, 2, 8);
        var tooLong = Assert.Throws<ArgumentException>(() => trainer.ForwardBackward([new TrainingRow(new int[9], new int[9], 0)]));
        Assert.Contains("row 0 has 9 tokens", tooLong.Message);
        var badLabel = Assert.Throws<ArgumentException>(() => trainer.ForwardBackward([new TrainingRow([1, 2, 3], [-100, 2, 77], 0)]));
        Assert.Contains("row 0, position 2: label 77", badLabel.Message);
        var noLabels = Assert.Throws<ArgumentException>(() => trainer.ForwardBackward([new TrainingRow([1, 2, 3], [-100, -100, -100], 0)]));
        Assert.Contains("no position", noLabels.Message);
        var mismatch = Assert.Throws<ArgumentException>(() => trainer.ForwardBackward([new TrainingRow([1, 2, 3], [1, 2], 0)]));
        Assert.Contains("2 labels for 3 input ids", mismatch.Message);
    }
}

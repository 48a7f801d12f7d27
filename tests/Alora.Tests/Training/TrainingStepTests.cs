using Alora.Training;
using Alora.Training.Data;
using Alora.Training.Optimization;

namespace Alora.Tests.Training;

/// <summary>The trainer with the data batches and the optimizers: steps update the adapter in place and lower the loss.</summary>
public sealed class TrainingStepTests
{
    [Fact]
    public void AdamWStepsLowerTheTinyModelsLossAndReachTheInferenceView()
    {
        using var weights = TinyModel.Weights();
        using var lora = TinyModel.Adapter(weights.Config);
        var forward = lora.ToForwardAdapter("tiny");
        int[] ids = TinyModel.Tokens(12, 21);
        var rows = new List<TrainingRow> { new(ids, ids, 0) };
        using var trainer = new DecoderTrainer(weights, lora, 1, 12);
        var tensors = lora.TrainableTensors();
        Assert.Equal(2 * lora.Modules.Count, tensors.Count);
        var options = new OptimizerOptions { LearningRate = 5e-2 };
        var optimizer = Optimizer.Create(tensors, options);
        double first = trainer.ForwardBackward(rows), last = first;
        for (int step = 0; step < 20; step++)
        {
            GradientClipping.ClipByGlobalNorm(tensors, 1.0);
            optimizer.Apply(LearningRateSchedule.At("linear", options.LearningRate, step, 20, 2));
            last = trainer.ForwardBackward(rows);
        }
        Assert.True(last < 0.8 * first, $"loss went from {first} to {last}");
        // The inference view shares the factors, so it sees the trained adapter.
        double inference = InferenceLoss.Compute(weights, forward, rows);
        Assert.True(Math.Abs(inference - last) <= 1e-5 * last, $"inference loss {inference} vs trainer {last}");
    }

    [Fact]
    public void PaddedDataBatchesGiveTheSameStepAsTheirRows()
    {
        using var weights = TinyModel.Weights();
        int[] invocation = [7, 8, 9];
        using var lora = TinyModel.Adapter(weights.Config, invocation);
        int[] a = [.. TinyModel.Tokens(4, 1), .. invocation, .. TinyModel.Tokens(3, 2)];
        int[] b = [.. TinyModel.Tokens(2, 3), .. invocation, 11, 12, 13, 14, 15, 16];
        int[] LabelsAfter(int[] ids, int from) => ids.Select((id, t) => t >= from ? id : TrainingExample.IgnoreIndex).ToArray();
        var examples = new List<TrainingExample> { new(a, LabelsAfter(a, 7), 4, 1), new(b, LabelsAfter(b, 5), 2, 2) };
        var batch = TrainingBatches.Pad(examples);
        var rows = TrainingRow.FromBatch(batch, lora);
        Assert.Equal([4, 2], rows.Select(r => r.AdapterStart!.Value).ToArray());
        Assert.Equal([a.Length, b.Length], rows.Select(r => r.InputIds.Length).ToArray());
        using var trainer = new DecoderTrainer(weights, lora, 2, 16);
        double fromRows = trainer.ForwardBackward(rows);
        var gradients = lora.Modules.Select(m => m.BGradient.ToArray()).ToArray();
        double fromPadded = trainer.ForwardBackward(
            Enumerable.Range(0, batch.Rows).Select(r => new TrainingRow(batch.InputIds[r], batch.Labels[r], batch.ActivationStarts[r])).ToList());
        Assert.Equal(batch.LossTokenCount, trainer.LabelCount);
        Assert.Equal(fromRows, fromPadded, 6);
        for (int i = 0; i < gradients.Length; i++)
            GradientCheck.AssertClose(gradients[i], lora.Modules[i].BGradient.ToArray(), 1e-5, 1e-8, $"module {i} dB");
    }
}

using Alora.Adapters;
using Alora.Models;
using Alora.Tests.Cli;
using Alora.Training;

namespace Alora.Tests.Training;

/// <summary>DoRA training runs on stories260K: the loss falls, the magnitudes learn, the adapter reloads; `alora train --use_dora`.</summary>
[Collection("Console")]
public sealed class DoraTrainingTests
{
    private static string Data => SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl");

    [Fact]
    public unsafe void ADoraRunLowersTheLossTrainsTheMagnitudesAndReloads()
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        var options = TrainerTests.Options(Data, output) with { UseDora = true, LoraDropout = 0.05 };
        var reports = new List<TrainingProgress>();
        var result = new Trainer(options).Run(new SyncProgress(reports));
        Assert.Equal(24, result.Steps);
        double first = reports.Take(3).Average(r => r.Loss), last = reports.TakeLast(3).Average(r => r.Loss);
        Assert.True(last < 0.7 * first, $"loss should fall: first steps {first:F3}, last steps {last:F3}");

        var config = LoraConfig.Load(Path.Combine(output, "adapter_config.json"));
        Assert.True(config.UseDora);
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var adapter = LoraAdapter.Load(output, weights.Config);
        Assert.True(adapter.IsDora);
        // The magnitudes moved away from their initial value ‖W + s·B·A‖ (B starts at zero, so ‖W‖).
        double moved = 0;
        foreach (var m in adapter.Modules)
        {
            var norms = new float[m.OutFeatures];
            fixed (float* n = norms) Dora.WeightNormsReference(n, weights.Layers[m.Layer].Projection(m.Module), null, null, 0, 0);
            for (int j = 0; j < norms.Length; j++) moved = Math.Max(moved, Math.Abs(m.MagnitudeValues[j] - norms[j]));
        }
        Assert.True(moved > 1e-3, $"the magnitude vectors did not train (max change {moved})");

        // The reloaded adapter's loss on the training data equals what the trainer's own (evaluation) forward gives.
        using var trainable = new TrainableLora(adapter);
        var rows = Adapters.DoraTests.ReferenceBatch();
        using var trainer = new DecoderTrainer(weights, trainable, 2, 64);
        double trainerLoss = trainer.Loss(rows);
        double inference = InferenceLoss.Compute(weights, adapter.AsForwardAdapter(), rows);
        Assert.True(Math.Abs(trainerLoss - inference) <= 1e-5 * inference, $"trainer {trainerLoss:R} vs inference {inference:R}");
    }

    [Fact]
    public void CliTrainsADoraAdapterAndRefusesItWithAnAlora()
    {
        using var temp = new TempFolder();
        string output = temp.File("cli");
        var (code, text) = CliRunner.Run("TrainCommands", "Train", "--base_model", SharedPaths.Stories260K, "--data_path", Data, "--output_dir", output,
            "--adapter", "lora", "--use_dora", "--lora_r", "2", "--lora_alpha", "4", "--lora_target_modules", "q_proj,v_proj", "--max_steps", "2",
            "--batch_size", "2", "--cutoff_len", "64");
        Assert.Equal(0, code);
        Assert.Contains("trained 2 steps", text, StringComparison.Ordinal);
        using (var file = Alora.Formats.SafeTensorsFile.Open(Path.Combine(output, "adapter_model.safetensors")))
            Assert.Contains("base_model.model.model.layers.4.self_attn.v_proj.lora_magnitude_vector", file.Tensors.Keys);

        var e = Assert.ThrowsAny<Exception>(() => CliRunner.Run("TrainCommands", "Train", "--base_model", SharedPaths.Stories260K, "--data_path", Data,
            "--output_dir", temp.File("bad"), "--adapter", "alora", "--invocation_string", "Q:", "--use_dora"));
        Assert.Equal("CliException", e.GetType().Name);   // the library's UseDora, named by its flag
        Assert.Contains("--use_dora", e.Message, StringComparison.Ordinal);
        Assert.Contains("--adapter alora", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(temp.File("bad")));
    }

    private sealed class SyncProgress(List<TrainingProgress> reports) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => reports.Add(value);
    }
}

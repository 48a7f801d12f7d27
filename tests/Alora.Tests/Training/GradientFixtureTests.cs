using System.Text.Json;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Tests.Models;
using Alora.Training;
using Xunit.Abstractions;

namespace Alora.Tests.Training;

/// <summary>
/// The aLoRA training step of shared/fixtures/stories260K/grad-alora-q-k-v: loss and all 30 lora_A / lora_B
/// gradients against the float64 PyTorch reference.
/// </summary>
public sealed class GradientFixtureTests(BatchingTests.Stories stories, ITestOutputHelper output) : IClassFixture<BatchingTests.Stories>
{
    private readonly ModelWeights _weights = stories.Weights;

    internal static (List<TrainingRow> Rows, double Loss, int LabelCount) LoadBatch(TrainableLora lora)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedPaths.Path("fixtures", "stories260K", "grad-alora-q-k-v", "grad.json")));
        var root = doc.RootElement;
        var rows = new List<TrainingRow>();
        foreach (var row in root.GetProperty("batch").EnumerateArray())
        {
            int[] ids = row.GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            int[] labels = row.GetProperty("labels").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var trainingRow = TrainingRow.For(ids, labels, lora);
            Assert.Equal(row.GetProperty("first_adapted_position").GetInt32(), trainingRow.AdapterStart);
            rows.Add(trainingRow);
        }
        return (rows, root.GetProperty("loss").GetDouble(), root.GetProperty("n_loss_tokens").GetInt32());
    }

    /// <summary>The fixture adapter (the adapter library's loader) and a trainable view of its memory.</summary>
    internal sealed class FixtureLora : IDisposable
    {
        public FixtureLora(ModelConfig config)
        {
            Adapter = LoraAdapter.Load(SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"), config);
            Lora = new TrainableLora(Adapter);
        }

        public LoraAdapter Adapter { get; }
        public TrainableLora Lora { get; }

        public void Dispose()
        {
            Lora.Dispose();
            Adapter.Dispose();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LossAndEveryGradientMatchTheReference(bool checkpointing)
    {
        using var fixture = new FixtureLora(_weights.Config);
        var lora = fixture.Lora;
        var (rows, expectedLoss, labelCount) = LoadBatch(lora);
        using var trainer = new DecoderTrainer(_weights, lora, maxRows: 2, maxLength: 64, checkpointing);
        double loss = trainer.ForwardBackward(rows);
        Assert.Equal(labelCount, trainer.LabelCount);
        double lossRelative = Math.Abs(loss - expectedLoss) / Math.Abs(expectedLoss);
        output.WriteLine($"loss {loss:R} expected {expectedLoss:R} (relative diff {lossRelative:E2})");
        Assert.True(lossRelative <= 1e-5, $"loss {loss:R} differs from {expectedLoss:R} by {lossRelative:E2} relative");

        using var expected = SafeTensorsFile.Open(SharedPaths.Path("fixtures", "stories260K", "grad-alora-q-k-v", "grads.safetensors"));
        Assert.Equal(30, expected.Tensors.Count);
        Assert.Equal(15, lora.Modules.Count);
        var failures = new List<string>();
        double worstAbs = 0;
        foreach (var module in lora.Modules)
        {
            foreach (var (suffix, actual) in new[] { ("lora_A", module.AGradient.ToArray()), ("lora_B", module.BGradient.ToArray()) })
            {
                string key = $"{module.PeftPrefix}.{suffix}.weight";
                float[] reference = expected.ReadFloats(key);
                Assert.Equal(reference.Length, actual.Length);
                double maxAbs = 0, maxRef = 0;
                for (int i = 0; i < reference.Length; i++)
                {
                    maxAbs = Math.Max(maxAbs, Math.Abs(actual[i] - reference[i]));
                    maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
                }
                worstAbs = Math.Max(worstAbs, maxAbs);
                string line = $"{key}: max |diff| {maxAbs:E2}, max |g| {maxRef:E2}, relative to max {maxAbs / maxRef:E2}";
                output.WriteLine(line);
                if (!(maxAbs <= 1e-4 || maxAbs <= 1e-3 * maxRef)) failures.Add(line);
            }
        }
        output.WriteLine($"worst max |diff| over all tensors: {worstAbs:E2}");
        Assert.True(failures.Count == 0, "gradients outside tolerance:\n" + string.Join("\n", failures));
    }

    [Fact]
    public unsafe void TheTrainableViewSharesTheAdaptersFactors()
    {
        using var fixture = new FixtureLora(_weights.Config);
        Assert.Equal(fixture.Adapter.Modules.Count, fixture.Lora.Modules.Count);
        foreach (var module in fixture.Adapter.Modules)
        {
            var trainable = fixture.Lora.Get(module.Layer, Alora.Models.ForwardAdapter.ModuleIndex(module.Module))!;
            Assert.Equal(module.PeftPrefix, trainable.PeftPrefix);
            Assert.Equal((nint)module.A.Data, (nint)trainable.A);
            Assert.Equal((nint)module.B.Data, (nint)trainable.B);
            Assert.Equal(module.Scaling, trainable.Scaling);
        }
        // An update through the trainable view is the adapter's own value.
        fixture.Lora.Modules[0].BValues[0] += 1f;
        Assert.Equal(fixture.Lora.Modules[0].BValues[0], fixture.Adapter.Modules.First(m => m.Layer == fixture.Lora.Modules[0].Layer && m.Module == fixture.Lora.Modules[0].Module).BValues[0]);
    }
}

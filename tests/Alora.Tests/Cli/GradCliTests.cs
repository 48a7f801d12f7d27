using System.Text.Json;
using Alora.Formats;

namespace Alora.Tests.Cli;

/// <summary>`alora grad` on the stories260K aLoRA gradient fixture, in-process with stdout captured.</summary>
[Collection("Console")]
public sealed class GradCliTests
{
    private static (int ExitCode, string Output) Run(params string[] args) => CliRunner.Run("TrainingCommands", "Grad", args);

    [Fact]
    public void GradWritesTheFixturesLossAndGradients()
    {
        using var folder = new TempFolder();
        string outPath = Path.Combine(folder.Path, "grads.safetensors");
        string fixture = SharedPaths.Path("fixtures", "stories260K", "grad-alora-q-k-v");
        var (code, text) = Run("--model", SharedPaths.Stories260K, "--adapter", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"),
            "--batch", Path.Combine(fixture, "grad.json"), "--out", outPath, "--gradient-checkpointing");
        Assert.Equal(0, code);
        using var result = JsonDocument.Parse(text);
        using var expectedJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(fixture, "grad.json")));
        double expectedLoss = expectedJson.RootElement.GetProperty("loss").GetDouble();
        Assert.True(Math.Abs(result.RootElement.GetProperty("loss").GetDouble() - expectedLoss) <= 1e-5 * expectedLoss);
        Assert.Equal(23, result.RootElement.GetProperty("n_loss_tokens").GetInt32());
        Assert.Equal([20, 14], result.RootElement.GetProperty("first_adapted_positions").EnumerateArray().Select(e => e.GetInt32()).ToArray());

        using var expected = SafeTensorsFile.Open(Path.Combine(fixture, "grads.safetensors"));
        using var actual = SafeTensorsFile.Open(outPath);
        Assert.Equal(expected.Tensors.Keys.Order(), actual.Tensors.Keys.Order());
        foreach (string key in expected.Tensors.Keys)
        {
            float[] e = expected.ReadFloats(key), a = actual.ReadFloats(key);
            Assert.Equal(expected.Tensors[key].Shape, actual.Tensors[key].Shape);
            double maxAbs = e.Zip(a, (x, y) => Math.Abs(x - y)).Max(), maxRef = e.Max(MathF.Abs);
            Assert.True(maxAbs <= 1e-4 || maxAbs <= 1e-3 * maxRef, $"{key}: max |diff| {maxAbs:E2}");
        }
    }

    [Fact]
    public void ABadBatchFileIsNamed()
    {
        using var folder = new TempFolder();
        string batch = Path.Combine(folder.Path, "batch.json");
        File.WriteAllText(batch, """[{"input_ids": [1, 2, 3], "labels": [1, "x", 3]}]""");
        var error = Assert.ThrowsAny<Exception>(() => Run("--model", SharedPaths.Stories260K, "--adapter", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"), "--batch", batch));
        Assert.Contains("row 0 \"labels\"[1]", error.Message);
        Assert.Contains(batch, error.Message);
    }
}

using Alora.Adapters;
using Alora.Models;
using Alora.Training;
using Alora.Training.Data;

namespace Alora.Tests.Training;

/// <summary>Whole training runs on stories260K: the loss falls, the adapter reloads and generates, resume is exact, bad input writes nothing.</summary>
public sealed class TrainerTests
{
    /// <summary>A small LoRA run on stories260K (shared by the trainer tests).</summary>
    internal static TrainerOptions Options(string data, string output) => new()
    {
        BaseModel = SharedPaths.Stories260K,
        DataPath = data,
        OutputDir = output,
        AdapterKind = "lora",
        LoraR = 4,
        LoraAlpha = 8,
        TargetModules = ["q_proj", "v_proj", "down_proj"],
        BatchSize = 4,
        LearningRate = 0.01,
        MaxSteps = 24,
        CutoffLength = 96,
        SaveStep = 1000,
        EvalStep = 1000,
    };

    [Fact]
    public async Task ARealRunLowersTheLossAndTheAdapterReloadsAndGenerates()
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        var options = Options(SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), output) with { ValSetSize = 8, EvalStep = 8 };
        var reports = new List<TrainingProgress>();
        var result = new Trainer(options).Run(new Progress(reports));
        Assert.Equal(24, result.Steps);
        double first = reports.Take(3).Average(r => r.Loss), last = reports.TakeLast(3).Average(r => r.Loss);
        Assert.True(last < 0.7 * first, $"loss should fall: first steps {first:F3}, last steps {last:F3}");
        Assert.NotNull(result.BestValidationLoss);
        foreach (var file in new[] { "adapter_config.json", "adapter_model.safetensors", "loss_curve.csv", "loss_curve.svg", "best/adapter_model.safetensors" })
            Assert.True(File.Exists(Path.Combine(output, file)), file);
        Assert.Equal(25, File.ReadAllLines(Path.Combine(output, "loss_curve.csv")).Length);

        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 512);
        var adapter = model.LoadAdapter("trained", output);
        Assert.Equal(3 * 5, adapter.Modules.Count);
        var generator = model.CreateGenerator();
        using var sequence = model.NewSequence();
        int[] prompt = model.Encode("@HMRCcustomers No this is my first job");
        var (withAdapter, _) = await Adapters.AdapterForwardTests.CollectWithStats(generator,
            new Alora.Inference.GenerationRequest { PromptIds = prompt, MaxTokens = 8, Adapter = model.Adapter("trained") }, sequence);
        Assert.NotEmpty(withAdapter);
    }

    [Theory]
    [InlineData("qproj", "matches no module")]
    [InlineData("lm_head", "embedding or output layer")]
    [InlineData("model.embed_tokens", "embedding or output layer")]
    [InlineData("input_layernorm", "is a norm")]
    public void ATargetThatMatchesNoProjectionIsAnErrorNamingIt(string bad, string reason)
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        var options = Options(SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), output) with { TargetModules = ["q_proj", bad] };
        var e = Assert.Throws<ArgumentException>(() => new Trainer(options).Run());
        Assert.Contains($"'{bad}'", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.False(Directory.Exists(output));
        // Suffixes of real module paths are fine, as in PEFT.
        Assert.Equal(1, new Trainer(options with { TargetModules = ["self_attn.q_proj", "mlp.down_proj"], MaxSteps = 1 }).Run().Steps);
    }

    /// <summary>PEFT allows init_lora_weights=False (A and B random, so the adapter is not a no-op at step 0) for debugging; so does the trainer.</summary>
    [Fact]
    public void InitLoraWeightsFalseTrainsAndIsRecorded()
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        var options = Options(SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), output) with { MaxSteps = 2, InitLoraWeights = "false" };
        Assert.Equal(2, new Trainer(options).Run().Steps);
        var config = LoraConfig.Load(Path.Combine(output, "adapter_config.json"));
        Assert.Equal("false", config.InitLoraWeights);
        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 64);
        var adapter = model.LoadAdapter("debug", output);
        // B starts Kaiming-uniform (±1/√r = ±0.5 here), far from what 2 steps of lr 0.01 make of a zero start.
        Assert.True(adapter.Modules.Max(m => m.BValues.ToArray().Max(Math.Abs)) > 0.1f);
    }

    [Fact]
    public void ResumingFromACheckpointGivesTheSameAdapterAsAnUninterruptedRun()
    {
        using var temp = new TempFolder();
        string data = SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl");
        var whole = Options(data, temp.File("whole")) with { MaxSteps = 10, SaveStep = 4 };
        new Trainer(whole).Run();
        var resumed = Options(data, temp.File("whole")) with { MaxSteps = 10, SaveStep = 4, ResumeFromCheckpoint = temp.File("whole/checkpoint-4"), OutputDir = temp.File("resumed") };
        new Trainer(resumed).Run();
        using var a = Alora.Formats.SafeTensorsFile.Open(temp.File("whole/adapter_model.safetensors"));
        using var b = Alora.Formats.SafeTensorsFile.Open(temp.File("resumed/adapter_model.safetensors"));
        foreach (var name in a.Tensors.Keys) Assert.Equal(a.ReadFloats(name), b.ReadFloats(name));
    }

    [Fact]
    public void AnAloraRunLearnsOnlyAfterTheInvocation()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("qa.jsonl"), string.Join("\n", Enumerable.Range(0, 8).Select(i =>
            $"{{\"prompt\": \"{(i % 2 == 0 ? "Lily had a red ball." : "Tom ran to the tree.")}\\nQ: Does a ball appear?\\nA:\", \"completion\": \"{(i % 2 == 0 ? " yes" : " no")}\"}}")));
        var options = Options(temp.File("qa.jsonl"), temp.File("out")) with { AdapterKind = "alora", InvocationTokenIds = [13, 473, 467], MaxSteps = 12, BatchSize = 2 };
        new Trainer(options).Run();
        var config = LoraConfig.Load(temp.File("out/adapter_config.json"));
        Assert.Equal([13, 473, 467], config.AloraInvocationTokens!);
    }

    [Fact]
    public void BadInputGetsAClearErrorAndWritesNothing()
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        File.WriteAllText(temp.File("bad.jsonl"), "{\"prompt\": \"a\", \"completion\": \"b\"}\n{broken\n");
        var e = Assert.Throws<TrainingDataException>(() => new Trainer(Options(temp.File("bad.jsonl"), output)).Run());
        Assert.Contains("bad.jsonl:2", e.Message);
        Assert.False(Directory.Exists(output));

        File.WriteAllText(temp.File("empty.jsonl"), "\n");
        e = Assert.Throws<TrainingDataException>(() => new Trainer(Options(temp.File("empty.jsonl"), output)).Run());
        Assert.Contains("empty", e.Message);
        Assert.False(Directory.Exists(output));

        File.WriteAllText(temp.File("noinv.jsonl"), "{\"prompt\": \"Tom ran.\", \"completion\": \" yes\"}\n");
        var alora = Options(temp.File("noinv.jsonl"), output) with { AdapterKind = "alora", InvocationTokenIds = [13, 473, 467] };
        e = Assert.Throws<TrainingDataException>(() => new Trainer(alora).Run());
        Assert.Contains("noinv.jsonl:1: the invocation [13, 473, 467] does not occur", e.Message);
        Assert.False(Directory.Exists(output));

        File.WriteAllText(temp.File("blocker"), "a file where the output folder should be");
        var unwritable = Options(SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), Path.Combine(temp.File("blocker"), "out"));
        e = Assert.Throws<TrainingDataException>(() => new Trainer(unwritable).Run());
        Assert.Contains("cannot be written", e.Message);
    }

    private sealed class Progress(List<TrainingProgress> reports) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => reports.Add(value);
    }
}

/// <summary>QLoRA-style training: a LoRA trained on a quantized frozen base lowers the loss and loads on the f32 base.</summary>
public sealed class QuantizedBaseTrainerTests
{
    [Theory]
    [InlineData(Alora.Tensors.DType.Q8_0)]
    [InlineData(Alora.Tensors.DType.Q4_0)]
    public void ALoraOnAQuantizedBase_LowersTheLoss_AndLoadsOnTheF32Base(Alora.Tensors.DType dtype)
    {
        using var temp = new TempFolder();
        string output = temp.File("out");
        var options = TrainerTests.Options(SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), output) with { Quantize = dtype };
        var reports = new List<TrainingProgress>();
        var result = new Trainer(options).Run(new Progress(reports));
        Assert.Equal(24, result.Steps);
        double first = reports.Take(3).Average(r => r.Loss), last = reports.TakeLast(3).Average(r => r.Loss);
        Assert.True(last < 0.7 * first, $"{dtype}: loss should fall: first steps {first:F3}, last steps {last:F3}");
        // The base really was quantized: the first step's loss differs from the same step on the f32 base.
        var f32Reports = new List<TrainingProgress>();
        new Trainer(TrainerTests.Options(options.DataPath, temp.File("f32")) with { MaxSteps = 1 }).Run(new Progress(f32Reports));
        Assert.NotEqual(f32Reports[0].Loss, reports[0].Loss);
        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 64);
        var adapter = model.LoadAdapter("qlora", output);
        Assert.True(adapter.Modules.Max(m => m.BValues.ToArray().Max(Math.Abs)) > 0);
    }

    private sealed class Progress(List<TrainingProgress> reports) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => reports.Add(value);
    }
}

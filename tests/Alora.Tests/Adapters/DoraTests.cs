using System.Text.Json;
using Alora.Adapters;
using Alora.Formats;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Tests.Models;
using Alora.Tests.Training;
using Alora.Training;
using Xunit.Abstractions;

namespace Alora.Tests.Adapters;

/// <summary>
/// DoRA (PEFT's use_dora) against tests/Alora.Tests/Fixtures/dora-stories260K, made by tools/reference/dora_reference.py
/// (float64 PyTorch written from PEFT's DoRA semantics): logits, loss and every gradient; PEFT's file format; mixed
/// batches; merge and unmerge.
/// </summary>
public sealed class DoraTests(BatchingTests.Stories stories, ITestOutputHelper output) : IClassFixture<BatchingTests.Stories>
{
    public static string FixtureRoot { get; } = Path.Combine(SharedPaths.RepositoryRoot, "tests", "Alora.Tests", "Fixtures", "dora-stories260K");
    private static string AdapterFolder => Path.Combine(FixtureRoot, "adapter");

    /// <summary>The fixture's two labelled rows (every row adapted from position 0).</summary>
    internal static List<TrainingRow> ReferenceBatch()
    {
        using var doc = Reference();
        return doc.RootElement.GetProperty("batch").EnumerateArray().Select(r => new TrainingRow(
            r.GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            r.GetProperty("labels").EnumerateArray().Select(x => x.GetInt32()).ToArray(), 0)).ToList();
    }

    private static JsonDocument Reference() => JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureRoot, "reference.json")));

    private static int[][] CaseIds()
    {
        using var doc = Reference();
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
    }

    private static float[] Logits(ModelWeights weights, ForwardAdapter? adapter, int[] ids)
    {
        using var model = new DecoderModel(weights, maxBatchTokens: 64);
        using var cache = model.CreateCache(ids.Length + 16);
        using var sequence = new KvSequence(cache);
        var logits = new float[ids.Length * model.VocabSize];
        model.Forward([new SequenceChunk(sequence, ids, LogitRows.All, adapter, 0)], logits);
        return logits;
    }

    [Fact]
    public void LogitsMatchTheReferenceAtEveryPosition()
    {
        using var adapter = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        Assert.True(adapter.IsDora);
        using var expected = SafeTensorsFile.Open(Path.Combine(FixtureRoot, "logits.safetensors"));
        var cases = CaseIds();
        double worst = 0, moved = 0;
        for (int k = 0; k < cases.Length; k++)
        {
            float[] reference = expected.ReadFloats($"case_{k}");
            float[] actual = Logits(stories.Weights, adapter.AsForwardAdapter(), cases[k]);
            float[] plainLora = Logits(stories.Weights, WithoutMagnitudes(adapter), cases[k]);
            Assert.Equal(reference.Length, actual.Length);
            for (int i = 0; i < reference.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(actual[i] - reference[i]));
                moved = Math.Max(moved, Math.Abs(plainLora[i] - reference[i]));
            }
        }
        // The float32 floor on this model: the base model against shared/fixtures/stories260K's float64 logits of the
        // same positions (case 0 is a prefix of its prompt_0 rows).
        using var baseGolden = SafeTensorsFile.Open(SharedPaths.Path("fixtures", "stories260K", "logits.safetensors"));
        float[] baseReference = baseGolden.ReadFloats("prompt_0");
        float[] baseActual = Logits(stories.Weights, null, cases[0]);
        double floor = 0;
        for (int i = 0; i < baseActual.Length; i++) floor = Math.Max(floor, Math.Abs(baseActual[i] - baseReference[i]));
        output.WriteLine($"max |Δlogit| vs the float64 reference: {worst:E3} (the same A, B without DoRA's magnitude: {moved:F3}; base model vs its float64 golden on case 0: {floor:E3})");
        // 2e-5: float32 itself lands ~1e-5 from float64 on this model (logits up to ±20): the base model alone is 9.2e-6
        // from its float64 golden (measured 1.28e-5 with DoRA).
        Assert.True(floor <= 1.5e-5, $"the base model is {floor:E3} from its golden logits");
        Assert.True(worst <= 2e-5, $"DoRA logits differ from the reference by {worst:E3} (base model floor {floor:E3})");
        Assert.True(moved > 0.1, $"the magnitude vectors should matter: plain LoRA with the same A, B is only {moved} away");
    }

    /// <summary>The adapter's A and B as a plain LoRA (the control: the magnitude must change the logits).</summary>
    private static unsafe ForwardAdapter WithoutMagnitudes(LoraAdapter adapter)
    {
        var forward = new ForwardAdapter("plain", adapter.BaseConfig.LayerCount);
        foreach (var m in adapter.Modules) forward.Set(m.Layer, m.Module, new LowRankDelta(m.A, m.B, m.Scaling));
        return forward;
    }

    [Fact]
    public void MixedBatchRowsEqualEachRowAlone()
    {
        // DoRA rows, plain LoRA rows and base rows of different sequences in one forward pass (PEFT itself refuses
        // adapter_names with DoRA; here each row must still get exactly what it gets alone).
        using var dora = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        using var lora = LoraAdapter.Load(AdapterFixtures.LoraAll, stories.Weights.Config);
        var ids = CaseIds();
        int[] a = ids[0], b = ids[1], c = ids[0][..20];
        var adapters = new ForwardAdapter?[] { dora.AsForwardAdapter(), null, lora.AsForwardAdapter() };
        int[][] inputs = [a, b, c];
        using var model = new DecoderModel(stories.Weights, maxBatchTokens: 256);
        using var cache = model.CreateCache(512);
        var sequences = inputs.Select(_ => new KvSequence(cache)).ToArray();
        try
        {
            int v = model.VocabSize;
            var together = new float[inputs.Sum(x => x.Length) * v];
            model.Forward(inputs.Select((x, i) => new SequenceChunk(sequences[i], x, LogitRows.All, adapters[i], 0)).ToList(), together);
            int offset = 0;
            for (int i = 0; i < inputs.Length; i++)
            {
                float[] alone = Logits(stories.Weights, adapters[i], inputs[i]);
                Assert.True(alone.AsSpan().SequenceEqual(together.AsSpan(offset, alone.Length)), $"row group {i} differs in the mixed batch");
                offset += alone.Length;
            }
        }
        finally
        {
            foreach (var s in sequences) s.Dispose();
        }
    }

    [Fact]
    public async Task TheServingEngineGeneratesWithDoraAndBaseRequestsTogether()
    {
        // Greedy through the engine (continuous batching: a DoRA request and a base request in the same steps)
        // equals greedy from full forward passes.
        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 512);
        model.LoadAdapter("dora", AdapterFolder);
        int[] prompt = CaseIds()[0].Take(12).ToArray();
        const int Count = 10;
        async Task<int[]> Generate(string? adapter)
        {
            var ids = new List<int>();
            await foreach (var update in model.GenerateAsync(new GenerationRequest { PromptIds = prompt, MaxTokens = Count, IgnoreEos = true, AdapterName = adapter }))
                if (update.TokenId >= 0) ids.Add(update.TokenId);
            return [.. ids.Take(Count)];
        }
        var both = await Task.WhenAll(Generate("dora"), Generate(null));
        foreach (var (adapter, generated) in new[] { ("dora", both[0]), ((string?)null, both[1]) })
        {
            var ids = prompt.ToList();
            for (int t = 0; t < Count; t++)
            {
                float[] logits = model.ComputeLogits([.. ids], adapter);
                var last = logits.AsSpan((ids.Count - 1) * model.Config.VocabSize, model.Config.VocabSize);
                int best = 0;
                for (int j = 1; j < last.Length; j++) if (last[j] > last[best]) best = j;
                ids.Add(best);
            }
            Assert.Equal(ids.Skip(prompt.Length).ToArray(), generated);
        }
        // The two requests really differ (the adapter moves the logits), even where the greedy tokens agree.
        float[] adapted = model.ComputeLogits([.. prompt, .. both[0]], "dora"), plain = model.ComputeLogits([.. prompt, .. both[0]]);
        Assert.True(adapted.Zip(plain, (x, y) => Math.Abs(x - y)).Max() > 0.1f);
    }

    [Fact]
    public void DecodingStepByStepEqualsOnePass()
    {
        using var dora = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        var ids = CaseIds()[1];
        float[] full = Logits(stories.Weights, dora.AsForwardAdapter(), ids);
        using var model = new DecoderModel(stories.Weights, maxBatchTokens: 8);
        using var cache = model.CreateCache(ids.Length + 16);
        using var sequence = new KvSequence(cache);
        int v = model.VocabSize;
        var row = new float[v];
        model.Forward([new SequenceChunk(sequence, ids.AsMemory(0, ids.Length - 3), LogitRows.None, dora.AsForwardAdapter(), 0)], Array.Empty<float>());
        for (int t = ids.Length - 3; t < ids.Length; t++)
        {
            model.Forward([new SequenceChunk(sequence, ids.AsMemory(t, 1), LogitRows.Last, dora.AsForwardAdapter(), 0)], row);
            Assert.True(row.AsSpan().SequenceEqual(full.AsSpan(t * v, v)), $"decode step at position {t} differs from the full pass");
        }
    }

    [Fact]
    public void SaveWritesPeftKeysAndLoadsBackExactly()
    {
        using var adapter = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        using var temp = new TempFolder();
        adapter.Save(temp.Path);
        using (var file = SafeTensorsFile.Open(temp.File(LoraAdapter.WeightsFileName)))
        using (var original = SafeTensorsFile.Open(Path.Combine(AdapterFolder, LoraAdapter.WeightsFileName)))
        {
            Assert.Equal(original.Tensors.Keys.Order(StringComparer.Ordinal), file.Tensors.Keys.Order(StringComparer.Ordinal));
            const string key = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
            Assert.Equal([64L], file.Tensors[key].Shape.Select(x => (long)x).ToArray());
            foreach (string name in original.Tensors.Keys) Assert.Equal(original.ReadFloats(name), file.ReadFloats(name));
        }
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File(LoraAdapter.ConfigFileName)))!;
        Assert.True((bool)json["use_dora"]!);
        using var again = LoraAdapter.Load(temp.Path, stories.Weights.Config);
        Assert.True(again.IsDora);
    }

    [Fact]
    public void BadDoraFilesGetErrorsNamingTheTensor()
    {
        using var temp = new TempFolder();
        using var adapter = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        // use_dora false with magnitude tensors present.
        string plain = Path.Combine(temp.Path, "plain");
        adapter.Save(plain);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(plain, LoraAdapter.ConfigFileName)))!;
        config["use_dora"] = false;
        File.WriteAllText(Path.Combine(plain, LoraAdapter.ConfigFileName), config.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(plain, stories.Weights.Config));
        Assert.Contains("lora_magnitude_vector", e.Message, StringComparison.Ordinal);
        Assert.Contains("use_dora", e.Message, StringComparison.Ordinal);

        // use_dora true with a magnitude missing.
        string missing = Path.Combine(temp.Path, "missing");
        Directory.CreateDirectory(missing);
        File.Copy(Path.Combine(AdapterFolder, LoraAdapter.ConfigFileName), Path.Combine(missing, LoraAdapter.ConfigFileName));
        using (var file = SafeTensorsFile.Open(Path.Combine(AdapterFolder, LoraAdapter.WeightsFileName)))
        {
            var tensors = file.Tensors.Keys.Where(k => k != "base_model.model.model.layers.2.mlp.up_proj.lora_magnitude_vector")
                .Select(k => SafeTensorToWrite.FromFloats(k, file.Tensors[k].Shape.Select(x => (long)x).ToArray(), file.ReadFloats(k))).ToList();
            SafeTensorsWriter.Write(Path.Combine(missing, LoraAdapter.WeightsFileName), tensors);
        }
        e = Assert.Throws<ModelFormatException>(() => LoraAdapter.Load(missing, stories.Weights.Config));
        Assert.Contains("layers.2.mlp.up_proj.lora_magnitude_vector", e.Message, StringComparison.Ordinal);
        Assert.Contains("missing", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DoraIsRefusedWhereItCannotApply()
    {
        var config = new LoraConfig { R = 2, LoraAlpha = 4, TargetModules = ["q_proj"], UseDora = true };
        // Creating needs the base weights (m = ‖W + s·B·A‖).
        var e = Assert.Throws<ArgumentException>(() => LoraAdapter.Create("d", config, stories.Weights.Config, 1));
        Assert.Contains("base weights", e.Message, StringComparison.Ordinal);
        // aLoRA + DoRA: PEFT refuses the combination.
        var alora = Assert.Throws<ModelFormatException>(() => (config with { AloraInvocationTokens = [13, 473] }).Validate("cfg"));
        Assert.Contains("use_dora", alora.Message, StringComparison.Ordinal);
        using var dora = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        Assert.Contains("DoRA", Assert.Throws<InvalidOperationException>(() => GgufLoraExport.Export(dora, "x.gguf")).Message, StringComparison.Ordinal);
        Assert.Contains("DoRA", Assert.Throws<ArgumentException>(() => AdapterCombination.AddWeighted([(dora, 1.0), (dora, 0.5)], "linear", "c")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CreateStartsWithMagnitudeEqualToTheWeightNormSoTheModelIsUnchanged()
    {
        var config = new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = ["q_proj", "down_proj"], UseDora = true, InitLoraWeights = "false" };
        using var adapter = LoraAdapter.Create("d", config, stories.Weights, seed: 3);
        // init "false" makes B non-zero, so m = ‖W + s·B·A‖ (not ‖W‖) and the DoRA model equals W + s·B·A: a plain LoRA.
        var ids = CaseIds()[0];
        float[] dora = Logits(stories.Weights, adapter.AsForwardAdapter(), ids);
        float[] plain = Logits(stories.Weights, WithoutMagnitudes(adapter), ids);
        float[] bare = Logits(stories.Weights, null, ids);
        double diff = 0, moved = 0;
        for (int i = 0; i < dora.Length; i++) { diff = Math.Max(diff, Math.Abs(dora[i] - plain[i])); moved = Math.Max(moved, Math.Abs(plain[i] - bare[i])); }
        Assert.True(diff <= 1e-4, $"a fresh DoRA adapter differs from its plain LoRA by {diff}");
        Assert.True(moved > 1e-2, $"the test needs a visible LoRA ({moved})");
    }

    private static unsafe float[] Snapshot(WeightMatrix matrix)
    {
        var values = new float[matrix.Rows * matrix.Cols];
        for (int r = 0; r < matrix.Rows; r++)
            for (int c = 0; c < matrix.Cols; c++) values[r * matrix.Cols + c] = matrix[r, c];
        return values;
    }

    [Fact]
    public void MergeGivesTheSameLogitsAndUnmergeRestoresTheBase()
    {
        using var weights = ModelWeights.Load(SharedPaths.Stories260K);
        using var adapter = LoraAdapter.Load(AdapterFolder, weights.Config);
        var ids = CaseIds()[0];
        float[] unmerged = Logits(weights, adapter.AsForwardAdapter(), ids);
        var before = adapter.Modules.ToDictionary(m => (m.Layer, m.Module), m => Snapshot(weights.Layers[m.Layer].Projection(m.Module)));

        LoraMerge.Merge(weights, adapter);
        float[] merged = Logits(weights, null, ids);
        double logitDiff = 0;
        for (int i = 0; i < merged.Length; i++) logitDiff = Math.Max(logitDiff, Math.Abs(merged[i] - unmerged[i]));
        output.WriteLine($"merged vs unmerged max |Δlogit|: {logitDiff:E3}");
        Assert.True(logitDiff <= 1e-4, $"merged logits differ from the unmerged DoRA forward by {logitDiff:E3}");

        LoraMerge.Unmerge(weights, adapter);
        double worst = 0;
        foreach (var m in adapter.Modules)
            worst = Math.Max(worst, AdapterFixtures.MaxAbsDiff(before[(m.Layer, m.Module)], Snapshot(weights.Layers[m.Layer].Projection(m.Module))));
        output.WriteLine($"merge → unmerge max |ΔW|: {worst:E3}");
        Assert.True(worst <= 1e-6, $"unmerge left a difference of {worst:E3}");
        float[] after = Logits(weights, null, ids);
        float[] bare = Logits(stories.Weights, null, ids);
        double restored = 0;
        for (int i = 0; i < after.Length; i++) restored = Math.Max(restored, Math.Abs(after[i] - bare[i]));
        Assert.True(restored <= 1e-4, $"after unmerge the base logits moved by {restored:E3}");
    }

    [Fact]
    public void MergeAndUnloadWritesTheDoraWeights()
    {
        using var temp = new TempFolder();
        using var adapter = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        LoraMerge.MergeAndUnload(SharedPaths.Stories260K, adapter, temp.Path);
        using var merged = ModelWeights.Load(temp.Path);
        var ids = CaseIds()[1];
        float[] expected = Logits(stories.Weights, adapter.AsForwardAdapter(), ids);
        float[] actual = Logits(merged, null, ids);
        double diff = 0;
        for (int i = 0; i < actual.Length; i++) diff = Math.Max(diff, Math.Abs(actual[i] - expected[i]));
        Assert.True(diff <= 1e-4, $"merge-and-unload logits differ by {diff:E3}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LossAndEveryGradientMatchTheReference(bool checkpointing)
    {
        using var adapter = LoraAdapter.Load(AdapterFolder, stories.Weights.Config);
        using var lora = new TrainableLora(adapter);
        using var doc = Reference();
        var root = doc.RootElement;
        var rows = ReferenceBatch();
        using var trainer = new DecoderTrainer(stories.Weights, lora, 2, 64, checkpointing);
        double loss = trainer.ForwardBackward(rows);
        double expectedLoss = root.GetProperty("loss").GetDouble();
        output.WriteLine($"loss {loss:R}, reference {expectedLoss:R}");
        Assert.True(Math.Abs(loss - expectedLoss) <= 1e-5 * expectedLoss, $"loss {loss:R} vs reference {expectedLoss:R}");

        using var expected = SafeTensorsFile.Open(Path.Combine(FixtureRoot, "grads.safetensors"));
        var tensors = lora.TrainableTensors();
        Assert.Equal(expected.Tensors.Count, tensors.Count);
        double worstRelative = 0, worstAbs = 0;
        var failures = new List<string>();
        foreach (var tensor in tensors)
        {
            float[] reference = expected.ReadFloats(tensor.Name);
            float[] actual = tensor.GradientSpan.ToArray();
            double maxAbs = 0, maxRef = 0;
            for (int i = 0; i < reference.Length; i++)
            {
                maxAbs = Math.Max(maxAbs, Math.Abs(actual[i] - reference[i]));
                maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
            }
            worstAbs = Math.Max(worstAbs, maxAbs);
            worstRelative = Math.Max(worstRelative, maxAbs / maxRef);
            if (!(maxAbs <= 1e-6 + 1e-4 * maxRef)) failures.Add($"{tensor.Name}: max |diff| {maxAbs:E2}, max |g| {maxRef:E2}");
        }
        output.WriteLine($"gradients ({tensors.Count} tensors, A, B and magnitudes): worst max |diff| {worstAbs:E2}, worst relative to the tensor's max {worstRelative:E2}");
        Assert.True(failures.Count == 0, "gradients outside tolerance:\n" + string.Join("\n", failures));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TinyModelDoraGradientsMatchFiniteDifferences(bool qwen2)
    {
        // Finite differences of the inference forward. The weight norm is PEFT's detached constant: the forward view
        // keeps the norms computed at the unperturbed factors (they are only recomputed after InvalidateDoraNorms),
        // so perturbing A or B probes exactly the gradient PEFT takes; the magnitude enters g = m / n directly.
        using var weights = TinyModel.Weights(family: qwen2 ? "qwen2" : "llama");
        using var lora = TinyDora(weights);
        var rows = TinyModel.TwoRowBatch(lora, 7, 4);
        using var trainer = new DecoderTrainer(weights, lora, 2, 16);
        double loss = trainer.ForwardBackward(rows);
        var forward = lora.ToForwardAdapter("tiny-dora");
        double inference = InferenceLoss.Compute(weights, forward, rows);
        Assert.True(Math.Abs(loss - inference) <= 1e-5 * inference, $"trainer loss {loss:R} vs inference forward {inference:R}");
        const float Step = 2e-3f;
        var random = new Random(17);
        int probes = 0;
        foreach (var module in lora.Modules)
            foreach (int which in new[] { 0, 1, 2 })
            {
                float[] gradient = (which switch { 0 => module.AGradient, 1 => module.BGradient, _ => module.MagnitudeGradient }).ToArray();
                double scale = gradient.Max(MathF.Abs);
                for (int probe = 0; probe < 2; probe++)
                {
                    int index = random.Next(gradient.Length);
                    Span<float> values = which switch { 0 => module.AValues, 1 => module.BValues, _ => module.MagnitudeValues };
                    float saved = values[index];
                    values[index] = saved + Step;
                    double plus = InferenceLoss.Compute(weights, forward, rows);
                    values = which switch { 0 => module.AValues, 1 => module.BValues, _ => module.MagnitudeValues };
                    values[index] = saved - Step;
                    double minus = InferenceLoss.Compute(weights, forward, rows);
                    values[index] = saved;
                    double numeric = (plus - minus) / (2 * Step);
                    string what = $"layer {module.Layer} {module.Module} {"ABm"[which]}[{index}]: analytic {gradient[index]:E4}, numeric {numeric:E4}";
                    Assert.True(Math.Abs(numeric - gradient[index]) <= 2e-4 + 1e-2 * scale, what);
                    probes++;
                }
            }
        Assert.Equal(2 * 7 * 3 * 2, probes);
    }

    /// <summary>A tiny DoRA adapter on every projection: random A, B, and m = ‖W + s·B·A‖·(1 + U(±0.3)).</summary>
    private static unsafe TrainableLora TinyDora(ModelWeights weights)
    {
        var lora = new TrainableLora(weights.Config, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 3, 2f, useDora: true);
        var random = new Random(23);
        foreach (var m in lora.Modules)
        {
            foreach (ref float a in m.AValues) a = (float)(random.NextDouble() * 2 - 1) * 0.3f;
            foreach (ref float b in m.BValues) b = (float)(random.NextDouble() * 2 - 1) * 0.3f;
            var norms = new float[m.OutFeatures];
            fixed (float* n = norms) Dora.WeightNormsReference(n, weights.Layers[m.Layer].Projection(m.Module), m.A, m.B, m.Rank, m.Scaling);
            for (int j = 0; j < norms.Length; j++) m.MagnitudeValues[j] = norms[j] * (float)(1 + (random.NextDouble() * 2 - 1) * 0.3);
        }
        return lora;
    }

    [Fact]
    public void TrainingWithDropoutGivesGradientsThatMatchFiniteDifferencesOfTheSameMask()
    {
        // With lora_dropout the DoRA terms see dropout(x) and PEFT recomputes the base product on it. The loss with a
        // fixed mask (the same dropout stream) as a function of m is the trainer's own forward: its central difference
        // must equal the analytic magnitude gradient.
        using var weights = TinyModel.Weights();
        using var lora = TinyDora(weights);
        var rows = TinyModel.TwoRowBatch(lora, 7, 4);
        using var trainer = new DecoderTrainer(weights, lora, 2, 16, dropout: new LoraDropout(0.3f, 5));
        trainer.ForwardBackward(rows, dropoutStream: 9);
        var module = lora.Modules.First(m => m.Module == "v_proj" && m.Layer == 1);
        float[] gradient = module.MagnitudeGradient.ToArray();
        using var probe = new DecoderTrainer(weights, lora, 2, 16, dropout: new LoraDropout(0.3f, 5));
        foreach (int index in new[] { 0, 3, 7 })
        {
            float saved = module.MagnitudeValues[index];
            module.MagnitudeValues[index] = saved + 1e-2f;
            double plus = probe.ForwardBackward(rows, dropoutStream: 9);
            module.MagnitudeValues[index] = saved - 1e-2f;
            double minus = probe.ForwardBackward(rows, dropoutStream: 9);
            module.MagnitudeValues[index] = saved;
            double numeric = (plus - minus) / 2e-2;
            Assert.True(Math.Abs(numeric - gradient[index]) <= 1e-4 + 1e-2 * Math.Abs(gradient[index]), $"m[{index}]: analytic {gradient[index]:E4}, numeric {numeric:E4}");
        }
        // And dropout changes the DoRA loss (the masks are really applied).
        using var plain = new DecoderTrainer(weights, lora, 2, 16);
        Assert.NotEqual(plain.ForwardBackward(rows), trainer.ForwardBackward(rows, dropoutStream: 9));
    }
}

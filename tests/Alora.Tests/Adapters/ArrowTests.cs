using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Formats;
using Alora.Inference;
using Alora.Models;
using Alora.Tests.Models;
using Xunit.Abstractions;

namespace Alora.Tests.Adapters;

/// <summary>
/// Arrow routing and GenKnowSub (PEFT's arrow_config) against tests/Alora.Tests/Fixtures/arrow-stories260K, made by
/// tools/reference/arrow_reference.py (float64 PyTorch written from PEFT's arrow.py): logits with and without
/// GenKnowSub, routing weights, prototypes, the subtracted experts; PEFT's saved layout; mixed batches.
/// </summary>
public sealed class ArrowTests(BatchingTests.Stories stories, ITestOutputHelper output) : IClassFixture<BatchingTests.Stories>
{
    public static string FixtureRoot { get; } = Path.Combine(SharedPaths.RepositoryRoot, "tests", "Alora.Tests", "Fixtures", "arrow-stories260K");
    private static string ArrowFolder => Path.Combine(FixtureRoot, "arrow");

    private static int[][] CaseIds()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(FixtureRoot, "reference.json")));
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

    /// <summary>A copy of the fixture's Arrow folder with the router's arrow_config edited.</summary>
    private static string CopyArrow(TempFolder temp, Action<JsonObject> editArrowConfig)
    {
        string target = temp.File("arrow");
        foreach (string dir in Directory.GetDirectories(ArrowFolder))
        {
            string to = Path.Combine(target, Path.GetFileName(dir));
            Directory.CreateDirectory(to);
            foreach (string file in Directory.GetFiles(dir)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }
        string config = Path.Combine(target, ArrowModel.RouterName, LoraAdapter.ConfigFileName);
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        editArrowConfig(json["arrow_config"]!.AsObject());
        File.WriteAllText(config, json.ToJsonString());
        return target;
    }

    [Fact]
    public void LogitsMatchTheReferenceWithAndWithoutGenKnowSub()
    {
        using var temp = new TempFolder();
        using var withGks = ArrowModel.Load(ArrowFolder, stories.Weights.Config);
        using var plain = ArrowModel.Load(CopyArrow(temp, a => a["use_gks"] = false), stories.Weights.Config);
        Assert.True(withGks.Arrow!.Options.UseGks);
        Assert.Equal(["task_0", "task_1", "task_2"], withGks.Arrow.TaskNames);
        Assert.Equal(["gks_0", "gks_1"], withGks.Arrow.GeneralNames);
        Assert.Equal(15, withGks.Modules.Count);
        Assert.Equal(12, withGks.Modules[0].Rank);   // 3 experts of r 4, stacked
        using var expected = SafeTensorsFile.Open(Path.Combine(FixtureRoot, "logits.safetensors"));
        var cases = CaseIds();
        double worst = 0, gksEffect = 0, scale = 0;
        for (int k = 0; k < cases.Length; k++)
        {
            foreach (var (adapter, key) in new[] { (withGks, $"gks_case_{k}"), (plain, $"plain_case_{k}") })
            {
                float[] reference = expected.ReadFloats(key);
                float[] actual = Logits(stories.Weights, adapter.AsForwardAdapter(), cases[k]);
                Assert.Equal(reference.Length, actual.Length);
                double diff = 0;
                for (int i = 0; i < reference.Length; i++) diff = Math.Max(diff, Math.Abs(actual[i] - reference[i]));
                scale = Math.Max(scale, reference.Max(Math.Abs));
                output.WriteLine($"{key}: max |Δlogit| vs reference {diff:E2}");
                worst = Math.Max(worst, diff);
            }
            float[] a = expected.ReadFloats($"gks_case_{k}"), b = expected.ReadFloats($"plain_case_{k}");
            for (int i = 0; i < a.Length; i++) gksEffect = Math.Max(gksEffect, Math.Abs(a[i] - b[i]));
        }
        output.WriteLine($"GenKnowSub moves the logits by up to {gksEffect:E2}");
        Assert.True(gksEffect > 0.05, "the fixture's GenKnowSub does not change the logits; the test would not see it");
        // The random experts are large (GenKnowSub alone moves logits by ~20), so the f32 forward is compared relative
        // to the logits' size: f32 rounding of a 5-layer forward (the base model alone is ~1e-5 from its f64 golden).
        output.WriteLine($"max |logit| {scale:F1}; max |Δlogit| / max |logit| {worst / scale:E2}");
        Assert.True(worst <= 5e-5 * scale, $"Arrow logits differ from the reference by {worst:E2} (max |logit| {scale:F1})");
    }

    [Fact]
    public void RoutingWeightsPrototypesAndGenKnowSubMatchTheReference()
    {
        using var arrow = ArrowModel.Load(ArrowFolder, stories.Weights.Config);
        using var routing = SafeTensorsFile.Open(Path.Combine(FixtureRoot, "routing.safetensors"));
        var model = arrow.Arrow!;
        double worstCoefficient = 0, worstPrototype = 0;
        foreach (var (layer, module) in new[] { (0, "q_proj"), (2, "v_proj"), (4, "down_proj") })
        {
            var router = model.Router(layer, module);
            float[] x = routing.ReadFloats($"x.L{layer}.{module}");
            float[] coefficients = routing.ReadFloats($"coeff.L{layer}.{module}");
            int rows = x.Length / router.InFeatures, experts = router.ExpertCount;
            var c = new double[experts];
            for (int t = 0; t < rows; t++)
            {
                router.Coefficients(c, x.AsSpan(t * router.InFeatures, router.InFeatures));
                Assert.Equal(1.0, c.Sum(), 12);
                Assert.Equal(router.TopK, c.Count(v => v > 0));
                for (int e = 0; e < experts; e++) worstCoefficient = Math.Max(worstCoefficient, Math.Abs(c[e] - coefficients[t * experts + e]));
            }
        }
        foreach (var m in arrow.Modules)
        {
            float[] reference = routing.ReadFloats($"proto.L{m.Layer}.{m.Module}");
            var router = model.Router(m.Layer, m.Module);
            for (int e = 0; e < router.ExpertCount; e++)
            {
                var p = router.Prototype(e);
                var r = reference.AsSpan(e * router.InFeatures, router.InFeatures);
                double dot = 0;
                for (int i = 0; i < p.Length; i++) dot += (double)p[i] * r[i];
                int sign = dot >= 0 ? 1 : -1;   // a singular vector's sign is free
                for (int i = 0; i < p.Length; i++) worstPrototype = Math.Max(worstPrototype, Math.Abs(sign * p[i] - r[i]));
            }
        }
        output.WriteLine($"routing weights: max |Δc| {worstCoefficient:E2}; prototypes: max |Δp| {worstPrototype:E2}");
        Assert.True(worstCoefficient <= 1e-5, $"routing weights differ by {worstCoefficient:E2}");
        Assert.True(worstPrototype <= 1e-5, $"prototypes differ by {worstPrototype:E2}");
        // GenKnowSub's subtraction is exact: A − mean(A_general), B − mean(B_general) in f32.
        for (int e = 0; e < 3; e++)
        {
            var (a, b) = model.Expert(2, "v_proj", e);
            Assert.Equal(routing.ReadFloats($"gks.A.L2.v_proj.{e}"), a);
            Assert.Equal(routing.ReadFloats($"gks.B.L2.v_proj.{e}"), b);
        }
    }

    [Fact]
    public void MixedBatchRowsEqualEachRowAlone()
    {
        using var arrow = ArrowModel.Load(ArrowFolder, stories.Weights.Config);
        using var lora = LoraAdapter.Load(AdapterFixtures.LoraAll, stories.Weights.Config);
        var ids = CaseIds();
        int[][] inputs = [ids[0], ids[1], ids[0][..10], ids[1][..7]];
        var adapters = new ForwardAdapter?[] { arrow.AsForwardAdapter(), null, lora.AsForwardAdapter(), arrow.AsForwardAdapter() };
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
    public void BuildingFromFoldersWritesPeftsLayoutThatLoadsTheSame()
    {
        using var temp = new TempFolder();
        string[] tasks = [.. Enumerable.Range(0, 3).Select(e => Path.Combine(ArrowFolder, $"task_{e}"))];
        string[] generals = [Path.Combine(ArrowFolder, "gks_0"), Path.Combine(ArrowFolder, "gks_1")];
        string output = temp.File("built");
        ArrowModel.Save(output, tasks, generals, new ArrowOptions { TopK = 2, RouterTemperature = 0.5, UseGks = true }, stories.Weights.Config);
        Assert.True(ArrowModel.IsArrowFolder(output));
        Assert.True(ArrowModel.IsArrowFolder(Path.Combine(output, ArrowModel.RouterName)));
        var router = JsonNode.Parse(File.ReadAllText(Path.Combine(output, ArrowModel.RouterName, LoraAdapter.ConfigFileName)))!["arrow_config"]!;
        Assert.Equal(2, (int)router["top_k"]!);
        Assert.Equal("gks_1", (string)router["gks_adapter_names"]![1]!);
        using var built = ArrowModel.Load(Path.Combine(output, ArrowModel.RouterName), stories.Weights.Config);
        using var fixture = ArrowModel.Load(ArrowFolder, stories.Weights.Config);
        var ids = CaseIds()[0];
        Assert.Equal(Logits(stories.Weights, fixture.AsForwardAdapter(), ids), Logits(stories.Weights, built.AsForwardAdapter(), ids));

        // The language model loads it through --adapter NAME=FOLDER like any adapter.
        using var language = LanguageModel.Load(SharedPaths.Stories260K);
        var loaded = language.LoadAdapter("arrow", output);
        Assert.NotNull(loaded.Arrow);
    }

    [Fact]
    public void ArrowIsRefusedWhereItHasNoMeaningAndBadConfigsAreNamed()
    {
        var config = stories.Weights.Config;
        using var arrow = ArrowModel.Load(ArrowFolder, config);
        Assert.Contains("Arrow", Assert.Throws<InvalidOperationException>(() => LoraMerge.Merge(stories.Weights, arrow)).Message, StringComparison.Ordinal);
        Assert.Contains("Arrow", Assert.Throws<InvalidOperationException>(() => AdapterCombination.AddWeighted([(arrow, 1.0)], "linear", "x")).Message, StringComparison.Ordinal);
        using (var temp = new TempFolder())
            Assert.Contains("Arrow", Assert.Throws<InvalidOperationException>(() => arrow.Save(temp.Path)).Message, StringComparison.Ordinal);
        Assert.Contains("Arrow", Assert.Throws<InvalidOperationException>(() => new Alora.Training.TrainableLora(arrow)).Message, StringComparison.Ordinal);
        Assert.Contains("Arrow", Assert.Throws<InvalidOperationException>(() => GgufLoraExport.Export(arrow, "unused.gguf")).Message, StringComparison.Ordinal);

        using var task0 = LoraAdapter.Load(Path.Combine(ArrowFolder, "task_0"), config);
        using var task1 = LoraAdapter.Load(Path.Combine(ArrowFolder, "task_1"), config);
        using var general = LoraAdapter.Load(Path.Combine(ArrowFolder, "gks_0"), config);
        using var other = LoraAdapter.Load(AdapterFixtures.LoraAll, config);
        Assert.Throws<ArgumentOutOfRangeException>(() => ArrowModel.Build("x", [task0, task1], [], new ArrowOptions { TopK = 3 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ArrowModel.Build("x", [task0, task1], [], new ArrowOptions { TopK = 1, RouterTemperature = 0 }));
        Assert.Contains("needs at least one general", Assert.Throws<ArgumentException>(() => ArrowModel.Build("x", [task0], [], new ArrowOptions { TopK = 1, UseGks = true })).Message, StringComparison.Ordinal);
        Assert.Contains("use_gks is false", Assert.Throws<ArgumentException>(() => ArrowModel.Build("x", [task0], [general], new ArrowOptions { TopK = 1 })).Message, StringComparison.Ordinal);
        Assert.Contains("same modules", Assert.Throws<ArgumentException>(() => ArrowModel.Build("x", [task0, other], [], new ArrowOptions { TopK = 1 })).Message, StringComparison.Ordinal);

        using var temp2 = new TempFolder();
        var e = Assert.ThrowsAny<Exception>(() => ArrowModel.Load(CopyArrow(temp2, a => a["task_adapter_names"] = new JsonArray("task_0", "task_9")), config));
        Assert.Contains("task_9", e.Message, StringComparison.Ordinal);
        // A router folder read as a plain LoRA points at the Arrow loader.
        var plainLoad = Assert.ThrowsAny<Exception>(() => LoraAdapter.Load(Path.Combine(ArrowFolder, ArrowModel.RouterName), config));
        Assert.Contains("ArrowModel.Load", plainLoad.Message, StringComparison.Ordinal);
    }
}

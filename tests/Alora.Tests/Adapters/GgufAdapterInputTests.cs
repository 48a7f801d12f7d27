using System.Text.Json;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Tests.Cli;
using Alora.Tests.Models;

namespace Alora.Tests.Adapters;

/// <summary>
/// llama.cpp GGUF LoRA/aLoRA adapters as input (LanguageModel.LoadAdapter, `--adapter NAME=FILE.gguf`): a GGUF adapter
/// gives the logits of the PEFT folder it was exported from, for every family (q/k permuted for llama and granite,
/// not for qwen2; rsLoRA and rank/alpha patterns folded into lora_b), and `export-gguf --outtype f16|bf16`.
/// </summary>
[Collection("Console")]
public sealed class GgufAdapterInputTests
{
    private const float Tolerance = 1e-5f;

    private static readonly string Stories = SharedPaths.Path("fixtures", "stories260K");

    private static int[] CaseIds(string adapter, string caseName)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Stories, "expected.json")));
        return doc.RootElement.GetProperty("adapters").GetProperty(adapter).GetProperty("cases").EnumerateArray()
            .First(c => c.GetProperty("name").GetString() == caseName).GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    }

    private static float MaxDiff(LanguageModel model, int[] ids, string a, string b)
        => Reference.MaxAbsDiff(model.ComputeLogits(ids, a), model.ComputeLogits(ids, b));

    [Theory]
    [InlineData("alora-q-k-v", "two_invocations")]
    [InlineData("lora-all", "story")]
    public void AGgufAdapterGivesTheLogitsOfThePeftFolderItWasExportedFrom(string fixture, string caseName)
    {
        using var temp = new TempFolder();
        using var model = LanguageModel.Load(SharedPaths.Stories260K);
        var peft = model.LoadAdapter("peft", Path.Combine(Stories, fixture));
        string file = temp.File(fixture + ".gguf");
        GgufLoraExport.Export(peft, file);
        var gguf = model.LoadAdapter("gguf", file);
        Assert.Equal(file, gguf.SourcePath);
        Assert.Equal(peft.InvocationTokens, gguf.InvocationTokens);
        int[] ids = CaseIds(fixture, caseName);
        float diff = MaxDiff(model, ids, "peft", "gguf");
        Assert.True(diff <= Tolerance, $"{fixture}: GGUF vs PEFT max |logit diff| {diff}");
        Assert.True(Reference.MaxAbsDiff(model.ComputeLogits(ids, "gguf"), model.ComputeLogits(ids)) > 0.5f);
    }

    [Theory]
    [MemberData(nameof(FamilyReferenceTests.Families), MemberType = typeof(FamilyReferenceTests))]
    public void EveryFamilyRoundTripsThroughAGgufAdapter(string family)
    {
        using var temp = new TempFolder();
        using var model = LanguageModel.FromWeights(ModelWeights.Load(Path.Combine(FamilyReferenceTests.FixtureRoot, family)), family);
        int[] ids = [.. FamilyReferenceTests.Cases(family)[0].PromptIds[..7], 5, 6, 7, .. FamilyReferenceTests.Cases(family)[0].PromptIds[7..]];
        foreach (var invocation in new int[]?[] { null, [5, 6, 7] })
        {
            string kind = invocation is null ? "lora" : "alora";
            var config = new LoraConfig
            {
                R = 4, LoraAlpha = 8, UseRslora = invocation is null,
                TargetModules = [.. Projections.PeftNames],
                RankPattern = new Dictionary<string, int> { ["down_proj"] = 2 },
                AlphaPattern = new Dictionary<string, double> { ["q_proj"] = 3 },
                InitLoraWeights = "false", AloraInvocationTokens = invocation,
            };
            using (var created = LoraAdapter.Create(kind, config, model.Config, seed: 5)) created.Save(temp.File(kind));
            var peft = model.LoadAdapter(kind + "-peft", temp.File(kind));
            GgufLoraExport.Export(peft, temp.File(kind + ".gguf"), architecture: null);
            model.LoadAdapter(kind + "-gguf", temp.File(kind + ".gguf"));
            float[] fromPeft = model.ComputeLogits(ids, kind + "-peft");
            float diff = Reference.MaxAbsDiff(fromPeft, model.ComputeLogits(ids, kind + "-gguf"));
            // Exact where the per-module scaling is alpha/r for the file's alpha (the stories260K fixtures above give 0).
            // Here down_proj's rank 2 under one file-wide alpha folds a factor 1/√2 into lora_b, which f32 rounds
            // differently: measured ≤ 1.7e-5 on logits up to 23 (about 1 part in 10^6), so the bound is 2e-6 of the
            // logits' size, and never below the 1e-5.
            float size = fromPeft.Max(MathF.Abs);
            float bound = MathF.Max(Tolerance, 2e-6f * size);
            Assert.True(diff <= bound, $"{family} {kind}: GGUF vs PEFT max |logit diff| {diff} > {bound} (max |logit| {size})");
        }
    }

    [Theory]
    [InlineData("f16", GgmlType.F16)]
    [InlineData("bf16", GgmlType.BF16)]
    [InlineData("f32", GgmlType.F32)]
    public void ExportGgufOutTypeWritesRoundedTensorsThatLoad(string outType, GgmlType expected)
    {
        using var temp = new TempFolder();
        string path = temp.File("lora.gguf");
        var (code, text) = CliRunner.Run("AdapterCommands", "Adapter", ["export-gguf", "--adapter", AdapterFixtures.LoraAll, "--model", SharedPaths.Stories260K, "--out", path, "--outtype", outType]);
        Assert.Equal(0, code);
        Assert.Contains(outType, text, StringComparison.Ordinal);
        using var peft = LoraAdapter.Load(AdapterFixtures.LoraAll, AdapterFixtures.BaseConfig());
        using (var gguf = GgufFile.Open(path))
        {
            Assert.All(gguf.TensorOrder, t => Assert.Equal(expected, t.Type));
            float[] a = gguf.ReadFloats("blk.2.ffn_up.weight.lora_a");
            float[] original = peft.Get(2, "up_proj")!.AValues.ToArray();
            for (int i = 0; i < a.Length; i++)
            {
                float rounded = expected switch
                {
                    GgmlType.F16 => (float)(Half)original[i],
                    GgmlType.BF16 => Tensors.Half16.BFloat16ToSingle(Tensors.Half16.SingleToBFloat16(original[i])),
                    _ => original[i],
                };
                Assert.Equal(rounded, a[i]);
            }
        }
        using var model = LanguageModel.Load(SharedPaths.Stories260K);
        model.LoadAdapter("peft", AdapterFixtures.LoraAll);
        model.LoadAdapter("gguf", path);
        float diff = MaxDiff(model, CaseIds("lora-all", "story"), "peft", "gguf");
        // f16/bf16 round A and B (relative 2^-11 / 2^-8): the logits move a little, not more.
        float bound = expected switch { GgmlType.F32 => Tolerance, GgmlType.F16 => 0.02f, _ => 0.2f };
        Assert.True(diff <= bound, $"--outtype {outType}: max |logit diff| {diff} > {bound}");
    }

    [Fact]
    public void GenerateTakesAGgufAloraAsAdapterAndMatchesTheReference()
    {
        using var temp = new TempFolder();
        string file = temp.File("alora.gguf");
        var (code, _) = CliRunner.Run("AdapterCommands", "Adapter", ["export-gguf", "--adapter", AdapterFixtures.AloraQkv, "--model", SharedPaths.Stories260K, "--out", file]);
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Stories, "expected.json")));
        var c = doc.RootElement.GetProperty("adapters").GetProperty("alora-q-k-v").GetProperty("cases").EnumerateArray()
            .First(x => x.GetProperty("name").GetString() == "two_invocations");
        string output;
        (code, output) = GenerateCliTests.Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", c.GetProperty("input_text").GetString()!,
            "--adapter", $"a={file}", "--temperature", "0", "-n", "30", "--ignore-eos", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(c.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()), json.GetProperty("output_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(c.GetProperty("first_adapted_position").GetInt32(), json.GetProperty("adapter_activation_start").GetInt32());
    }
}

using System.Text.Json;
using Alora.Formats;

namespace Alora.Tests.Cli;

/// <summary>`alora generate` and `alora logits` run in-process with stdout captured.</summary>
[Collection("Console")]
public sealed class GenerateCliTests
{
    internal static (int ExitCode, string Output) Run(string method, params string[] args) => CliRunner.Run("GenerateCommands", method, args);

    private static JsonElement Case(int k)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedPaths.Path("fixtures", "stories260K", "tokens.json")));
        return doc.RootElement.GetProperty("cases")[k].Clone();
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [Theory]
    [InlineData("")]
    [InlineData("stories260K.gguf")]
    public void StructuredOutputFlagsConstrainTheOutput(string file)
    {
        string model = Path.Combine(SharedPaths.Stories260K, file);
        var (code, output) = Run("Generate", "--model", model, "--prompt", "Once upon a time", "--temperature", "0.8", "--seed", "5", "-n", "20", "--choice", "a dog", "--choice", "a cat", "--json");
        Assert.Equal(0, code);
        Assert.Contains(JsonDocument.Parse(output).RootElement.GetProperty("text").GetString(), new[] { "a dog", "a cat" });

        using var folder = new TempFolder();
        string schema = folder.File("schema.json");
        File.WriteAllText(schema, "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9}},\"required\":[\"n\"],\"additionalProperties\":false}");
        (code, output) = Run("Generate", "--model", model, "--prompt", "Once upon a time", "--temperature", "0", "-n", "100", "--json-schema", schema, "--json");
        Assert.Equal(0, code);
        var text = JsonDocument.Parse(output).RootElement.GetProperty("text").GetString()!;
        Assert.InRange(JsonDocument.Parse(text).RootElement.GetProperty("n").GetInt32(), 1, 9);

        File.WriteAllText(schema, "{\"type\":\"string\",\"format\":\"hostname\"}");
        var error = Assert.ThrowsAny<Exception>(() => Run("Generate", "--model", model, "--prompt", "Once", "--json-schema", schema));
        Assert.Equal("CliException", error.GetType().Name);   // the CLI prints its message and exits 1
        Assert.Contains("--json-schema", error.Message);
        Assert.Contains("'hostname' is not supported", error.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("stories260K.gguf")]
    public void GreedyJsonMatchesTheFixtureFromTextAndFromIds(string file)
    {
        string model = Path.Combine(SharedPaths.Stories260K, file);
        var c = Case(0);
        var expected = Ints(c.GetProperty("greedy_ids"))[..40];
        var (code, output) = Run("Generate", "--model", model, "--prompt", c.GetProperty("prompt").GetString()!, "--temperature", "0", "-n", "40", "--ignore-eos", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(Ints(c.GetProperty("prompt_ids")), Ints(json.GetProperty("prompt_ids")));
        Assert.Equal(expected, Ints(json.GetProperty("output_ids")));
        Assert.StartsWith(json.GetProperty("text").GetString()!, c.GetProperty("continuation_text").GetString()!);
        Assert.True(json.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.Equal("length", json.GetProperty("finish_reason").GetString());

        string ids = string.Join(",", Ints(c.GetProperty("prompt_ids")));
        (code, output) = Run("Generate", "--model", model, "--prompt-ids", ids, "--temperature", "0", "-n", "40", "--json");
        Assert.Equal(expected, Ints(JsonDocument.Parse(output).RootElement.GetProperty("output_ids")));
    }

    [Fact]
    public void StreamingTextEndsWithSpeedsAndStopStringsCut()
    {
        var (code, output) = Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", "Once upon a time", "--temperature", "0", "-n", "60", "--stop", "Lily");
        Assert.Equal(0, code);
        Assert.StartsWith(", there was a little girl named \n", output);
        Assert.Matches(@"prefill: 5 tokens, [0-9.]+ tokens/s \| decode: [0-9]+ tokens, [0-9.]+ tokens/s", output);
    }

    [Fact]
    public void SeededSamplingIsReproducible()
    {
        string[] args = ["--model", SharedPaths.Stories260K, "--prompt", "Once upon a time", "--temperature", "1.0", "--seed", "42", "-n", "30", "--json"];
        var (_, first) = Run("Generate", args);
        var (_, second) = Run("Generate", args);
        Assert.Equal(JsonDocument.Parse(first).RootElement.GetProperty("output_ids").GetRawText(),
            JsonDocument.Parse(second).RootElement.GetProperty("output_ids").GetRawText());
    }

    [Fact]
    public void LogitsCommandWritesEveryPosition()
    {
        using var temp = new TempFolder();
        var c = Case(0);
        var prompt = Ints(c.GetProperty("prompt_ids"));
        var (code, _) = Run("Logits", "--model", SharedPaths.Stories260K, "--prompt-ids", string.Join(",", prompt), "--out", temp.File("l.safetensors"));
        Assert.Equal(0, code);
        using var written = SafeTensorsFile.Open(temp.File("l.safetensors"));
        Assert.Equal([prompt.Length, 512L], written.Tensors["logits"].Shape);
        using var golden = SafeTensorsFile.Open(SharedPaths.Path("fixtures", "stories260K", "logits.safetensors"));
        float[] expected = golden.ReadFloats("prompt_0")[..(prompt.Length * 512)];
        float[] actual = written.ReadFloats("logits");
        Assert.True(Models.Reference.MaxAbsDiff(expected, actual) <= 1e-4f);
    }

    [Theory]
    [InlineData("--prompt-ids", "1,2,99999", "outside the vocabulary")]
    [InlineData("--prompt-ids", "1,two", "'two' (item 2) is not an integer")]
    public void BadPromptIdsAreNamed(string option, string value, string message)
    {
        var e = Assert.ThrowsAny<Exception>(() => Run("Generate", "--model", SharedPaths.Stories260K, option, value));
        Assert.Contains(message, e.Message);
    }
}

/// <summary>`--adapter`, `--use` and `--on-missing-invocation` on generate and logits.</summary>
[Collection("Console")]
public sealed class GenerateAdapterCliTests
{
    private static readonly string Alora = SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v");
    private static readonly string Lora = SharedPaths.Path("fixtures", "stories260K", "lora-all");

    private static (int ExitCode, string Output) Run(string method, params string[] args) => GenerateCliTests.Run(method, args);

    private static JsonElement Case(string adapter, string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(SharedPaths.Path("fixtures", "stories260K", "expected.json")));
        return doc.RootElement.GetProperty("adapters").GetProperty(adapter).GetProperty("cases").EnumerateArray()
            .First(c => c.GetProperty("name").GetString() == name).Clone();
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [Theory]
    [InlineData("alora-q-k-v", "two_invocations")]
    [InlineData("lora-all", "with_q_marker")]
    public void GenerateWithAnAdapterMatchesTheReference(string adapter, string caseName)
    {
        var c = Case(adapter, caseName);
        var (code, output) = Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", c.GetProperty("input_text").GetString()!,
            "--adapter", $"a={Alora}", "--adapter", $"l={Lora}", "--use", adapter.StartsWith('a') ? "a" : "l", "--temperature", "0", "-n", "30", "--ignore-eos", "--json");
        Assert.Equal(0, code);
        var json = JsonDocument.Parse(output).RootElement;
        Assert.Equal(Ints(c.GetProperty("input_ids")), Ints(json.GetProperty("prompt_ids")));
        Assert.Equal(Ints(c.GetProperty("greedy_ids")), Ints(json.GetProperty("output_ids")));
        Assert.Equal(c.GetProperty("first_adapted_position").GetInt32(), json.GetProperty("adapter_activation_start").GetInt32());
    }

    [Fact]
    public void MissingInvocationIsAnErrorUnlessBaseIsChosen()
    {
        var c = Case("alora-q-k-v", "no_invocation");
        string prompt = c.GetProperty("input_text").GetString()!;
        var e = Assert.ThrowsAny<Exception>(() => Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", prompt, "--adapter", Alora, "-n", "5"));
        Assert.Contains("does not occur", e.Message);
        var (code, output) = Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", prompt, "--adapter", Alora,
            "--on-missing-invocation", "base", "--temperature", "0", "-n", "30", "--ignore-eos", "--json");
        Assert.Equal(0, code);
        Assert.Equal(Ints(c.GetProperty("base_greedy_ids")), Ints(JsonDocument.Parse(output).RootElement.GetProperty("output_ids")));
    }

    [Fact]
    public void SeveralAdaptersNeedUse()
    {
        var e = Assert.ThrowsAny<Exception>(() => Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", "Hi", "--adapter", $"a={Alora}", "--adapter", $"l={Lora}"));
        Assert.Contains("pick one with --use", e.Message);
        e = Assert.ThrowsAny<Exception>(() => Run("Generate", "--model", SharedPaths.Stories260K, "--prompt", "Hi", "--adapter", $"a={Alora}", "--use", "zzz"));
        Assert.Contains("--use zzz: no adapter of that name is loaded (loaded: a)", e.Message);
    }

    [Fact]
    public void LogitsWithAnAloraMatchTheReference()
    {
        using var temp = new TempFolder();
        var c = Case("alora-q-k-v", "invocation_at_end");
        var ids = Ints(c.GetProperty("input_ids"));
        var (code, _) = Run("Logits", "--model", SharedPaths.Stories260K, "--prompt-ids", string.Join(",", ids), "--adapter", Alora, "--out", temp.File("l.safetensors"));
        Assert.Equal(0, code);
        using var file = SafeTensorsFile.Open(temp.File("l.safetensors"));
        float[] logits = file.ReadFloats("logits");
        var positions = Ints(c.GetProperty("positions"));
        for (int k = 0; k < positions.Length; k++)
        {
            var expected = c.GetProperty("logits_last4")[k].EnumerateArray().Select(x => x.GetSingle()).ToArray();
            Assert.True(Models.Reference.MaxAbsDiff(expected, logits.AsSpan(positions[k] * 512, 512)) <= 1e-4f);
        }
    }
}

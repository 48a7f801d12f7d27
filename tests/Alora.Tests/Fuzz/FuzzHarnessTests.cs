using System.Diagnostics;
using Alora.Fuzz;
using CsCheck;
using Xunit.Abstractions;

namespace Alora.Tests.Fuzz;

/// <summary>
/// Every parser's fuzz target (tests/Alora.Fuzz/FuzzTargets) on a short, seeded and so reproducible run of CsCheck-
/// generated mutations of real files: the seeds themselves must load, and no mutant may crash (an exception other
/// than the parser's format exception), hang or allocate beyond its bound. ALORA_FUZZ_ITERATIONS scales the run
/// (tools/fuzz.sh runs the long campaign under afl-fuzz). A failure prints the input, minimised, and where it was
/// written: commit it under Fuzz/Regressions/{target}/ with the fix.
/// </summary>
public sealed class FuzzHarnessTests(ITestOutputHelper output)
{
    public static TheoryData<string, int> Targets() => new()
    {
        // Iterations per target: each sized so the whole step stays well under a minute on two cores.
        { "safetensors", 400 },
        { "gguf", 300 },
        { "model-safetensors", 120 },
        { "model-gguf", 120 },
        { "model-config", 300 },
        { "generation-config", 200 },
        { "tokenizer-json", 200 },
        { "tokenizer-config", 200 },
        { "chat-template", 600 },
        { "template-request", 300 },
        { "template-config", 200 },
        { "adapter-config", 300 },
        { "adapter-safetensors", 300 },
        { "gguf-lora", 200 },
        { "training-jsonl", 300 },
        { "structured", 300 },
    };

    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(10);

    [Theory]
    [MemberData(nameof(Targets))]
    public void MutantsAreRefusedCleanly(string name, int iterations)
    {
        if (Environment.GetEnvironmentVariable("ALORA_FUZZ_ITERATIONS") is { Length: > 0 } scale && int.TryParse(scale, out int n)) iterations = n;
        var target = FuzzTargets.Get(name);
        using var work = new TempFolder();
        var seeds = target.Seeds();
        foreach (var seed in seeds)
        {
            try { target.Run(seed, work.Path); } catch (Exception e) when (target.IsAllowed(e)) { }   // warms lazy fixtures
            Assert.Null(FuzzRunner.Check(target, seed, work.Path, s_timeout));
        }

        var gen = Mutations.Of(seeds, target.HotBytes, target.Dictionary);
        uint stream = Fnv(name);
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++)
        {
            var input = gen.Generate(new PCG(stream, (ulong)i), null!, out _);
            if (FuzzRunner.Check(target, input, work.Path, s_timeout) is not { } failure) continue;
            var minimal = FuzzRunner.Minimise(target, input, failure, work.Path, s_timeout, TimeSpan.FromSeconds(30));
            string saved = Path.Combine(Path.GetTempPath(), $"alora-fuzz-{name}-{i}.bin");
            File.WriteAllBytes(saved, minimal);
            Assert.Fail($"{name} input {i} (PCG stream {stream}, seed {i}): {failure}\nminimised to {minimal.Length} bytes: {saved}\n{Preview(minimal)}");
        }
        output.WriteLine($"{name}: {iterations} mutants in {clock.Elapsed.TotalSeconds:F1} s, no crash, hang or allocation over the bound");
    }

    internal static uint Fnv(string text)
    {
        uint hash = 2166136261;
        foreach (char c in text) hash = (hash ^ c) * 16777619;
        return hash;
    }

    internal static string Preview(byte[] bytes)
    {
        var head = bytes.AsSpan(0, Math.Min(bytes.Length, 600));
        bool text = head.ToArray().All(c => c is >= 0x20 and < 0x7F or (byte)'\n' or (byte)'\r' or (byte)'\t');
        return text ? System.Text.Encoding.ASCII.GetString(head) : Convert.ToHexString(head);
    }
}

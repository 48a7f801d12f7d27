using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Training;
using Alora.Training.Optimization;

namespace Alora.Bench;

/// <summary>
/// Issue 5's speed figure: training tokens/s of one full LoRA step (forward, cross-entropy over every position,
/// backward, AdamW) on the random-weight SmolLM2-135M shape with r = 32 on q, k and v, sequence 512, against the
/// same step written in PyTorch (tools/reference/torch_train_step.py, run as a subprocess in the same run).
/// The two sides alternate for several rounds and each keeps its best, since the shared machine is noisy.
/// </summary>
internal static class TrainSpeedBench
{
    private static readonly string[] AdaptedModules = ["q_proj", "k_proj", "v_proj"];
    private const int Rank = 32;
    private const float Alpha = 32f;

    public sealed record Options(int[] RowCounts, int Length, int Rounds, DType WeightType, string Python);

    /// <summary>--rows 1,2 --length 512 --rounds 3 --dtype bf16|f32 --python /usr/bin/python3 (these are the defaults).</summary>
    public static Options ParseOptions(string[] args)
    {
        string? Value(string flag)
        {
            int at = Array.IndexOf(args, flag);
            if (at < 0) return null;
            if (at + 1 >= args.Length) throw new ArgumentException($"{flag} needs a value");
            return args[at + 1];
        }
        int Positive(string flag, string text) => int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n : throw new ArgumentException($"{flag} expects a positive integer, got '{text}'");
        int[] rows = (Value("--rows") ?? "1,2").Split(',').Select(t => Positive("--rows", t)).ToArray();
        int length = Positive("--length", Value("--length") ?? "512");
        int rounds = Positive("--rounds", Value("--rounds") ?? "3");
        DType dtype = (Value("--dtype") ?? "bf16") switch
        {
            "bf16" => DType.BF16,
            "f32" => DType.F32,
            var other => throw new ArgumentException($"--dtype expects bf16 or f32, got '{other}'"),
        };
        return new Options(rows, length, rounds, dtype, Value("--python") ?? "/usr/bin/python3");
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Alora.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException("no Alora.slnx above the bench binary");
    }

    public static int Run(Options options)
    {
        string root = RepoRoot();
        string configPath = Path.GetFullPath(Path.Combine(root, "..", "shared", "configs", "smollm2-135m", "config.json"));
        string script = Path.Combine(root, "tools", "reference", "torch_train_step.py");
        string torchDType = options.WeightType == DType.BF16 ? "bf16" : "f32";
        var config = ModelConfig.FromFile(configPath);
        using var weights = ModelWeights.CreateRandom(config, options.WeightType, seed: 1);

        // best seconds per step, per (rows, side); sides: Alora without / with checkpointing, PyTorch.
        var best = new Dictionary<(int Rows, string Side), double>();
        void Keep(int rows, string side, double seconds) =>
            best[(rows, side)] = Math.Min(seconds, best.GetValueOrDefault((rows, side), double.MaxValue));

        Console.WriteLine($"{WorkerPool.Shared.ThreadCount} threads; {options.WeightType} frozen weights; LoRA r {Rank} (alpha {Alpha}) on q/k/v; sequence {options.Length}; {options.Rounds} alternating rounds");
        for (int round = 1; round <= options.Rounds; round++)
        {
            foreach (int rows in options.RowCounts)
            {
                foreach (bool checkpointing in new[] { false, true })
                {
                    double seconds = AloraStep(weights, rows, options.Length, checkpointing);
                    Keep(rows, checkpointing ? "alora-ckpt" : "alora", seconds);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"round {round}: Alora B={rows} checkpointing {(checkpointing ? "on" : "off")}: {seconds:F3} s/step, {rows * options.Length / seconds:F1} tokens/s"));
                }
                double torchSeconds = TorchStep(options.Python, script, configPath, rows, options.Length, torchDType, WorkerPool.Shared.ThreadCount);
                Keep(rows, "torch", torchSeconds);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"round {round}: PyTorch B={rows}: {torchSeconds:F3} s/step, {rows * options.Length / torchSeconds:F1} tokens/s"));
            }
        }

        Console.WriteLine();
        Console.WriteLine("| batch × sequence | Alora tokens/s | Alora + checkpointing tokens/s | PyTorch tokens/s | Alora / PyTorch | Alora + ckpt / PyTorch |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        foreach (int rows in options.RowCounts)
        {
            double tokens = rows * options.Length;
            double alora = tokens / best[(rows, "alora")], checkpointed = tokens / best[(rows, "alora-ckpt")], torch = tokens / best[(rows, "torch")];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {rows} × {options.Length} | {alora:F1} | {checkpointed:F1} | {torch:F1} | {alora / torch:F2}x | {checkpointed / torch:F2}x |"));
        }
        return 0;
    }

    /// <summary>Best seconds of one Alora step (after a warm-up step), zero-initialised moments as a fresh run has.</summary>
    private static double AloraStep(ModelWeights weights, int rows, int length, bool checkpointing)
    {
        var c = weights.Config;
        using var lora = new TrainableLora(c, AdaptedModules, Rank, Alpha / Rank);
        // Small non-zero A and B, as the PyTorch side, so that every gradient product is real work.
        var random = new Random(1);
        foreach (var m in lora.Modules)
        {
            foreach (ref float a in m.AValues) a = (float)(random.NextDouble() - 0.5) * 0.02f;
            foreach (ref float b in m.BValues) b = (float)(random.NextDouble() - 0.5) * 0.02f;
        }
        // The same token ids as the PyTorch script; every position labelled (labels = ids, shifted inside).
        var batch = Enumerable.Range(0, rows).Select(r =>
        {
            int[] ids = Enumerable.Range(0, length).Select(i => (int)(((long)i * 7919 + (long)r * 104729 + 13) % c.VocabSize)).ToArray();
            return new TrainingRow(ids, ids, 0);
        }).ToList();
        using var trainer = new DecoderTrainer(weights, lora, rows, length, checkpointing);
        var optimizer = Optimizer.Create(lora.TrainableTensors(), new OptimizerOptions { Kind = "adamw", LearningRate = 1e-4 });
        return BenchTimer.Best(() =>
        {
            trainer.ForwardBackward(batch);
            optimizer.Apply(1e-4);
        }, minSeconds: 0, minRuns: 2);
    }

    /// <summary>Runs the PyTorch script (its own warm-up and best of 2) and returns its seconds per step.</summary>
    private static double TorchStep(string python, string script, string configPath, int rows, int length, string dtype, int threads)
    {
        var start = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in new[] { script, "--config", configPath, "--rows", rows.ToString(CultureInfo.InvariantCulture),
            "--length", length.ToString(CultureInfo.InvariantCulture), "--rank", Rank.ToString(CultureInfo.InvariantCulture),
            "--alpha", Alpha.ToString(CultureInfo.InvariantCulture), "--dtype", dtype, "--threads", threads.ToString(CultureInfo.InvariantCulture),
            "--warmup", "1", "--repeats", "2" })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start '{python}'");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{python} {script} exited with {process.ExitCode} (is python3-torch installed? see bench/setup.sh): {stderr.Result}");
        string? line = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault();
        if (line is null) throw new InvalidDataException($"{script} printed nothing; expected one JSON line with step_s");
        using var json = JsonDocument.Parse(line);
        if (!json.RootElement.TryGetProperty("step_s", out var stepSeconds))
            throw new InvalidDataException($"{script} printed '{line}'; expected a JSON object with step_s");
        return stepSeconds.GetDouble();
    }
}

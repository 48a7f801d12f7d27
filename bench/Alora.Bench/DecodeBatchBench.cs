using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

// Legend: N = sequences decoding together (one row each per step), M = GEMM rows (= N in a decode step),
// K = in features, Nout = out features of a projection, V = vocab.

/// <summary>
/// Batched decode, as the continuous-batching engine runs it: N sequences each decode one token per
/// <see cref="DecoderModel.Forward"/> step after a short prompt (SmolLM2-135M shape, random bf16 weights).
/// Prints best-of-rounds ms/step, aggregate tokens/s and the ratio to N = 1 measured in the same run, the
/// share of the step spent in the GEMMs alone (the same products on the model's own weights, timed apart),
/// and a GEMM table for M = 1..64 on the SmolLM2 shapes.
/// </summary>
internal static unsafe class DecodeBatchBench
{
    private const int PromptLength = 16;

    public static void Run(int[] streamCounts, int rounds = 3, int steps = 8, bool gemmTable = true)
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        using var model = new DecoderModel(weights);
        Console.WriteLine($"threads: {WorkerPool.Shared.ThreadCount}; SmolLM2-135M shape, random bf16 weights; prompt {PromptLength} tokens per sequence, then {steps} steps per round, best of {rounds} rounds");
        Console.WriteLine("| N streams | ms/step | tokens/s | tokens/s vs N = 1 | step vs N = 1 | GEMMs alone ms/step | rest ms/step | ms/step, GEMMs on the row groups |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        double singleMs = 0;
        foreach (int n in streamCounts)
        {
            (double ms, double rowGroupsMs) = StepMilliseconds(model, n, rounds, steps);
            double gemmMs = GemmMillisecondsPerStep(weights, n);
            if (singleMs == 0) singleMs = ms;   // the first entry (N = 1) is the reference
            double tokensPerSecond = n * 1000 / ms;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {n} | {ms:F1} | {tokensPerSecond:F0} | {tokensPerSecond * singleMs / 1000 / streamCounts[0]:F2}x | {ms / singleMs:F2}x | {gemmMs:F1} | {ms - gemmMs:F1} | {(double.IsNaN(rowGroupsMs) ? "" : rowGroupsMs.ToString("F1", CultureInfo.InvariantCulture))} |"));
        }
        if (gemmTable) GemmTable([1, 4, 8, 16, 32, 64]);
    }

    /// <summary>
    /// Best-of-rounds mean ms per Forward step of <paramref name="n"/> sequences decoding one token each; for N &gt; 4
    /// also with the GEMMs on the row groups (the path before the batched decode path), rounds alternated.
    /// </summary>
    private static (double Batched, double RowGroups) StepMilliseconds(DecoderModel model, int n, int rounds, int steps)
    {
        int capacity = PromptLength + 2 * rounds * (steps + 1) + 16;
        using var cache = model.CreateCache(n * capacity);
        var sequences = new KvSequence[n];
        var logits = new float[(long)n * model.VocabSize];
        try
        {
            var prompts = new SequenceChunk[n];
            for (int s = 0; s < n; s++)
            {
                sequences[s] = new KvSequence(cache);
                sequences[s].Reserve(capacity);
                int[] prompt = Enumerable.Range(0, PromptLength).Select(i => (i * 7919 + s * 104729 + 13) % model.VocabSize).ToArray();
                prompts[s] = new SequenceChunk(sequences[s], prompt, LogitRows.Last);
            }
            model.Forward(prompts, logits);
            var tokens = new int[n][];
            var chunks = new SequenceChunk[n];
            for (int s = 0; s < n; s++)
            {
                tokens[s] = new int[1];
                chunks[s] = new SequenceChunk(sequences[s], tokens[s], LogitRows.Last);
            }
            void Step()
            {
                for (int s = 0; s < n; s++) tokens[s][0] = Sampler.ArgMax(logits.AsSpan(s * model.VocabSize, model.VocabSize));
                model.Forward(chunks, logits);
            }
            double Round()
            {
                Step();   // warm-up (JIT of the N-row paths)
                long start = Stopwatch.GetTimestamp();
                for (int i = 0; i < steps; i++) Step();
                return Stopwatch.GetElapsedTime(start).TotalMilliseconds / steps;
            }
            double best = double.MaxValue, rowGroups = double.NaN;
            int saved = Gemv.BatchMaxRows;
            for (int round = 0; round < rounds; round++)
            {
                best = Math.Min(best, Round());
                if (n <= Gemv.MaxRows || n > saved) continue;
                Gemv.BatchMaxRows = Gemv.MaxRows;
                try { rowGroups = Math.Min(double.IsNaN(rowGroups) ? double.MaxValue : rowGroups, Round()); }
                finally { Gemv.BatchMaxRows = saved; }
            }
            return (best, rowGroups);
        }
        finally
        {
            foreach (var sequence in sequences) sequence?.Dispose();
        }
    }

    /// <summary>
    /// The GEMMs of one decode step of <paramref name="m"/> rows on the model's own weights (every layer's seven
    /// projections and the LM head), best of a few runs: what the step would cost if nothing else took time.
    /// </summary>
    private static double GemmMillisecondsPerStep(ModelWeights weights, int m, WorkerPool? pool = null)
    {
        var c = weights.Config;
        long widest = Math.Max(c.VocabSize, Math.Max(c.IntermediateSize, Math.Max(c.HiddenSize, c.QueryDim)));
        float* x = (float*)NativeMemory.AlignedAlloc((nuint)((long)m * widest * sizeof(float)), 64);
        float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)m * widest * sizeof(float)), 64);
        try
        {
            var random = new Random(7);
            for (long i = 0; i < (long)m * widest; i++) x[i] = random.NextSingle() - 0.5f;
            double seconds = BenchTimer.Best(() =>
            {
                foreach (var layer in weights.Layers)
                    foreach (var module in ParameterLayout.AttentionProjections.Concat(ParameterLayout.MlpProjections))
                        Gemm.MatMul(y, x, layer.Projection(module), m, false, pool ?? WorkerPool.Shared);
                Gemm.MatMul(y, x, weights.LmHead, m, false, pool ?? WorkerPool.Shared);
            }, minSeconds: 0.3, minRuns: 3);
            return seconds * 1000;
        }
        finally
        {
            NativeMemory.AlignedFree(x);
            NativeMemory.AlignedFree(y);
        }
    }

    /// <summary>
    /// The GEMMs of one decode step alone (the model's own weights, streamed from memory) for each M, on the batched
    /// decode path and on the row groups, alternated: where the step's GEMM time goes as M grows.
    /// </summary>
    public static void GemmStep(int[] rowCounts, int rounds = 3)
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        Console.WriteLine("| M | GEMMs of one step, ms | GFLOP/s | row groups, ms |");
        Console.WriteLine("| ---: | ---: | ---: | ---: |");
        double flopsPerRow = 0;
        foreach (var layer in weights.Layers)
            foreach (var module in ParameterLayout.AttentionProjections.Concat(ParameterLayout.MlpProjections))
                flopsPerRow += 2.0 * layer.Projection(module).Rows * layer.Projection(module).Cols;
        flopsPerRow += 2.0 * weights.LmHead.Rows * weights.LmHead.Cols;
        foreach (int m in rowCounts)
        {
            double batched = double.MaxValue, rowGroups = double.MaxValue;
            int saved = Gemv.BatchMaxRows;
            for (int round = 0; round < rounds; round++)
            {
                batched = Math.Min(batched, GemmMillisecondsPerStep(weights, m));
                if (m <= Gemv.MaxRows) continue;
                Gemv.BatchMaxRows = Gemv.MaxRows;
                try { rowGroups = Math.Min(rowGroups, GemmMillisecondsPerStep(weights, m)); }
                finally { Gemv.BatchMaxRows = saved; }
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {m} | {batched:F2} | {flopsPerRow * m / batched / 1e6:F0} | {(m <= Gemv.MaxRows ? "" : rowGroups.ToString("F2", CultureInfo.InvariantCulture))} |"));
        }
    }

    /// <summary>Per projection (summed over the layers): ms of one step's GEMMs at M rows, streamed from memory.</summary>
    public static void GemmBreakdown(int[] rowCounts)
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        var modules = ParameterLayout.AttentionProjections.Concat(ParameterLayout.MlpProjections).ToArray();
        Console.WriteLine("| M | " + string.Join(" | ", modules) + " | lm_head |");
        foreach (int m in rowCounts)
        {
            long widest = config.VocabSize;
            float* x = (float*)NativeMemory.AlignedAlloc((nuint)((long)m * widest * sizeof(float)), 64);
            float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)m * widest * sizeof(float)), 64);
            for (long i = 0; i < (long)m * widest; i++) x[i] = 0.25f;
            var cells = new List<string>();
            foreach (var module in modules)
                cells.Add((BenchTimer.Best(() => { foreach (var layer in weights.Layers) Gemm.MatMul(y, x, layer.Projection(module), m); }) * 1000).ToString("F2", CultureInfo.InvariantCulture));
            cells.Add((BenchTimer.Best(() => Gemm.MatMul(y, x, weights.LmHead, m)) * 1000).ToString("F2", CultureInfo.InvariantCulture));
            Console.WriteLine($"| {m} | " + string.Join(" | ", cells) + " |");
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y);
        }
    }

    /// <summary>Tuning aid: the step's GEMMs under several settings of the batched path, alternated, best of many rounds.</summary>
    public static void Tune(int[] rowCounts, int rounds = 8)
    {
        using var single = new WorkerPool(1);
        var pool = Environment.GetEnvironmentVariable("ALORA_TUNE_THREADS") == "2" ? WorkerPool.Shared : single;
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        (string Name, Action Set)[] variants =
        [
            ("row groups", () => Gemv.BatchMaxRows = Gemv.MaxRows),
            ("batched", () => Gemv.BatchMaxRows = 256),
        ];
        foreach (int m in rowCounts)
        {
            var best = new double[variants.Length];
            Array.Fill(best, double.MaxValue);
            for (int round = 0; round < rounds; round++)
                for (int v = 0; v < variants.Length; v++)
                {
                    variants[v].Set();
                    best[v] = Math.Min(best[v], GemmMillisecondsPerStep(weights, m, pool));
                }
            Gemv.BatchMaxRows = 64;
            Console.WriteLine($"M={m}: " + string.Join(", ", variants.Select((v, i) => string.Create(CultureInfo.InvariantCulture, $"{v.Name} {best[i]:F2} ms"))));
        }
    }

    private sealed record Shape(string Layer, int K, int N);

    // SmolLM2-135M's projections: K = in features, N = out features.
    private static readonly Shape[] s_shapes =
    [
        new("q/o", 576, 576),
        new("k/v", 576, 192),
        new("gate/up", 576, 1536),
        new("down", 1536, 576),
        new("lm_head", 576, 49152),
    ];

    /// <summary>GEMM rate per SmolLM2 shape and M, bf16 W: GFLOP/s and GB/s of W read (W is read once per call at best).</summary>
    public static void GemmTable(int[] rowCounts)
    {
        Console.WriteLine();
        Console.WriteLine($"GEMM, bf16 W, SmolLM2-135M shapes: GFLOP/s (in brackets: the prefill row groups on the same call, the M > 4 path before the batched decode path), GB/s = W bytes / time; batched decode path for M in 5..{Gemv.BatchMaxRows}");
        Console.WriteLine("| layer | K | N | " + string.Join(" | ", rowCounts.Select(m => $"M={m}")) + " |");
        Console.WriteLine("| --- | ---: | ---: | " + string.Join(" | ", rowCounts.Select(_ => "---:")) + " |");
        foreach (var shape in s_shapes)
        {
            int k = shape.K, n = shape.N, maxM = rowCounts.Max();
            long weightCount = (long)n * k;
            float* x = (float*)NativeMemory.AlignedAlloc((nuint)((long)maxM * k * sizeof(float)), 64);
            float* y = (float*)NativeMemory.AlignedAlloc((nuint)((long)maxM * n * sizeof(float)), 64);
            ushort* w = (ushort*)NativeMemory.AlignedAlloc((nuint)(weightCount * 2), 64);
            try
            {
                var random = new Random(42);
                for (long i = 0; i < (long)maxM * k; i++) x[i] = random.NextSingle() - 0.5f;
                for (long i = 0; i < weightCount; i++) w[i] = Half16.SingleToBFloat16((random.NextSingle() - 0.5f) * 0.1f);
                var matrix = new WeightMatrix(w, DType.BF16, n, k);
                var cells = new List<string>();
                foreach (int m in rowCounts)
                {
                    // M > 4: the batched decode path against the row groups it replaced, alternated (the machine is shared).
                    double seconds = double.MaxValue, rowGroups = double.MaxValue;
                    for (int round = 0; round < 3; round++)
                    {
                        seconds = Math.Min(seconds, BenchTimer.Best(() => Gemm.MatMul(y, x, matrix, m), minSeconds: 0.1, minRuns: 5));
                        if (m <= Gemv.MaxRows) continue;
                        int saved = Gemv.BatchMaxRows;
                        Gemv.BatchMaxRows = Gemv.MaxRows;
                        rowGroups = Math.Min(rowGroups, BenchTimer.Best(() => Gemm.MatMul(y, x, matrix, m), minSeconds: 0.1, minRuns: 5));
                        Gemv.BatchMaxRows = saved;
                    }
                    string peer = m <= Gemv.MaxRows ? "" : string.Create(CultureInfo.InvariantCulture, $" ({2.0 * m * k * n / rowGroups / 1e9:F0})");
                    cells.Add(string.Create(CultureInfo.InvariantCulture, $"{2.0 * m * k * n / seconds / 1e9:F0}{peer} GF/s, {weightCount * 2 / seconds / 1e9:F1} GB/s"));
                }
                Console.WriteLine($"| {shape.Layer} | {k} | {n} | " + string.Join(" | ", cells) + " |");
            }
            finally
            {
                NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y); NativeMemory.AlignedFree(w);
            }
        }
    }
}

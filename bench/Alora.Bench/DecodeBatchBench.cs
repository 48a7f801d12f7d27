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

    public static void Run(int[] streamCounts, int rounds = 5, int steps = 8, bool gemmTable = true)
    {
        var config = ModelConfig.FromFile(Path.Combine(BenchPaths.SharedRoot(), "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 1);
        using var model = new DecoderModel(weights);
        Console.WriteLine($"threads: {WorkerPool.Shared.ThreadCount}; SmolLM2-135M shape, random bf16 weights; prompt {PromptLength} tokens per sequence, then " +
            $"{steps} steps per round; every N (and for N > 4 the row-groups variant) takes one round in turn, best of {rounds} rounds each");
        // Every N in turn within each round: this machine's speed changes from minute to minute, and a ratio to
        // N = 1 is only meaningful when both sides had the same chances at a quiet moment.
        using var cache = model.CreateCache(streamCounts.Sum() * (PromptLength + 2 * rounds * (steps + 1) + 32));
        var sets = streamCounts.Select(n => new StreamSet(model, cache, n, PromptLength + 2 * rounds * (steps + 1) + 16)).ToArray();
        var best = new double[sets.Length];
        var rowGroups = new double[sets.Length];
        Array.Fill(best, double.MaxValue);
        Array.Fill(rowGroups, double.NaN);
        int saved = Gemv.BatchMaxRows;
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < sets.Length; i++)
            {
                best[i] = Math.Min(best[i], sets[i].Round(steps));
                if (sets[i].Count <= Gemv.MaxRows || sets[i].Count > saved) continue;
                Gemv.BatchMaxRows = Gemv.MaxRows;   // the GEMMs on the prefill row groups: the path before RunBatch
                try { rowGroups[i] = Math.Min(double.IsNaN(rowGroups[i]) ? double.MaxValue : rowGroups[i], sets[i].Round(steps)); }
                finally { Gemv.BatchMaxRows = saved; }
            }
        foreach (var set in sets) set.Dispose();

        Console.WriteLine("| N streams | ms/step | tokens/s | tokens/s vs N = 1 | step vs N = 1 | GEMMs alone ms/step | rest ms/step | ms/step, GEMMs on the row groups |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        double singleMs = best[0] / streamCounts[0];   // the first entry (N = 1) is the reference
        for (int i = 0; i < sets.Length; i++)
        {
            int n = streamCounts[i];
            double ms = best[i], gemmMs = GemmMillisecondsPerStep(weights, n), tokensPerSecond = n * 1000 / ms;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {n} | {ms:F1} | {tokensPerSecond:F0} | {tokensPerSecond * singleMs / 1000:F2}x | {ms / best[0]:F2}x | {gemmMs:F1} | {ms - gemmMs:F1} | {(double.IsNaN(rowGroups[i]) ? "" : rowGroups[i].ToString("F1", CultureInfo.InvariantCulture))} |"));
        }
        if (gemmTable) GemmTable([1, 4, 8, 16, 32, 64]);
    }

    /// <summary>N sequences that decode one token each per <see cref="DecoderModel.Forward"/> step, after a prompt.</summary>
    private sealed class StreamSet : IDisposable
    {
        private readonly DecoderModel _model;
        private readonly KvSequence[] _sequences;
        private readonly int[][] _tokens;          // [N][1] the token each sequence decodes next
        private readonly SequenceChunk[] _chunks;
        private readonly float[] _logits;          // [N, V]

        public StreamSet(DecoderModel model, PagedKvCache cache, int count, int capacity)
        {
            _model = model;
            _sequences = new KvSequence[count];
            _tokens = new int[count][];
            _chunks = new SequenceChunk[count];
            _logits = new float[(long)count * model.VocabSize];
            var prompts = new SequenceChunk[count];
            for (int s = 0; s < count; s++)
            {
                _sequences[s] = new KvSequence(cache);
                _sequences[s].Reserve(capacity);
                int[] prompt = Enumerable.Range(0, PromptLength).Select(i => (i * 7919 + s * 104729 + 13) % model.VocabSize).ToArray();
                prompts[s] = new SequenceChunk(_sequences[s], prompt, LogitRows.Last);
                _tokens[s] = new int[1];
                _chunks[s] = new SequenceChunk(_sequences[s], _tokens[s], LogitRows.Last);
            }
            model.Forward(prompts, _logits);
        }

        public int Count => _sequences.Length;

        /// <summary>One warm-up step, then <paramref name="steps"/> timed steps: mean ms per step.</summary>
        public double Round(int steps)
        {
            Step();
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < steps; i++) Step();
            return Stopwatch.GetElapsedTime(start).TotalMilliseconds / steps;
        }

        private void Step()
        {
            int v = _model.VocabSize;
            for (int s = 0; s < _sequences.Length; s++) _tokens[s][0] = Sampler.ArgMax(_logits.AsSpan(s * v, v));
            _model.Forward(_chunks, _logits);
        }

        public void Dispose()
        {
            foreach (var sequence in _sequences) sequence.Dispose();
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
